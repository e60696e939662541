"""The pure parts of the adapters: EBNF → GBNF, constraint lowering, plans, wire details.

The GBNF translation is checked by two real parsers: llama.cpp's own grammar parser (as
llama-cpp-python ships it) must accept every translated grammar, and xgrammar must accept
exactly the same strings with the original and the translated grammar.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from xgrammar.testing import _is_grammar_accept_string as accepts

from sgflow.adapters import ADAPTERS, adapter_for
from sgflow.adapters.base import Completion, Generation, StreamState
from sgflow.adapters.detect import split_url
from sgflow.adapters.emulation import Unsupported, choice_constraint, lower, unwrap
from sgflow.adapters.gbnf import Untranslatable, to_gbnf
from sgflow.adapters.plan import explain_schema, plan_program, require
from sgflow.execution.http_backend import _finished
from sgflow.programs import compile_program, load_program
from sgflow.programs.errors import RunError

LIBRARY = Path(__file__).resolve().parents[2] / "sgflow" / "grammars" / "library"
PROGRAMS = Path(__file__).resolve().parents[2] / "sgflow" / "programs" / "library"

SNAKE = r"""
# xgrammar lets a rule run over several lines and names contain underscores
root ::= select_stmt
select_stmt ::= "SELECT " col_list
    | "SELECT * FROM " name
col_list ::= name (", " name){0,3} " FROM " name
name ::= [a-z_] [a-z0-9_]*
"""


def llama_parses(gbnf: str) -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    LlamaGrammar.from_string(gbnf, verbose=False)  # raises on a grammar it cannot parse


@pytest.mark.parametrize(
    ("grammar", "samples"),
    [
        (
            (LIBRARY / "sql-select.ebnf").read_text(),
            [
                "SELECT name FROM users;",
                "SELECT * FROM t LIMIT 5;",
                "select x;",
                "SELECT FROM;",
                "",
            ],
        ),
        (
            (LIBRARY / "arithmetic.ebnf").read_text(),
            ["1+2", "(3*4)-5", "1++2", "((1)", "42"],
        ),
        (
            SNAKE,
            ["SELECT a FROM b", "SELECT a, b_c FROM d", "SELECT * FROM x_1", "SELECT A FROM b"],
        ),
    ],
)
def test_translated_grammars_parse_in_llama_cpp_and_accept_the_same_strings(
    grammar: str, samples: list[str]
) -> None:
    gbnf = to_gbnf(grammar)
    llama_parses(gbnf)
    assert all(line.count("::=") == 1 for line in gbnf.splitlines())  # one rule per line
    for text in samples:
        assert accepts(grammar, text) == accepts(gbnf, text), text
    assert any(accepts(gbnf, s) for s in samples) and not all(accepts(gbnf, s) for s in samples)


def test_rule_names_become_gbnf_names() -> None:
    gbnf = to_gbnf(SNAKE)
    assert "select-stmt ::=" in gbnf and "col-list" in gbnf and "_" not in gbnf.split("[")[0]


@pytest.mark.parametrize(
    ("grammar", "construct"),
    [
        ('root ::= "a" (= "b")', "lookahead"),
        ('root ::= a_b | a-b\na_b ::= "x"\na-b ::= "y"', "rule-name"),
        ('start ::= "a"', "root"),
        ('root ::= "a" ; "b"', "syntax"),
        ('root ::= "\\q"', "escape"),
    ],
)
def test_what_gbnf_cannot_say_is_refused_not_approximated(grammar: str, construct: str) -> None:
    with pytest.raises(Untranslatable) as caught:
        to_gbnf(grammar)
    assert caught.value.construct == construct


def test_a_regex_without_a_regex_field_becomes_an_anchored_string_schema() -> None:
    lowered = lower("regex", r"\d{4}-\d{2}", adapter_for("mlc").capabilities)
    assert lowered.wrapped and lowered.constraint == "json_schema"
    assert json.loads(lowered.source or "") == {"type": "string", "pattern": r"^(?:\d{4}-\d{2})$"}
    on_ollama = lower("regex", r"\d{4}-\d{2}", adapter_for("ollama").capabilities)
    assert json.loads(on_ollama.source or "")["pattern"] == "^(?:[0-9]{4}-[0-9]{2})$"
    assert unwrap('"2026-11"') == "2026-11"
    assert unwrap('"2026-1') == '"2026-1'  # cut off: left as it is, validation then refuses it


def test_native_constraints_are_sent_unchanged_and_refusals_name_the_engine() -> None:
    vllm = adapter_for("vllm").capabilities
    assert lower("regex", "a|b", vllm).source == "a|b"
    with pytest.raises(Unsupported) as caught:
        lower("ebnf", 'root ::= "a"', adapter_for("mlc").capabilities)
    assert caught.value.engine == "mlc" and caught.value.feature == "ebnf"
    with pytest.raises(Unsupported):  # TGI's grammar needs top-level properties
        lower("json_schema", json.dumps({"type": "array"}), adapter_for("tgi").capabilities)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_every_engine_can_be_constrained_to_the_choices(kind: str) -> None:
    caps = adapter_for(kind).capabilities
    choices = ["a.b", "(c)", 'say "hi"']
    lowered = choice_constraint(choices, caps)
    if lowered.constraint == "regex":
        import re

        assert all(re.fullmatch(lowered.source or "", c) for c in choices)
        assert not re.fullmatch(lowered.source or "", "axb")
    elif lowered.constraint == "ebnf":
        llama_parses(lowered.source or "")
        assert all(accepts(lowered.source or "", c) for c in choices)
    else:
        assert lowered.wrapped and json.loads(lowered.source or "")["enum"] == choices


def ir_of(name: str):  # type: ignore[no-untyped-def]
    return compile_program(load_program(str(PROGRAMS / name)), base_dir=str(PROGRAMS))


def test_plans_cover_every_constrained_or_selecting_step() -> None:
    plans = plan_program(ir_of("ticket-triage.yaml"), adapter_for("llamacpp").capabilities)
    assert [(p.step, p.feature, p.support) for p in plans] == [
        ("category", "select", "emulated"),
        ("urgency", "select", "emulated"),
        ("team", "regex", "emulated"),
        ("reply", "json_schema", "native"),
    ]
    assert plans[2].pointer == "/steps/2/gen"


def test_a_refused_step_ends_the_run_before_it_starts_naming_step_feature_and_engine() -> None:
    ir = ir_of("sql-generate.yaml")
    require(ir, adapter_for("llamacpp").capabilities)  # translated to GBNF: runs
    with pytest.raises(RunError) as caught:
        require(ir, adapter_for("ollama").capabilities)
    body = caught.value.to_dict()
    assert body["code"] == "engine.unsupported" and body["step"] == "sql"
    assert "Ollama" in body["message"] and "ebnf" in body["message"]


def test_keywords_a_converter_ignores_are_reported_as_validated_on_that_engine() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}}
    schema["properties"]["s"] = {"type": "string", "minLength": 2}
    on = {k: {(r["keyword"], r["status"]) for r in explain_schema(schema, adapter_for(k).capabilities)} for k in ("sglang", "llamacpp")}  # fmt: skip
    assert ("minLength", "enforced") in on["llamacpp"]
    assert ("multipleOf", "validated") in on["llamacpp"]
    assert on["sglang"] >= {("minLength", "enforced")}


def test_urls_may_name_their_engine_kind() -> None:
    assert split_url("vllm+http://h:8000/") == ("vllm", "http://h:8000")
    assert split_url("http://h:8000") == (None, "http://h:8000")
    with pytest.raises(ValueError, match="unknown engine kind"):
        split_url("vlm+http://h:8000")


def test_an_engine_that_gives_up_is_never_a_success_and_stops_are_applied() -> None:
    with pytest.raises(RuntimeError, match="without finishing"):
        _finished(Completion('{"a": 1', "abort"), ())
    done = _finished(Completion("yes\n\nmore", "stop"), ("\n\n",))
    assert (done.text, done.finish, done.matched) == ("yes", "stop", "\n\n")
    for kind in ("vllm", "trtllm", "mlc"):
        state = StreamState()
        adapter_for(kind).chunk({"choices": [{"text": "x", "finish_reason": "cancelled"}]}, state)
        assert state.done and state.completion().finish == "abort"


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_every_adapter_builds_its_engines_body_for_each_constraint_it_has(kind: str) -> None:
    adapter = adapter_for(kind)
    caps = adapter.capabilities
    for feature, source in (("json_schema", '{"type": "object", "properties": {}}'), ("regex", "a+"), ("ebnf", 'root ::= "a"')):  # fmt: skip
        try:
            lowered = lower(feature, source, caps)
        except Unsupported:
            assert caps.enforcement(feature).support != "native"
            continue
        gen = Generation("hi", 4, constraint=lowered.constraint, source=lowered.source)
        body = json.dumps(adapter.body(gen, "m"))
        assert "hi" in body and (lowered.source or "")[:4].strip('"') in body.replace("\\", "")


@pytest.mark.parametrize(
    ("regex", "samples"),
    [
        (r"\d{4}-\d{2}", ["2026-11", "202-11", "abcd-11"]),
        (r"^[\w.+-]+@[\w-]+\.[a-z]{2,}$", ["a.b@c-d.io", "a@b", "a b@c.io"]),
        (r"[^\s]+ (?:x|y)\/z", ["ab x/z", "a b x/z", "ab w/z"]),
    ],
)
def test_regexes_are_rewritten_for_llama_cpp_with_the_same_language(
    regex: str, samples: list[str]
) -> None:
    import re

    from sgflow.adapters.emulation import llama_pattern

    rewritten = llama_pattern(regex)
    assert "\\d" not in rewritten and "\\w" not in rewritten and "\\s" not in rewritten
    plain = regex.removeprefix("^").removesuffix("$")
    for text in samples:
        assert bool(re.fullmatch(plain, text)) == bool(re.fullmatch(rewritten, text)), text


@pytest.mark.parametrize("regex", [r"(?=a)a", r"\bword", r"a^b", r"(?P<n>a)", r"[\D]", r"(a)\1"])
def test_what_llama_cpp_would_accept_anything_for_is_refused_on_llama_cpp_and_ollama(
    regex: str,
) -> None:
    for kind in ("llamacpp", "ollama"):
        with pytest.raises(Unsupported, match="accept anything"):
            lower("regex", regex, adapter_for(kind).capabilities)
    lower("regex", regex, adapter_for("mlc").capabilities)  # xgrammar reads it
