"""The seam to xgrammar: build a grammar under a time limit, cache it, match text with it.

Grammars are built with the settings the engine decodes with (the JSON layout,
:class:`~sgflow.grammars.layout.JsonLayout`, and xgrammar's default ``strict_mode``),
so what passes here is what the engine will enforce. Building needs no tokenizer: that
is the engine's (per-vocabulary) step. Matching text compiles against an empty
vocabulary, which is enough for :class:`xgrammar.GrammarMatcher.accept_string`.

xgrammar cannot be interrupted, so a build that runs past the limit is abandoned in its
daemon thread (it finishes or dies with the process) and reported as
``grammar.compile_timeout``; the static limits exist so that this stays rare.

Two caches, both keyed by content hash: built grammars (:func:`cached_grammar`) and whole
check results (:func:`memo_check`: static problems, compile error or grammar). The second
exists because the static checks (meta-schema validation, the walks) cost 20-50 times
more than a grammar cache hit on real-world schemas (``sgflow bench grammars``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import xgrammar as xgr

from sgflow.grammars.errors import GrammarError, clean_xgrammar_message
from sgflow.grammars.layout import JsonLayout
from sgflow.grammars.spec import Ebnf, JsonSchema, Regex, canonical_json

__all__ = [
    "CacheInfo",
    "CheckResult",
    "MatchResult",
    "build_grammar",
    "cache_info",
    "cached_grammar",
    "clear_cache",
    "match",
    "memo_check",
    "run_with_timeout",
]

T = TypeVar("T")
V = TypeVar("V")

_INVALID = {"regex": "grammar.invalid_regex", "ebnf": "grammar.invalid_ebnf"}
_HINTS = {
    "regex": "fix the pattern; `sgflow grammars list` has tested ones",
    "ebnf": "the start rule must be `root ::= …`; comments start with #",
    "json_schema": "simplify the schema; `sgflow check --explain` shows what xgrammar supports",
}


def build_grammar(spec: Regex | JsonSchema | Ebnf, *, layout: JsonLayout) -> xgr.Grammar:
    """xgrammar's grammar for ``spec``; raises :class:`GrammarError` (``grammar.invalid_*``,
    or ``grammar.unsupported`` for a construct xgrammar says it does not support)."""
    try:
        if isinstance(spec, Regex):
            return xgr.Grammar.from_regex(spec.pattern)
        if isinstance(spec, Ebnf):
            return xgr.Grammar.from_ebnf(spec.grammar)
        return xgr.Grammar.from_json_schema(
            canonical_json(spec.schema), **layout.xgrammar_options()
        )
    except Exception as exc:  # xgrammar raises RuntimeError / ValueError subclasses
        message = clean_xgrammar_message(exc)
        code = _INVALID.get(spec.kind, "grammar.invalid_schema")
        if "not supported" in message:
            code = "grammar.unsupported"
        raise GrammarError(code, "", f"xgrammar: {message}", _HINTS[spec.kind]) from None


def run_with_timeout(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()`` in a daemon thread; ``GrammarError("grammar.compile_timeout")`` if it is late."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="sgflow-grammar-build", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise GrammarError(
            "grammar.compile_timeout",
            "",
            f"the grammar did not compile within {timeout_s:g}s",
            "simplify it: fewer alternatives, smaller bounded repetitions, a smaller schema",
            limit=timeout_s,
        )
    if failure:
        raise failure[0]
    return outcome[0]


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """Counters of the grammar cache since the last :func:`clear_cache`."""

    hits: int
    misses: int
    size: int
    maxsize: int


class _LRU(Generic[V]):
    """A thread-safe LRU with hit/miss counters."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Any, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: Any, item: V) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._items), self.maxsize)


# built grammars (and build errors, which are just as deterministic)
_cache: _LRU[xgr.Grammar | GrammarError] = _LRU(maxsize=256)

CheckResult = tuple[list[GrammarError], xgr.Grammar | None]
"""A check's problems (empty when it passed) and, when it passed and compiled, the grammar."""

_checks: _LRU[tuple[tuple[GrammarError, ...], xgr.Grammar | None]] = _LRU(maxsize=1024)


def cached_grammar(
    spec: Regex | JsonSchema | Ebnf, *, layout: JsonLayout, timeout_s: float
) -> xgr.Grammar:
    """:func:`build_grammar` under ``timeout_s``, memoised by content hash and settings.

    Raises :class:`GrammarError`; a timeout is not cached (the machine may have been busy).
    """
    key = f"{spec.content_hash()}:{layout.key}"
    hit = _cache.get(key)
    if isinstance(hit, GrammarError):
        raise _copy(hit)
    if hit is not None:
        return hit
    try:
        grammar = run_with_timeout(lambda: build_grammar(spec, layout=layout), timeout_s)
    except GrammarError as err:
        if err.code != "grammar.compile_timeout":
            _cache.put(key, err)
        raise
    _cache.put(key, grammar)
    return grammar


def memo_check(spec: Any, settings: Hashable, compute: Callable[[], CheckResult]) -> CheckResult:
    """``compute()`` once per spec content and ``settings`` (the limits in force).

    A spec's problems and grammar are a function of its content and the limits alone, so a
    repeated request costs one content hash instead of the meta-schema validation and the
    walks. A result with ``grammar.compile_timeout`` is not remembered (the machine may
    have been busy); a spec that cannot be hashed is simply not memoised.
    """
    try:
        key = (spec.kind, spec.content_hash(), settings)
    except (TypeError, ValueError):  # not JSON-serialisable: let the checks report it
        return compute()
    hit = _checks.get(key)
    if hit is not None:
        return [_copy(e) for e in hit[0]], hit[1]
    errors, grammar = compute()
    if not any(e.code == "grammar.compile_timeout" for e in errors):
        _checks.put(key, (tuple(errors), grammar))
    return errors, grammar


def _copy(err: GrammarError) -> GrammarError:
    return GrammarError(err.code, err.pointer, err.message, err.hint, limit=err.limit)


def cache_info() -> CacheInfo:
    """Hits, misses, size and capacity of the in-memory grammar cache."""
    return _cache.info()


def clear_cache() -> None:
    """Empty the grammar and check caches and reset their counters."""
    _cache.clear()
    _checks.clear()


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """Whether a grammar accepts a whole text; if not, where it stopped.

    ``position`` is the 0-based index of the first character the grammar refused, or
    ``len(text)`` when every character was accepted but the text ends too early.
    """

    accepted: bool
    position: int | None = None
    incomplete: bool = False  # refused only because the text stops before the grammar does


_string_compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)


def match(grammar: xgr.Grammar, text: str) -> MatchResult:
    """Feed ``text`` to a matcher one character at a time (the same automaton the engine
    steps token by token) and report the first refusal."""
    matcher = xgr.GrammarMatcher(
        _string_compiler.compile_grammar(grammar), terminate_without_stop_token=True
    )
    for i, ch in enumerate(text):
        if not matcher.accept_string(ch):
            return MatchResult(False, i)
    if matcher.is_terminated():
        return MatchResult(True)
    return MatchResult(False, len(text), incomplete=True)
