"""The settings every store operation reads: key prefix, lease, attempts, TTLs, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from sgflow.store.lua import RunScripts, run_scripts
from sgflow.store.records import Keys

__all__ = ["StoreConfig"]


@dataclass(frozen=True)
class StoreConfig:
    """One deployment's store: ``prefix`` (default ``sgflow:``) starts every key;
    ``lease_s`` (default 30) is how long a claim or heartbeat holds a run; ``max_attempts``
    (default 3) how many claims a run gets before it fails with ``run.max_attempts``;
    ``result_ttl_s`` (default 7 days) how long a finished run's or batch's keys live;
    ``events_maxlen`` (default 10000) the approximate cap on a run's event stream;
    ``clock`` (default ``time.time``) the epoch clock every lease and deadline is measured
    with (tests pass a fake one). Raises ``ValueError`` for a setting out of range."""

    prefix: str = "sgflow:"
    lease_s: float = 30.0
    max_attempts: int = 3
    result_ttl_s: int = 7 * 24 * 3600
    events_maxlen: int = 10_000
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if (
            self.lease_s <= 0
            or self.max_attempts < 1
            or self.result_ttl_s < 1
            or self.events_maxlen < 1
        ):
            raise ValueError("lease_s, max_attempts, result_ttl_s, events_maxlen must be > 0")

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @cached_property
    def scripts(self) -> RunScripts:
        return run_scripts(self.events_maxlen)
