"""Reading runs' event streams: a page after an id, a wait for the next, and one blocking
read over many runs at once for the API's event hub.

Events are written by :func:`sgflow.store.runs.append_event` and the run scripts (``XADD``,
``MAXLEN ~`` capped); a stream id is ``<ms>-<seq>``, the SSE ``id`` clients resume after.
Operations (see :mod:`sgflow.store.ops`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sgflow.store.config import StoreConfig
from sgflow.store.ops import Op, Pipe, call
from sgflow.store.records import as_str

__all__ = ["Event", "check_event_id", "nudge", "parse_entries", "read_events", "wait_events"]

Event = tuple[str, str, dict[str, Any]]  # (event id, kind, data)
_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


def check_event_id(event_id: str) -> str:
    """``event_id`` if it is a stream id (``<ms>`` or ``<ms>-<seq>``); raises
    ``ValueError`` otherwise."""
    if not _STREAM_ID.fullmatch(event_id):
        raise ValueError(f"{event_id[:40]!r} is not an event id")
    return event_id


def read_events(
    cfg: StoreConfig,
    run_id: str,
    after_id: str = "0-0",
    block_ms: int | None = None,
    count: int = 100,
) -> Op[list[Event]]:
    """Up to ``count`` (default 100) events after ``after_id`` (exclusive; pass
    ``Last-Event-ID``), oldest first. If there are none yet, waits up to ``block_ms`` for
    one (default ``None``: no wait; ``0`` waits for ever) on the connection it runs on;
    the client's socket timeout must exceed it. Raises ``ValueError`` for a malformed
    ``after_id``."""
    check_event_id(after_id)
    key = cfg.keys.events(run_id)
    entries: Any = yield call("xrange", key, min="(" + after_id, count=count)
    if not entries and block_ms is not None:
        # XREAD only to wait: its reply's shape differs between redis-py versions and
        # RESP2/RESP3, XRANGE's does not
        yield call("xread", {key: after_id}, count=1, block=block_ms)
        entries = yield call("xrange", key, min="(" + after_id, count=count)
    return parse_entries(entries)


def wait_events(
    cfg: StoreConfig,
    cursors: Mapping[str, str],
    *,
    hub: str,
    hub_cursor: str,
    block_ms: int,
    count: int = 100,
) -> Op[tuple[dict[str, list[Event]], str]]:
    """One blocking ``XREAD`` over many runs' event streams at once: for each run id of
    ``cursors``, up to ``count`` (default 100) events after its cursor; waits up to
    ``block_ms`` when there are none, or until :func:`nudge` wakes the reader ``hub`` (its
    own stream, read from ``hub_cursor``). Returns the events per run (runs without new
    events are left out) and the hub's new cursor. Run it on a connection of its own: it
    holds the connection while it waits (its socket timeout must exceed ``block_ms``)."""
    k = cfg.keys
    by_key = {k.events(run_id): run_id for run_id in cursors}
    streams = {k.events(run_id): check_event_id(after) for run_id, after in cursors.items()}
    streams[k.hub(hub)] = hub_cursor
    reply = yield call("xread", streams, count=count, block=block_ms)
    found: dict[str, list[Event]] = {}
    pairs = reply.items() if isinstance(reply, dict) else (reply or [])
    for key, entries in pairs:
        name = as_str(key)
        if name == k.hub(hub):
            hub_cursor = as_str(entries[-1][0]) if entries else hub_cursor
        elif name in by_key and entries:
            found[by_key[name]] = parse_entries(entries)
    return found, hub_cursor


def nudge(cfg: StoreConfig, hub: str) -> Op[None]:
    """Wake a :func:`wait_events` that reads as ``hub``: it returns at once, so its caller
    can read again with a new set of runs."""
    key = cfg.keys.hub(hub)
    yield Pipe(
        [call("xadd", key, {"n": "1"}, maxlen=16, approximate=True), call("expire", key, 3600)]
    )


def parse_entries(entries: Any) -> list[Event]:
    """Stream entries ``[(id, {kind, data})]`` (XRANGE's or XREAD's) as events."""
    out: list[Event] = []
    for event_id, fields in entries:
        f = {as_str(a): as_str(b) for a, b in fields.items()}
        out.append((as_str(event_id), f["kind"], json.loads(f["data"])))
    return out
