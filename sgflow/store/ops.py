"""The one seam between the store and Redis: operations written once, driven sync or async.

Every store operation is a generator (an :data:`Op`) that yields the Redis work it needs and
receives each reply: a :class:`Call` (one command, by its redis-py method name), an
:class:`Eval` (a Lua script, by ``EVALSHA``, loaded again when Redis lost it) or a
:class:`Pipe` (several of those in one round trip, MULTI only when asked; its reply is the list of
replies). It returns its result, or raises. :class:`SyncRunner` drives operations with a
``redis.Redis``, :class:`AsyncRunner` with a ``redis.asyncio.Redis``: the key layout, the
scripts and the reply parsing live in the operations, once; the runners only do the I/O.
This is the shape of ``sgflow/client.py`` (one operation, two drivers).

Operations compose with ``yield from``. Clients made with or without ``decode_responses``
work alike (replies go through :func:`~sgflow.store.records.as_str` where text is expected).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio

__all__ = ["AsyncRunner", "Call", "Eval", "Lua", "Op", "Pipe", "Step", "SyncRunner"]

T = TypeVar("T")


@dataclass(frozen=True)
class Lua:
    """A Lua script's text and its SHA-1 (what ``EVALSHA`` names it by)."""

    body: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.body.encode()).hexdigest())


@dataclass(frozen=True)
class Call:
    """One Redis command: ``method`` is the redis-py method (``"hgetall"``, ``"xrange"``)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    """``Call(method, args, kwargs)`` written like the redis-py call it stands for."""
    return Call(method, args, kwargs)


@dataclass(frozen=True)
class Eval:
    """A Lua script run atomically with ``keys`` (KEYS) and ``args`` (ARGV)."""

    script: Lua
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True)
class Pipe:
    """Commands and scripts sent in one round trip; the reply is the list of their replies.
    ``transaction`` (default False) wraps them in MULTI/EXEC."""

    steps: Sequence[Call | Eval]
    transaction: bool = False


Step = Call | Eval | Pipe
Op = Generator[Step, Any, T]


class SyncRunner:
    """Runs operations on a sync ``redis.Redis`` (a pool: safe from many threads)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    def __call__(self, op: Op[T]) -> T:
        """Drive ``op`` to its end; returns its result, raises what it (or Redis) raises."""
        try:
            step = next(op)
            while True:
                step = op.send(self._do(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _script(self, lua: Lua) -> Any:
        script = self._scripts.get(lua.sha)
        if script is None:
            script = self._scripts[lua.sha] = self.client.register_script(lua.body)
        return script

    def _do(self, step: Step) -> Any:
        if isinstance(step, Call):
            return getattr(self.client, step.method)(*step.args, **step.kwargs)
        if isinstance(step, Eval):
            return self._script(step.script)(keys=step.keys, args=step.args)
        pipe = self.client.pipeline(transaction=step.transaction)
        for part in step.steps:
            if isinstance(part, Call):
                getattr(pipe, part.method)(*part.args, **part.kwargs)
            else:  # registered on the pipeline, which loads missing scripts before it runs
                self._script(part.script)(keys=part.keys, args=part.args, client=pipe)
        return pipe.execute()


class AsyncRunner:
    """Runs operations on a ``redis.asyncio.Redis``, in the event loop that uses it."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    async def __call__(self, op: Op[T]) -> T:
        """Drive ``op`` to its end; returns its result, raises what it (or Redis) raises."""
        try:
            step = next(op)
            while True:
                step = op.send(await self._do(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _script(self, lua: Lua) -> Any:
        script = self._scripts.get(lua.sha)
        if script is None:
            script = self._scripts[lua.sha] = self.client.register_script(lua.body)
        return script

    async def _do(self, step: Step) -> Any:
        if isinstance(step, Call):
            return await getattr(self.client, step.method)(*step.args, **step.kwargs)
        if isinstance(step, Eval):
            return await self._script(step.script)(keys=step.keys, args=step.args)
        pipe = self.client.pipeline(transaction=step.transaction)
        for part in step.steps:
            if isinstance(part, Call):
                getattr(pipe, part.method)(*part.args, **part.kwargs)
            else:
                await self._script(part.script)(keys=part.keys, args=part.args, client=pipe)
        return await pipe.execute()
