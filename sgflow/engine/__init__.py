"""The embedded engine: SGLang's native HTTP API on llama.cpp, for CPU-only hosts.

Importing it sets ``OMP_WAIT_POLICY`` to ``PASSIVE`` unless it is set, before llama.cpp is
loaded (:func:`sgflow.settings.openmp_wait_policy` says why).
"""

from sgflow.settings import openmp_wait_policy

OPENMP_WAIT_POLICY = openmp_wait_policy()

from sgflow.engine.engine import Engine, EngineConfig  # noqa: E402 (after the policy)
from sgflow.engine.errors import (  # noqa: E402
    BadRequest,
    ConstraintError,
    ContextOverflow,
    EngineError,
)

__all__ = [
    "BadRequest",
    "ConstraintError",
    "ContextOverflow",
    "Engine",
    "EngineConfig",
    "EngineError",
]
