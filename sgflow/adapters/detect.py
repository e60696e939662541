"""Which engine a URL points at, and the model it serves.

A URL may name its kind, ``KIND+http://host:port`` (``sglang``, ``vllm``, ``llamacpp``,
``ollama``, ``tgi``, ``lmdeploy``, ``trtllm``, ``mlc``); otherwise :func:`detect` asks the
engine's tell-tale endpoints, most specific first:

========== ==========================================================================
sglang     ``GET /get_model_info`` answers ``model_path`` (SGLang, sgflow's engine)
ollama     ``GET /api/version`` answers ``version`` and ``GET /api/tags`` lists models
tgi        ``GET /info`` answers ``model_id`` and ``router``
llamacpp   ``GET /props`` answers ``default_generation_settings``
vllm       ``GET /v1/models`` entries ``owned_by: vllm`` (version from ``GET /version``)
lmdeploy   ``GET /v1/models`` entries ``owned_by: lmdeploy``
trtllm     ``GET /v1/models`` entries ``owned_by: tensorrt_llm`` (version from ``GET /version``)
mlc        ``GET /v1/models`` entries ``owned_by: MLC-LLM``
========== ==========================================================================
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from sgflow.adapters import KINDS
from sgflow.adapters.base import Probe

__all__ = ["EngineUnrecognised", "base_url", "detect", "health_url", "split_url"]

_OWNERS = {"vllm": "vllm", "lmdeploy": "lmdeploy", "tensorrt_llm": "trtllm", "mlc-llm": "mlc"}
_OWNERS.update({"llamacpp": "llamacpp", "sglang": "sglang"})


class EngineUnrecognised(RuntimeError):
    """Nothing at the URL answers like an engine sgflow knows."""


def split_url(url: str) -> tuple[str | None, str]:
    """``("vllm", "http://h:8000")`` from ``vllm+http://h:8000``; ``(None, url)`` when the
    URL names no kind. ``ValueError`` for an unknown kind."""
    scheme, sep, rest = url.partition("+")
    if sep and "://" in rest and "://" not in scheme:
        if scheme not in KINDS:
            raise ValueError(f"unknown engine kind {scheme!r} in {url}; known: {', '.join(KINDS)}")
        return scheme, rest.rstrip("/")
    return None, url.rstrip("/")


def base_url(url: str) -> str:
    """``url`` without the kind it may name: what HTTP requests go to."""
    return split_url(url)[1]


def health_url(url: str) -> str:
    """Where the engine at ``url`` says it is up: its kind's health route (``/health`` when
    the URL names no kind: SGLang, vLLM, llama.cpp, TGI, LMDeploy and TensorRT-LLM)."""
    from sgflow.adapters import ADAPTERS

    kind, base = split_url(url)
    return base + (ADAPTERS[kind].health_path if kind else "/health")


def _get(url: str, path: str, timeout_s: float) -> Any:
    try:
        res = requests.get(url + path, timeout=timeout_s)
    except requests.RequestException:
        return None
    if res.status_code != 200:
        return None
    try:
        return res.json()
    except ValueError:
        return None


def _models(url: str, timeout_s: float) -> list[dict[str, Any]]:
    listing = _get(url, "/v1/models", timeout_s)
    data = listing.get("data") if isinstance(listing, dict) else None
    return [m for m in data or () if isinstance(m, dict)]


def _model_of(kind: str, url: str, evidence: dict[str, Any], timeout_s: float) -> str:
    if kind == "sglang":
        info = evidence.get("/get_model_info") or _get(url, "/get_model_info", timeout_s) or {}
        return str(info.get("model_path") or "default")
    if kind == "ollama":
        tags = evidence.get("/api/tags") or _get(url, "/api/tags", timeout_s) or {}
        names = [m.get("name") for m in tags.get("models") or () if isinstance(m, dict)]
        return str(names[0]) if names else "default"
    if kind == "tgi":
        info = evidence.get("/info") or _get(url, "/info", timeout_s) or {}
        return str(info.get("model_id") or "default")
    models = evidence.get("/v1/models") or _models(url, timeout_s)
    return str(models[0].get("id")) if models else "default"


def detect(url: str, *, timeout_s: float = 5.0) -> Probe:
    """The :class:`Probe` of ``url``; raises :class:`EngineUnrecognised` (with what was
    tried) when no engine answers, or none sgflow knows."""
    named, base = split_url(url)
    evidence: dict[str, Any] = {}
    if named is not None:
        return Probe(named, base, _model_of(named, base, evidence, timeout_s), None, evidence)
    info = _get(base, "/get_model_info", timeout_s)
    if isinstance(info, dict) and "model_path" in info:
        evidence["/get_model_info"] = info
        return Probe("sglang", base, _model_of("sglang", base, evidence, timeout_s), None, evidence)
    version = _get(base, "/api/version", timeout_s)
    tags = _get(base, "/api/tags", timeout_s)
    if isinstance(version, dict) and isinstance(tags, dict) and "models" in tags:
        evidence.update({"/api/version": version, "/api/tags": tags})
        model = _model_of("ollama", base, evidence, timeout_s)
        return Probe("ollama", base, model, str(version.get("version")), evidence)
    info = _get(base, "/info", timeout_s)
    if isinstance(info, dict) and "model_id" in info and "router" in info:
        evidence["/info"] = info
        model = _model_of("tgi", base, evidence, timeout_s)
        return Probe("tgi", base, model, str(info.get("version")), evidence)
    props = _get(base, "/props", timeout_s)
    if isinstance(props, dict) and "default_generation_settings" in props:
        evidence["/props"] = {k: props.get(k) for k in ("model_path", "build_info") if k in props}
        model = _model_of("llamacpp", base, evidence, timeout_s)
        return Probe("llamacpp", base, model, props.get("build_info"), evidence)
    models = _models(base, timeout_s)
    owners = {str(m.get("owned_by", "")).lower() for m in models}
    for owner in owners:
        kind = _OWNERS.get(owner)
        if kind is not None:
            evidence["/v1/models"] = models
            version = None
            if kind in ("vllm", "trtllm"):  # both serve GET /version -> {"version": ...}
                found = _get(base, "/version", timeout_s)
                version = str(found.get("version")) if isinstance(found, dict) else None
            return Probe(kind, base, _model_of(kind, base, evidence, timeout_s), version, evidence)
    tried = "/get_model_info, /api/version, /info, /props, /v1/models"
    reached = models or info or props or version or tags
    said = "answers, but not like any engine sgflow knows" if reached else "does not answer"
    host = urlsplit(base).netloc or base
    raise EngineUnrecognised(
        f"{host} {said} (tried {tried}); name the kind as KIND+{base} with KIND one of "
        f"{', '.join(KINDS)}"
    )
