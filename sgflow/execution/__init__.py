"""Running compiled programs on engines: the executor and the frontend backends.

:func:`execute` interprets a program's IR on an SGLang frontend backend: SGLang's own
(:class:`SgflowEndpoint`) or :class:`EngineEndpoint` for every other engine kind, built for
a URL by :func:`endpoint_for`. Before a run starts, each step's needs are planned against
the engine's capabilities (:mod:`sgflow.adapters.plan`).
"""

from sgflow.execution.endpoints import capabilities_of, endpoint_for
from sgflow.execution.executor import RunResult, StepTrace, execute
from sgflow.execution.http_backend import EngineEndpoint
from sgflow.execution.sglang_backend import SgflowEndpoint

__all__ = [
    "EngineEndpoint",
    "RunResult",
    "SgflowEndpoint",
    "StepTrace",
    "capabilities_of",
    "endpoint_for",
    "execute",
]
