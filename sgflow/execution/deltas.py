"""Streaming a generation's text to a sink while it is generated, on any backend.

While a sink is registered for a state (:meth:`DeltaSinks.deltas`), a backend streams that
state's generations and hands the sink each piece of new text, then calls it once with
``final=True``; the pieces always add up to the text the generation returns. A sink that
raises stops the generation: the backend closes the HTTP response, and the engine cancels
the sequence when its client goes away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

__all__ = ["DeltaSink", "DeltaSinks", "Pieces", "response_lines", "stop_strings"]

# called with each piece of new text, then once with final=True (the rest, maybe "")
DeltaSink = Callable[[str, bool], None]


class Pieces:
    """Turns the growing text of a stream into pieces for a sink. The last ``holdback``
    characters (the longest stop string) are held until the end, since engines trim a stop
    string once it is complete."""

    def __init__(self, sink: DeltaSink, holdback: int) -> None:
        self.sink = sink
        self.holdback = holdback
        self.sent = ""

    def update(self, text: str) -> None:
        safe = text[: max(0, len(text) - self.holdback)]
        if len(safe) > len(self.sent) and safe.startswith(self.sent):
            piece, self.sent = safe[len(self.sent) :], safe
            self.sink(piece, False)

    def finish(self, text: str) -> None:
        self.sink(text[len(self.sent) :] if text.startswith(self.sent) else "", True)


class DeltaSinks:
    """The sinks registered per state, and the trace headers its requests carry. Keyed by
    the state, not the thread: the frontend generates on each state's own worker thread,
    where neither the sink nor the caller's span would be found."""

    _sinks: dict[int, DeltaSink]
    _traced: dict[int, dict[str, str]]

    def _init_sinks(self) -> None:
        self._sinks = {}
        self._traced = {}

    @contextmanager
    def traced(self, state: Any, headers: dict[str, str]) -> Iterator[None]:
        """While the block runs, requests for ``state``'s generations carry ``headers``
        (the W3C ``traceparent`` of the caller's span: the engine's spans join its trace)."""
        with _registered(self._traced, state, headers):
            yield

    def trace_headers(self, s: Any) -> dict[str, str]:
        return self._traced.get(id(s), {})

    @contextmanager
    def deltas(self, state: Any, sink: DeltaSink) -> Iterator[None]:
        """While the block runs, generations of ``state`` (a ``ProgramState`` or its
        ``StreamExecutor``) are streamed into ``sink``."""
        with _registered(self._sinks, state, sink):
            yield

    def sink_for(self, s: Any) -> DeltaSink | None:
        return self._sinks.get(id(s))


@contextmanager
def _registered(table: dict[int, Any], state: Any, value: Any) -> Iterator[None]:
    """``value`` is ``table``'s entry for ``state`` (keyed by its executor) while the block
    runs."""
    key = id(getattr(state, "stream_executor", state))
    table[key] = value
    try:
        yield
    finally:
        table.pop(key, None)


def stop_strings(stop: Any) -> list[str]:
    stop = stop or ()
    return [stop] if isinstance(stop, str) else [x for x in stop if isinstance(x, str)]


def response_lines(res: requests.Response) -> Iterator[bytes]:
    """The lines of a response as its bytes arrive (``iter_lines`` waits for 512 bytes)."""
    pending = b""
    for chunk in res.iter_content(chunk_size=None):
        *lines, pending = (pending + chunk).split(b"\n")
        yield from lines
    if pending:
        yield pending
