"""The API's vocabulary-level check of the schemas of ``/v1/extract`` and the OpenAI routes.

A schema can pass every static check (valid, bounded, every keyword enforceable) and still
take minutes to compile against the model's 49k tokens; only the engine would find out, after
the run was queued, and hold a compiler while it did. The API compiles it too, in its own
killable children (:class:`~sgflow.engine.compile_pool.CompilePool` with ``ship=False``: only
the verdict comes back), *beside* the run rather than before it, so a schema that compiles
costs no latency, and one that does not is refused with its code and the run cancelled.

The pool is started in the background when the API starts (``SGFLOW_COMPILE_CHECK=0`` turns
the check off) and keeps verdicts by content, so a schema is compiled here once per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from sgflow.engine.compile_pool import CompileFailed, CompilePool
from sgflow.errors import SgflowError
from sgflow.settings import Settings

__all__ = ["VocabularyCheck"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class VocabularyCheck:
    """``await check(schema)`` raises the :class:`SgflowError` of a schema the engine could
    not compile; a busy pool or a missing vocabulary lets it pass (the engine still decides)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.compile_check
        self._timeout_s = settings.compile_timeout_s
        self._layout = settings.grammar_limits().layout
        self._pool: CompilePool | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._waiting = anyio.CapacityLimiter(16)  # threads that wait on a child, not CPU

    def _get_pool(self) -> CompilePool | None:
        with self._lock:
            if self._pool is None and self.enabled and not self._closed:
                try:
                    from sgflow.engine.vocabulary import tokenizer_info

                    tokenizer = tokenizer_info()
                except (OSError, ImportError) as exc:
                    log.warning("no vocabulary to check schemas against", extra={"error": str(exc)})
                    self.enabled = False
                    return None
                self._pool = CompilePool(
                    tokenizer,
                    layout=self._layout,
                    timeout_s=self._timeout_s,
                    fast_budget_s=min(2.5, self._timeout_s),
                    max_wait_s=self._timeout_s,
                    fast_processes=1,
                    slow_processes=1,
                    ship=False,
                )
            return self._pool

    def warm(self) -> None:
        """Load the vocabulary and start the children now (the API's start-up calls this in
        a thread), so the first extraction does not wait for them."""
        try:
            self._get_pool()
        except Exception:  # a check that cannot start is skipped, never fatal
            log.exception("the schema compile check could not start")
            self.enabled = False

    def _compile(self, source: str) -> None:
        pool = self._get_pool()
        if pool is not None:
            pool.compile("json_schema", source)

    async def check(self, schema: dict[str, Any], field: str = "/schema") -> None:
        if not self.enabled:
            return
        source = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
        try:
            await anyio.to_thread.run_sync(self._compile, source, limiter=self._waiting)
        except CompileFailed as exc:
            if exc.reason == "busy":
                log.info("schema check skipped: every compiler is busy")
                return
            raise SgflowError(
                exc.code("json_schema"),
                f"the schema does not compile against the model's vocabulary: {exc.message}",
                field=field,
                hint="simplify the schema (fewer optional properties, shorter bounded "
                "strings, fewer alternatives), or raise SGFLOW_COMPILE_TIMEOUT_S",
            ) from None
        except Exception:  # the check itself broke (a child could not start): the engine
            log.exception("schema check skipped")  # still decides; never a 500 for this
            return

    async def beside(
        self,
        schemas: Sequence[tuple[dict[str, Any], str]],
        submit: Callable[[], Awaitable[T]],
        cancel: Callable[[T], Awaitable[str]],
    ) -> T:
        """Run ``submit()`` while ``schemas`` (``(schema, field)`` pairs) compile. If one does
        not compile, ``cancel(submitted)`` (which returns the run id) and raise its error
        with ``run`` set: a schema that compiles costs no latency."""
        compiling = asyncio.create_task(self._check_all(schemas))
        try:
            submitted = await submit()
        except BaseException:
            compiling.cancel()
            raise
        try:
            await compiling
        except SgflowError as refused:
            refused.extra["run"] = await cancel(submitted)
            raise
        return submitted

    async def _check_all(self, schemas: Sequence[tuple[dict[str, Any], str]]) -> None:
        for schema, field in schemas:
            await self.check(schema, field)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pool is not None:
                self._pool.close()
                self._pool = None
