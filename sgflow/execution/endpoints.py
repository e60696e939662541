"""The frontend backend for an engine URL, whatever kind of engine it is.

``endpoint_for("http://h:30000")`` asks the engine what it is (:func:`sgflow.adapters.detect.detect`)
unless the URL names its kind (``vllm+http://h:8000``). SGLang (and sgflow's own engine)
get :class:`~sgflow.execution.sglang_backend.SgflowEndpoint`; every other kind gets an
:class:`~sgflow.execution.http_backend.EngineEndpoint` over its adapter. Either way the
endpoint has ``capabilities``, which the executor plans each run against.
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters import adapter_for
from sgflow.adapters.base import Capabilities
from sgflow.adapters.detect import detect, split_url
from sgflow.adapters.sglang import CAPABILITIES as SGLANG
from sgflow.execution.http_backend import EngineEndpoint
from sgflow.execution.sglang_backend import SgflowEndpoint

__all__ = ["capabilities_of", "endpoint_for"]


def endpoint_for(url: str, *, timeout_s: float = 5.0) -> Any:
    """The backend of the engine at ``url``; raises what detection raises (an engine that
    does not answer, or answers like none sgflow knows)."""
    kind, base = split_url(url)
    if kind == "sglang":
        return SgflowEndpoint(base)
    probe = detect(url, timeout_s=timeout_s)
    if probe.kind == "sglang":
        return SgflowEndpoint(probe.url)
    return EngineEndpoint(probe.url, adapter_for(probe.kind), probe.model)


def capabilities_of(endpoint: Any) -> Capabilities:
    """What the engine behind ``endpoint`` enforces; SGLang's for anything that does not
    say (an SGLang frontend backend, a test double speaking SGLang's API)."""
    found = getattr(endpoint, "capabilities", None)
    return found if isinstance(found, Capabilities) else SGLANG
