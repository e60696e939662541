"""Which engine a worker sends a run to (pure: the endpoints here are stand-ins that record
their URL, no engine is called)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sgflow.workers.engines import EnginePool

URLS = ["http://e1:30000", "http://e2:30000", "http://e3:30000"]
KEYS = [f"run-{i}" for i in range(3000)]


class Stub:
    def __init__(self, url: str) -> None:
        self.url = url


def test_one_url_takes_every_run_and_every_retry() -> None:
    pool = EnginePool(["http://router:30100"])
    assert {pool.pick(key, retry) for key in KEYS[:50] for retry in range(4)} == {
        "http://router:30100"
    }


def test_each_run_has_a_stable_order_of_every_engine() -> None:
    pool = EnginePool(URLS)
    for key in KEYS[:100]:
        order = pool.order(key)
        assert sorted(order) == sorted(URLS)
        assert EnginePool(list(reversed(URLS))).order(key) == order  # not the list's order
        assert [pool.pick(key, retry) for retry in range(4)] == [*order, order[0]]


def test_runs_spread_evenly() -> None:
    counts = Counter(EnginePool(URLS).pick(key) for key in KEYS)
    for url in URLS:
        assert 0.28 < counts[url] / len(KEYS) < 0.39, counts


def test_removing_an_engine_moves_only_its_runs() -> None:
    before = EnginePool(URLS)
    after = EnginePool(URLS[:2])
    for key in KEYS:
        if before.pick(key) != URLS[2]:
            assert after.pick(key) == before.pick(key)
        else:
            assert after.pick(key) == before.order(key)[1]  # its retry engine


def test_endpoints_are_built_once_per_url_and_a_failed_build_is_retried() -> None:
    built: list[str] = []
    fail = {"http://e2:30000": 1}

    def factory(url: str) -> Any:
        built.append(url)
        if fail.get(url):
            fail[url] -= 1
            raise ConnectionError("refused")
        return Stub(url)

    pool = EnginePool(URLS, factory=factory)
    first = pool.endpoint(URLS[0])
    assert pool.endpoint(URLS[0]) is first and first.url == URLS[0]
    with pytest.raises(ConnectionError):
        pool.endpoint(URLS[1])
    assert pool.endpoint(URLS[1]).url == URLS[1]
    assert built == [URLS[0], URLS[1], URLS[1]]


def test_an_empty_pool_is_refused_and_duplicates_collapse() -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        EnginePool([])
    assert EnginePool([URLS[0], URLS[0]]).urls == [URLS[0]]
