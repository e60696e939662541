"""Traces: OpenTelemetry spans that follow one request from the API to the engine.

Every process (``sgflow serve``, ``sgflow worker``) calls :func:`configure` once with its
settings. Spans are always made, so every run has a trace id (in its record, its events and
the logs) and a caller's W3C ``traceparent`` is continued; they are *exported* only when
``SGFLOW_OTLP_ENDPOINT`` names an OTLP/HTTP collector (off by default), sampled at
``SGFLOW_TRACE_SAMPLE_RATIO`` (of new traces; a caller's sampling decision is followed).

The tree of one run::

    POST /v1/runs                     the API request (SERVER)
    └── run <program>                 one per worker attempt, in the worker (CONSUMER)
        ├── step <id>                 each step (fork branches nest under their fork)
        │   └── engine.generate       each engine call: one per attempt of the step (CLIENT)
        └── step <id> …

A batch: ``POST /v1/batches`` → ``batch`` → each line's ``run`` (and ``batch.start``, the
worker's warm-up and fan-out). The link between processes is the run record's
``traceparent`` (stored with the run, so a run re-sent by the reaper or resumed after a crash
joins the same trace), not the Celery message.

The provider is this module's own, not OpenTelemetry's global one: tests install a provider
with the SDK's in-memory exporter (:func:`install`) without fighting the global's set-once
rule, and libraries that trace on their own do not end up in sgflow's traces by accident.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sgflow.settings import mask

if TYPE_CHECKING:
    from sgflow.settings import Settings

__all__ = [
    "Span",
    "SpanKind",
    "attach",
    "configure",
    "context_of",
    "current_context",
    "current_ids",
    "current_span",
    "fail",
    "install",
    "note",
    "record",
    "set_attributes",
    "shutdown",
    "span",
    "trace_id_of",
    "traceparent",
]

log = logging.getLogger("sgflow.traces")

_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_provider: TracerProvider = TracerProvider()


def configure(settings: Settings, service: str) -> TracerProvider:
    """This process's provider, from ``settings``: OTLP/HTTP export to
    ``settings.otlp_endpoint`` when set, else spans that are made and dropped."""
    global _provider
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "sgflow"}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint,
            headers=settings.otlp_header_map() or None,
            timeout=10,
        )
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        log.info(
            "exporting traces",
            extra={"otlp_endpoint": mask(settings.otlp_endpoint), "service": service},
        )
    with _lock:
        old, _provider = _provider, provider
    old.shutdown()
    return provider


def install(provider: TracerProvider) -> TracerProvider:
    """Use ``provider`` from now on (tests: one with an in-memory exporter); returns the
    provider it replaces, which is not shut down."""
    global _provider
    with _lock:
        old, _provider = _provider, provider
    return old


def shutdown() -> None:
    """Export what is left (a process that stops)."""
    _provider.force_flush(timeout_millis=5000)


def _tracer() -> trace.Tracer:
    return _provider.get_tracer("sgflow")


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span, current inside the block, child of ``parent`` (default: the current span).
    An exception that leaves the block marks it failed (with the error's code when it is
    an :class:`~sgflow.errors.SgflowError`) and is raised again."""
    with _tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            fail(current, exc)
            raise


def fail(current: Span, error: BaseException | Mapping[str, Any] | str) -> None:
    """Mark ``current`` failed with ``error``: an exception, an error dict (``code``,
    ``message``) or a code."""
    code: Any
    message: Any
    if isinstance(error, BaseException):
        code = getattr(error, "code", None) or type(error).__name__
        message = str(error)
    elif isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
    else:
        code, message = error, error
    if code:
        current.set_attribute("sgflow.error.code", str(code))
    current.set_status(Status(StatusCode.ERROR, str(message or code or "")[:500]))


def set_attributes(current: Span, attributes: Mapping[str, Any]) -> None:
    current.set_attributes(_clean(attributes))


def note(*, code: str) -> None:
    """Put an error ``code`` on the current span (an error answer, a refused request)."""
    trace.get_current_span().set_attribute("sgflow.error.code", code)


def record(
    name: str,
    *,
    parent: otel_context.Context | None,
    start_ns: int,
    end_ns: int,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> otel_context.Context:
    """A span of something already over (its times measured while it ran, e.g. on the
    engine's decode thread); returns its context, to record children under it."""
    done = _tracer().start_span(
        name, context=parent, kind=kind, attributes=_clean(attributes or {}), start_time=start_ns
    )
    done.end(end_time=max(start_ns, end_ns))
    return trace.set_span_in_context(done, parent)


def traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` header value (None outside a span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent_value: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` names, to parent spans on (None: a new trace)."""
    if not traceparent_value:
        return None
    extracted = _PROPAGATOR.extract({"traceparent": traceparent_value})
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


def trace_id_of(traceparent_value: str | None) -> str | None:
    """The 32-hex-digit trace id in a ``traceparent`` (None if it names none)."""
    ctx = context_of(traceparent_value)
    if ctx is None:
        return None
    return format(trace.get_current_span(ctx).get_span_context().trace_id, "032x")


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span, in hex (None outside a span)."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


@contextmanager
def attach(ctx: otel_context.Context | None) -> Iterator[None]:
    """Make ``ctx`` current in this thread for the block (a thread pool's task continues
    the span of the thread that submitted it)."""
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def current_context() -> otel_context.Context:
    return otel_context.get_current()


def current_span() -> Span:
    """The current span (a non-recording one outside any)."""
    return trace.get_current_span()


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float (and lists of one); None is left out and
    anything else is spelled as text."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            out[key] = str(value)
    return out
