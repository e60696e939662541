"""Grammar compilation in child processes that can be killed.

xgrammar compiles a constraint against the whole vocabulary in C++; a hostile or merely
unlucky schema can take minutes and gigabytes, and a thread running it can be neither stopped
nor bounded. So compilation runs in child processes, each holding the vocabulary once:

- **two lanes.** Every new constraint first goes to the *fast* lane, whose children give it
  ``fast_budget_s``; nearly every real constraint compiles within that (on these CPUs a
  schema with a 300-character string field takes about 2 s against SmolLM2's 49k tokens). One that does not
  is killed there and retried in the *slow* lane, with the full ``timeout_s``. Slow grammars
  therefore hold the fast lane for at most ``fast_budget_s`` each and queue among themselves
  in the slow lane, while ordinary constraints keep compiling beside them.
- **killed, not abandoned.** A child past its budget is killed (SIGKILL) and replaced; a child
  that dies by itself (a crash, the memory limit) is replaced too, and the constraint is tried
  once more in the slow lane before it is blamed. Nothing keeps running.
- **bounded.** Each child may use ``memory_bytes`` of address space. A caller waits at most
  ``max_wait_s`` for a free child, then gets ``grammar.compile_busy`` (503, retryable).
- **remembered.** Results are keyed by a hash of the constraint and the settings: compiled
  grammars are kept (up to ``keep`` of them), failures are remembered (up to ``remember``;
  a timeout for ``forget_timeouts_s``, since a busy machine may have caused it), and a
  constraint already being compiled is waited for, not compiled again.

The compiled grammar is serialised by the child (``CompiledGrammar.serialize_json``) and
rebuilt against the parent's tokenizer. With ``ship=False`` (the API's check, which only needs
to know that a constraint compiles in time) nothing is sent back but the verdict.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import xgrammar as xgr

from sgflow.grammars.layout import DEFAULT_LAYOUT, JsonLayout

__all__ = ["INVALID_CODES", "CompileFailed", "CompilePool", "Kind"]

log = logging.getLogger(__name__)

Kind = Literal["regex", "json_schema", "ebnf"]
Reason = Literal["timeout", "invalid", "crashed", "busy"]

_REASONS: dict[str, Reason] = {r: r for r in ("timeout", "invalid", "crashed", "busy")}
# Children fork from a server that has already imported xgrammar: a replacement is ready in
# tens of milliseconds (a spawned interpreter takes over a second), and no child inherits
# the parent's threads or sockets.
_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["xgrammar"])
_STARTUP_S = 120.0  # a child's start (interpreter, xgrammar, vocabulary) is not a compile


INVALID_CODES = {
    "regex": "grammar.invalid_regex",
    "json_schema": "grammar.invalid_schema",
    "ebnf": "grammar.invalid_ebnf",
}
_REASON_CODES = {
    "timeout": "grammar.compile_timeout",
    "crashed": "grammar.compile_crashed",
    "busy": "grammar.compile_busy",
}


class CompileFailed(Exception):
    """A constraint that did not compile: ``reason`` is ``timeout`` (past the budget),
    ``invalid`` (xgrammar refused it; ``message`` says why), ``crashed`` (the compiler died on
    it) or ``busy`` (no compiler was free in time)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def code(self, kind: str) -> str:
        """The registered code this failure is answered with, for a constraint of ``kind``."""
        return _REASON_CODES.get(self.reason) or INVALID_CODES[kind]


def _child_main(
    conn: Connection, tokenizer_json: str, json_options: dict[str, Any], memory: int
) -> None:
    """A compiler process: one job at a time, ``(kind, source, ship)`` in, a verdict out."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on every platform
        pass
    info = xgr.TokenizerInfo.deserialize_json(tokenizer_json)
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    conn.send(("ready", ""))
    while True:
        try:
            kind, source, ship = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if kind == "regex":
                compiled = compiler.compile_regex(source)
            elif kind == "ebnf":
                compiled = compiler.compile_grammar(source)
            else:
                compiled = compiler.compile_json_schema(source, **json_options)
            conn.send(("ok", compiled.serialize_json() if ship else ""))
        except MemoryError:
            conn.send(("crashed", "the compiler ran out of memory"))
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError subclasses
            conn.send(("invalid", str(exc) or type(exc).__name__))


class _Child:
    """One compiler process and its pipe."""

    def __init__(self, tokenizer_json: str, json_options: dict[str, Any], memory: int) -> None:
        self.conn, theirs = _CTX.Pipe()
        self.process = _CTX.Process(
            target=_child_main,
            args=(theirs, tokenizer_json, json_options, memory),
            name="sgflow-grammar",
            daemon=True,
        )
        self.process.start()
        theirs.close()
        self.ready = False

    def run(self, kind: str, source: str, ship: bool, budget_s: float) -> tuple[str, str]:
        """``(verdict, payload)``; verdict ``timeout`` or ``crashed`` when the child must go."""
        try:
            if not self.ready:
                if not self.conn.poll(_STARTUP_S):
                    return "crashed", "the compiler process did not start"
                self.conn.recv()
                self.ready = True
            self.conn.send((kind, source, ship))
            if not self.conn.poll(budget_s):
                return "timeout", ""
            verdict, payload = self.conn.recv()
            return str(verdict), str(payload)
        except (EOFError, OSError):
            code = self.process.exitcode
            return "crashed", f"the compiler process died (exit code {code})"

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class _Lane:
    """Children of one budget; a caller borrows an idle one, or waits for one."""

    def __init__(self, name: str, size: int, budget_s: float, spawn: Callable[[], _Child]) -> None:
        self.name = name
        self.budget_s = budget_s
        self._spawn = spawn
        self._idle: queue.Queue[_Child] = queue.Queue()
        self.children: list[_Child] = []
        for _ in range(size):
            child = spawn()
            self.children.append(child)
            self._idle.put(child)
        self.killed = 0
        self.closed = False

    def run(self, kind: str, source: str, ship: bool, wait_s: float) -> tuple[str, str]:
        try:
            child = self._idle.get(timeout=wait_s)
        except queue.Empty:
            return "busy", f"every {self.name} grammar compiler stayed busy for {wait_s:g}s"
        verdict, payload = "crashed", "the compiler was interrupted"
        try:
            verdict, payload = child.run(kind, source, ship, self.budget_s)
        finally:
            if verdict in ("timeout", "crashed"):
                child = self._replace(child)
            self._idle.put(child)
        return verdict, payload

    def _replace(self, child: _Child) -> _Child:
        child.kill()
        self.killed += 1
        if self.closed:  # the pool was closed meanwhile: nothing new is started
            return child
        fresh = self._spawn()
        self.children[self.children.index(child)] = fresh
        return fresh

    def close(self) -> None:
        self.closed = True
        for child in self.children:
            child.kill()


@dataclass(frozen=True)
class _Failure:
    reason: Reason
    message: str
    until: float  # monotonic time the failure is forgotten


class CompilePool:
    """Compiles regexes, JSON Schemas and EBNF grammars against ``tokenizer``; see the module
    docstring. :meth:`compile` is thread-safe and blocks its caller (call it from a worker
    thread, never from an event loop)."""

    def __init__(
        self,
        tokenizer: xgr.TokenizerInfo,
        *,
        layout: JsonLayout = DEFAULT_LAYOUT,
        timeout_s: float = 10.0,
        fast_budget_s: float = 2.5,
        max_wait_s: float = 30.0,
        fast_processes: int = 2,
        slow_processes: int = 1,
        memory_bytes: int = 4 << 30,
        ship: bool = True,
        keep: int = 64,
        remember: int = 1024,
        forget_timeouts_s: float = 600.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.layout = layout
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s
        self.ship = ship
        tokenizer_json = tokenizer.serialize_json()

        def spawn() -> _Child:
            return _Child(tokenizer_json, layout.xgrammar_options(), memory_bytes)

        fast_budget_s = min(fast_budget_s, timeout_s)
        self._fast = _Lane("fast", fast_processes, fast_budget_s, spawn)
        self._slow = _Lane("slow", slow_processes, timeout_s, spawn)
        self._lock = threading.Lock()
        self._compiled: OrderedDict[str, xgr.CompiledGrammar | None] = OrderedDict()
        self._failed: OrderedDict[str, _Failure] = OrderedDict()
        self._slow_keys: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, Future[xgr.CompiledGrammar | None]] = {}
        self._keep = keep
        self._remember = remember
        self._forget_timeouts_s = forget_timeouts_s
        self.compiles = 0  # compilations that ran in a child (cache misses)

    # -- public --------------------------------------------------------------------------

    def compile(self, kind: Kind, source: str) -> xgr.CompiledGrammar | None:
        """The compiled grammar (None with ``ship=False``); raises :class:`CompileFailed`."""
        key = self._key(kind, source)
        with self._lock:
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
            failure = self._failed.get(key)
            if failure is not None and failure.until > time.monotonic():
                raise CompileFailed(failure.reason, failure.message)
            pending = self._inflight.get(key)
            if pending is None:
                mine: Future[xgr.CompiledGrammar | None] = Future()
                self._inflight[key] = mine
        if pending is not None:
            return pending.result()
        try:
            result = self._compile(key, kind, source)
        except BaseException as exc:  # waiters for the same constraint get the same answer
            mine.set_exception(exc)
            raise
        else:
            mine.set_result(result)
            return result
        finally:
            with self._lock:
                del self._inflight[key]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "compiled": len(self._compiled),
                "failed": len(self._failed),
                "slow": len(self._slow_keys),
                "compiles": self.compiles,
                "killed": self._fast.killed + self._slow.killed,
            }

    def close(self) -> None:
        self._fast.close()
        self._slow.close()

    # -- internals -----------------------------------------------------------------------

    def _key(self, kind: str, source: str) -> str:
        digest = hashlib.sha256(f"{kind}\0{self.layout.key}\0".encode())
        digest.update(source.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def _compile(self, key: str, kind: str, source: str) -> xgr.CompiledGrammar | None:
        started = time.monotonic()
        with self._lock:
            known_slow = key in self._slow_keys
        verdict, payload = "timeout", ""
        if not known_slow:
            verdict, payload = self._fast.run(kind, source, self.ship, self.max_wait_s)
            if verdict == "timeout":
                with self._lock:
                    self._slow_keys[key] = None
                    _trim(self._slow_keys, self._remember)
                log.info(
                    "grammar moved to the slow lane",
                    extra={"kind": kind, "budget_s": self._fast.budget_s},
                )
        if verdict in ("timeout", "crashed"):  # a crash may be the child's, not the grammar's
            wait_s = max(0.0, self.max_wait_s - (time.monotonic() - started))
            verdict, payload = self._slow.run(kind, source, self.ship, wait_s)
        with self._lock:
            self.compiles += 1
        if verdict == "ok":
            compiled = (
                xgr.CompiledGrammar.deserialize_json(payload, self.tokenizer) if self.ship else None
            )
            with self._lock:
                self._compiled[key] = compiled
                _trim(self._compiled, self._keep)
            return compiled
        if verdict == "timeout":
            message = f"it did not compile within {self.timeout_s:g}s"
        else:
            message = payload
        reason = _REASONS.get(verdict, "crashed")
        if reason != "busy":
            ttl = self._forget_timeouts_s if reason == "timeout" else float("inf")
            with self._lock:
                self._failed[key] = _Failure(reason, message, time.monotonic() + ttl)
                _trim(self._failed, self._remember)
        log.warning("grammar refused", extra={"kind": kind, "reason": reason})
        raise CompileFailed(reason, message)


def _trim(entries: OrderedDict[str, Any], size: int) -> None:
    while len(entries) > size:
        entries.popitem(last=False)
