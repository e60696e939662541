"""Cursor pagination over a tenant's runs, newest first.

The index is the tenant's sorted set ``tenant:<t>:runs`` (score ``created_at``), so a
tenant's listing can only ever read that tenant's ids. A cursor is the position
``(created_at, run id)`` of the last entry a page looked at, encoded opaquely; the next page
starts strictly after it, so runs created meanwhile (newer, hence before it) never shift a
page, and equal timestamps are ordered by id as Redis orders them.

Filters are applied to the records, so a call looks at no more than :data:`SCAN_BUDGET`
entries: with a filter that matches rarely, a page may hold fewer than ``limit`` runs (even
none) and still carry a ``next_cursor``; only ``None`` means the end.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from sgflow.store.errors import InvalidCursor
from sgflow.store.ops import Op, Pipe, call
from sgflow.store.records import STATUSES, Keys, Run, as_str

__all__ = ["MAX_LIMIT", "SCAN_BUDGET", "list_runs"]

SCAN_BUDGET = 1000  # index entries one call may examine
MAX_LIMIT = 500
_CHUNK = 100


def list_runs(
    keys: Keys,
    tenant: str,
    *,
    status: str | None = None,
    program: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Op[tuple[list[Run], str | None]]:
    """Up to ``limit`` (default 50, at most :data:`MAX_LIMIT`) of ``tenant``'s runs and the
    cursor of the next page (``None`` at the end).

    ``status`` filters by status; ``program`` by ``name@version``, or by every version when
    given a bare name. Entries of runs whose result expired are removed from the index on
    the way. Raises :class:`InvalidCursor`, and ``ValueError`` for a bad ``limit`` or status.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be in 1..{MAX_LIMIT}, not {limit}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {list(STATUSES)}, not {status!r}")
    key = keys.tenant_runs(tenant)
    after = _decode(cursor) if cursor else None
    top = repr(after[0]) if after else "+inf"
    runs: list[Run] = []
    gone: list[str] = []
    last: tuple[float, str] | None = None
    offset = 0
    examined = 0
    next_cursor: str | None = None
    while True:
        chunk: Any = yield call(
            "zrevrangebyscore", key, top, "-inf", start=offset, num=_CHUNK, withscores=True
        )
        offset += len(chunk)
        entries = [(as_str(m), float(score)) for m, score in chunk]
        if after:
            entries = [(m, s) for m, s in entries if not _at_or_before(m, s, after)]
        records = (
            (yield Pipe([call("hgetall", keys.run(m)) for m, _ in entries])) if entries else []
        )
        full = False
        for (run_id, score), raw in zip(entries, records, strict=True):
            examined += 1
            last = (score, run_id)
            if not raw:
                gone.append(run_id)
                continue
            run = Run.from_hash({as_str(a): as_str(b) for a, b in raw.items()})
            if _matches(run, status, program):
                runs.append(run)
                if len(runs) == limit:
                    full = True
                    break
        if full or (examined >= SCAN_BUDGET and len(chunk) == _CHUNK):
            next_cursor = _encode(last) if last else None
            break
        if len(chunk) < _CHUNK:
            break
    if gone:
        yield call("zrem", key, *gone)
    return runs, next_cursor


def _matches(run: Run, status: str | None, program: str | None) -> bool:
    if status is not None and run.status != status:
        return False
    if program is None:
        return True
    return run.program == program or ("@" not in program and run.program.startswith(program + "@"))


def _at_or_before(run_id: str, score: float, after: tuple[float, str]) -> bool:
    """Whether an entry was already covered by the page that ended at ``after``."""
    # in ZREVRANGEBYSCORE order, equal scores come in descending byte order of the member
    return score == after[0] and run_id.encode() >= after[1].encode()


def _encode(position: tuple[float, str]) -> str:
    raw = json.dumps([position[0], position[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value: Any = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor(cursor) from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int | float)
        or isinstance(value[0], bool)
        or not math.isfinite(value[0])
        or not isinstance(value[1], str)
    ):
        raise InvalidCursor(cursor)
    return float(value[0]), value[1]
