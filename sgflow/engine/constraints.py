"""Grammar-constrained decoding with xgrammar token bitmasks.

A constraint (regex, JSON Schema or EBNF) is compiled once per distinct source against the
model's vocabulary, in a killable child process under a time limit
(:mod:`sgflow.engine.compile_pool`), before the request is queued: a constraint that does not
compile is a 422 (503 ``grammar.compile_busy`` when every compiler is busy), never
unconstrained text. During
decoding each sequence holds a matcher; its bitmask is unpacked to a boolean mask over the
vocabulary, so applying it costs a few microseconds instead of a pass over 49k tokens.
"""

from __future__ import annotations

import re

import numpy as np
import xgrammar as xgr

from sgflow.engine.compile_pool import INVALID_CODES, CompileFailed, CompilePool
from sgflow.engine.errors import ConstraintError
from sgflow.engine.protocol import ConstraintSpec
from sgflow.grammars.layout import DEFAULT_LAYOUT, JsonLayout
from sgflow.jsonbounds import JsonBoundsError, loads

__all__ = ["GrammarBackend", "GrammarState"]

MAX_SOURCE_CHARS = {"regex": 10_000, "json_schema": 200_000, "ebnf": 100_000}


class GrammarState:
    """One sequence's position in its grammar."""

    def __init__(self, compiled: xgr.CompiledGrammar, vocab_size: int) -> None:
        self._matcher = xgr.GrammarMatcher(compiled)
        self._vocab_size = vocab_size
        self._bitmask = np.zeros((1, (vocab_size + 31) // 32), dtype=np.int32)

    def allowed(self) -> np.ndarray:
        self._matcher.fill_next_token_bitmask(self._bitmask)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        return bits[: self._vocab_size].astype(bool)

    def accept(self, token: int) -> bool:
        return bool(self._matcher.accept_token(token))

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` accepted tokens."""
        self._matcher.rollback(n)

    def forced_text(self) -> str:
        """The text the grammar allows as the only continuation from here (keys,
        punctuation, an enum's tail…), empty when there is a choice to make."""
        return str(self._matcher.find_jump_forward_string())

    def is_terminated(self) -> bool:
        return bool(self._matcher.is_terminated())


class GrammarBackend:
    """Compiles constraints for one model's vocabulary, in killable child processes
    (:class:`~sgflow.engine.compile_pool.CompilePool`: a fast lane, a slow lane, results and
    failures remembered by content).

    ``layout`` fixes the whitespace of JSON-Schema output (:mod:`sgflow.grammars.layout`):
    ``indent`` by default, so keys, separators and indentation are forced text the scheduler
    jumps forward over; ``free`` leaves it to the model, at most ``max_whitespace`` characters
    per gap so a small model cannot spin in whitespace.
    """

    def __init__(
        self,
        vocab: list[bytes],
        *,
        stop_ids: list[int],
        layout: JsonLayout = DEFAULT_LAYOUT,
        compile_timeout_s: float = 30.0,
        fast_budget_s: float = 2.5,
    ) -> None:
        self.vocab_size = len(vocab)
        info = xgr.TokenizerInfo(
            vocab, xgr.VocabType.RAW, vocab_size=len(vocab), stop_token_ids=stop_ids
        )
        self.layout = layout
        self.compile_timeout_s = compile_timeout_s
        self.pool = CompilePool(
            info,
            layout=layout,
            timeout_s=compile_timeout_s,
            fast_budget_s=fast_budget_s,
        )

    @property
    def compiled_count(self) -> int:
        """Compilations that ran (cache misses)."""
        return self.pool.compiles

    def compile(self, spec: ConstraintSpec) -> xgr.CompiledGrammar:
        """Compile ``spec``; raise :class:`ConstraintError` naming ``/sampling_params/<kind>``."""
        field = f"sampling_params.{spec.kind}"
        limit = MAX_SOURCE_CHARS[spec.kind]
        if len(spec.source) > limit:
            raise ConstraintError(
                f"{field} is {len(spec.source)} characters; the limit is {limit}",
                field=field,
                code="limit.grammar_size",
                limit=limit,
            )
        if spec.kind == "json_schema":
            try:  # bounded: a schema string nesting 20,000 deep must not reach xgrammar
                schema = loads(spec.source, max_size=None)
            except JsonBoundsError as exc:
                malformed = exc.code == "request.malformed_json"
                code = INVALID_CODES["json_schema"] if malformed else exc.code
                raise ConstraintError(
                    f"{field} is not acceptable JSON: {exc}", field=field, code=code
                ) from None
            if not isinstance(schema, dict | bool):
                raise ConstraintError(f"{field} must be a JSON object", field=field)
        try:
            compiled = self.pool.compile(spec.kind, spec.source)
        except CompileFailed as exc:
            raise _refusal(exc, spec.kind, field) from None
        assert compiled is not None  # the engine's pool ships grammars back
        return compiled

    def state(self, compiled: xgr.CompiledGrammar) -> GrammarState:
        return GrammarState(compiled, self.vocab_size)

    def close(self) -> None:
        self.pool.close()


def _refusal(exc: CompileFailed, kind: str, field: str) -> ConstraintError:
    if exc.reason == "timeout":
        return ConstraintError(
            f"{field} did not compile within {exc.message.rsplit(' ', 1)[-1]}; simplify it",
            field=field,
            code="grammar.compile_timeout",
            hint="split large schemas, bound repetitions, or raise the compile timeout",
        )
    if exc.reason == "busy":
        return ConstraintError(
            f"{field} could not be compiled now: {exc.message}",
            field=field,
            code="grammar.compile_busy",
            headers={"Retry-After": "2"},
        )
    if exc.reason == "crashed":
        return ConstraintError(
            f"{field} cannot be compiled: {exc.message}",
            field=field,
            code="grammar.compile_crashed",
            hint="simplify the constraint",
        )
    message = _clean(exc.message) or "xgrammar refused it"
    return ConstraintError(
        f"{field} cannot be compiled: {message}", field=field, code=INVALID_CODES[kind]
    )


_LOCATION = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def _clean(message: str) -> str:
    """xgrammar prefixes messages with a timestamp and its C++ source location."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return _LOCATION.sub("", first)
