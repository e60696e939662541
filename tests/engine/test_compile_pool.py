"""Grammar compilation in killable child processes (``sgflow.engine.compile_pool``), against
the real model's vocabulary: slow grammars are killed and remembered, ordinary ones keep
compiling beside them, a dead compiler is replaced."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import xgrammar as xgr

from sgflow.bench.jsonschemabench import data_dir
from sgflow.engine.compile_pool import CompileFailed, CompilePool
from sgflow.engine.constraints import GrammarBackend
from sgflow.engine.errors import ConstraintError
from sgflow.engine.protocol import ConstraintSpec
from sgflow.engine.vocabulary import tokenizer_info

# Passes every static check, then takes minutes against a 49k-token vocabulary
SNOWPLOW = data_dir() / "schemas" / "Snowplow" / "sp_0_Normalized.json"


def slow_schema(variant: int) -> str:
    """A schema whose compilation takes far longer than the test's budgets; ``variant``
    makes each one a distinct constraint (a different cache key)."""
    schema = json.loads(SNOWPLOW.read_text())
    schema["description"] = f"variant {variant}"
    return json.dumps(schema)


@pytest.fixture(scope="module")
def tokenizer() -> xgr.TokenizerInfo:
    return tokenizer_info()


@pytest.fixture
def pool(tokenizer: xgr.TokenizerInfo) -> Iterator[CompilePool]:
    compile_pool = CompilePool(tokenizer, timeout_s=3.0, fast_budget_s=0.5)
    yield compile_pool
    compile_pool.close()


def test_a_grammar_compiles_and_is_kept(pool: CompilePool) -> None:
    first = pool.compile("regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
    assert isinstance(first, xgr.CompiledGrammar)
    assert xgr.GrammarMatcher(first).accept_string("2026-11-30")
    assert not xgr.GrammarMatcher(first).accept_string("2026-1x")
    assert pool.compile("regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}") is first
    assert pool.stats()["compiles"] == 1


def test_an_invalid_grammar_is_refused_and_remembered(pool: CompilePool) -> None:
    with pytest.raises(CompileFailed) as info:
        pool.compile("ebnf", "root ::= undefined_rule")
    assert info.value.reason == "invalid" and "undefined_rule" in info.value.message
    with pytest.raises(CompileFailed):
        pool.compile("ebnf", "root ::= undefined_rule")
    assert pool.stats()["compiles"] == 1  # the second answer came from memory


def test_a_slow_grammar_is_killed_and_its_timeout_remembered(pool: CompilePool) -> None:
    with pytest.raises(CompileFailed) as info:
        pool.compile("json_schema", slow_schema(0))
    assert info.value.reason == "timeout"
    stats = pool.stats()
    assert stats["killed"] == 2  # its fast-lane child, then its slow-lane child
    assert stats["slow"] == 1
    with pytest.raises(CompileFailed) as again:
        pool.compile("json_schema", slow_schema(0))
    assert again.value.reason == "timeout"
    assert pool.stats()["compiles"] == stats["compiles"]  # not compiled a second time
    assert all(c.process.is_alive() for c in pool._fast.children + pool._slow.children)
    assert pool.compile("regex", "(yes|no)") is not None  # the replacements work


def test_ordinary_grammars_compile_while_ten_slow_ones_are_compiling(pool: CompilePool) -> None:
    """Ten slow grammars at once: each holds a fast-lane compiler for at most its budget and
    then queues in the slow lane, so ordinary grammars sent meanwhile are all compiled, and
    before the slow ones are done."""
    slow_outcomes: list[str] = []
    slow_done = threading.Event()
    lock = threading.Lock()

    def submit_slow(variant: int) -> None:
        try:
            pool.compile("json_schema", slow_schema(variant))
            outcome = "ok"
        except CompileFailed as exc:
            outcome = exc.reason
        with lock:
            slow_outcomes.append(outcome)
            if len(slow_outcomes) == 10:
                slow_done.set()

    threads = [threading.Thread(target=submit_slow, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    simple = [
        ("regex", f"(yes|no|maybe{i})") for i in range(6)
    ] + [("json_schema", json.dumps({"type": "object", "properties": {f"k{i}": {"type": "integer"}}})) for i in range(6)]  # fmt: skip
    compiled = [pool.compile(kind, source) for kind, source in simple]  # type: ignore[arg-type]
    assert all(isinstance(c, xgr.CompiledGrammar) for c in compiled)
    assert not slow_done.is_set(), slow_outcomes  # the ordinary ones did not wait for them
    for thread in threads:
        thread.join()
    assert len(slow_outcomes) == 10 and "ok" not in slow_outcomes
    assert set(slow_outcomes) <= {"timeout", "busy"}


def test_a_compiler_that_dies_is_replaced(pool: CompilePool) -> None:
    assert pool.compile("regex", "a+") is not None  # both lanes' children are up and ready
    for child in pool._fast.children:
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(5)
    compiled = pool.compile("regex", "b+")  # the dead child is found out; the slow lane retries
    assert isinstance(compiled, xgr.CompiledGrammar)
    assert pool.stats()["killed"] >= 1
    assert pool.compile("regex", "c+") is not None


def test_the_engine_answers_a_slow_grammar_with_its_code(tokenizer: xgr.TokenizerInfo) -> None:
    backend = GrammarBackend(
        tokenizer.decoded_vocab, stop_ids=list(tokenizer.stop_token_ids), compile_timeout_s=2.0
    )
    try:
        with pytest.raises(ConstraintError) as info:
            backend.compile(ConstraintSpec(kind="json_schema", source=slow_schema(99)))
        assert info.value.code == "grammar.compile_timeout"
        assert info.value.status == 422
        assert info.value.field == "/sampling_params/json_schema"
        simple = backend.compile(ConstraintSpec(kind="regex", source="[a-z]+"))
        assert isinstance(simple, xgr.CompiledGrammar)
    finally:
        backend.close()


def test_sgflow_check_finds_a_schema_that_only_the_vocabulary_compile_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sgflow.cli import main
    from sgflow.grammars import get_limits, set_limits

    before = get_limits()  # `sgflow check` installs its settings' limits process-wide
    (tmp_path / "slow.schema.json").write_text(slow_schema(7))
    program = tmp_path / "slow.yaml"
    program.write_text(
        "program: slow\nversion: 1\nsteps:\n"
        "  - id: ask\n    user: Describe the event.\n"
        "  - id: event\n    user: As JSON.\n"
        '    gen: {json_schema: {$ref: "slow.schema.json"}, max_tokens: 100}\n'
    )
    monkeypatch.setenv("SGFLOW_COMPILE_TIMEOUT_S", "2")
    try:
        assert main(["check", "--no-compile", str(program)]) == 0  # every static check passes
        capsys.readouterr()
        assert main(["check", "--json", str(program)]) == 1
    finally:
        set_limits(**vars(before))
    [entry] = json.loads(capsys.readouterr().out)
    [error] = entry["errors"]
    assert (error["code"], error["field"]) == ("grammar.compile_timeout", "/steps/1/gen")
    assert "within 2s" in error["message"]
