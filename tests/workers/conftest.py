"""The workers' tests use the store's fixtures: a real Redis, a key prefix per test, a fake
clock and a :class:`~sgflow.store.RunStore` on them (tests/store/conftest.py)."""

from tests.store.conftest import REDIS_URL, T0, FakeClock, client, clock, connect, prefix, store

__all__ = ["REDIS_URL", "T0", "FakeClock", "client", "clock", "connect", "prefix", "store"]
