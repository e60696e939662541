"""SGLang frontend programs (``@sgl.function``) against ``sgflow engine``: every constrained
output satisfies its constraint. Real engine process, real model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
import sglang as sgl

from tests.conftest import chat

pytestmark = pytest.mark.engine


@dataclass(frozen=True)
class Case:
    name: str
    question: str
    regex: str | None = None
    schema: dict[str, Any] | None = None
    max_tokens: int = 64


S = {"type": "string", "maxLength": 24}  # bounded strings keep a 135M model from rambling

CASES = [
    Case(
        "iso-date",
        "When did the Berlin wall fall? Answer YYYY-MM-DD.",
        regex=r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    ),
    Case("time-24h", "What time is lunch? Answer HH:MM.", regex=r"([01]\d|2[0-3]):[0-5]\d"),
    Case(
        "email",
        "Give an example e-mail address.",
        regex=r"[a-z0-9._]{1,20}@[a-z0-9]{1,15}\.(com|org|net)",
    ),
    Case("colour-enum", "Name a primary colour.", regex=r"(red|green|blue)"),
    Case("us-phone", "Give a phone number.", regex=r"\(\d{3}\) \d{3}-\d{4}"),
    Case("e164-phone", "Give a phone number in E.164 format.", regex=r"\+[1-9]\d{6,14}"),
    Case(
        "uuid",
        "Give a UUID.",
        regex=r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ),
    Case(
        "semver",
        "What is a version number of Python?",
        regex=r"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})",
    ),
    Case("money", "How much does a coffee cost?", regex=r"\$\d{1,4}\.\d{2}"),
    Case(
        "ipv4",
        "Give a private IP address.",
        regex=r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)",
    ),
    Case("yes-no", "Is the sky blue?", regex=r"(Yes|No)"),
    Case("hex-colour", "Give the hex code of a colour.", regex=r"#[0-9a-fA-F]{6}"),
    Case("url", "Give a web address.", regex=r"https://[a-z]{3,12}\.(com|org)/[a-z]{1,10}"),
    Case("sentence-period", "Describe the sea in a few words.", regex=r"[A-Z][a-z ,]{2,60}\."),
    Case(
        "city-object",
        "Where is the Eiffel tower? Answer in JSON.",
        schema={
            "type": "object",
            "properties": {"city": S, "country": S},
            "required": ["city", "country"],
            "additionalProperties": False,
        },
    ),
    Case(
        "person-nested",
        "Describe a fictional person as JSON.",
        max_tokens=160,
        schema={
            "type": "object",
            "required": ["name", "age", "address"],
            "properties": {
                "name": S,
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "address": {
                    "type": "object",
                    "required": ["street", "city"],
                    "properties": {"street": S, "city": S},
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    ),
    Case(
        "bounded-array",
        "List some fruits as a JSON array.",
        max_tokens=96,
        schema={
            "type": "array",
            "items": {"type": "string", "maxLength": 12},
            "minItems": 2,
            "maxItems": 4,
        },
    ),
    Case(
        "enum-field",
        "Classify the sentiment of 'I love it' as JSON.",
        schema={
            "type": "object",
            "required": ["sentiment"],
            "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]}},
            "additionalProperties": False,
        },
    ),
    Case(
        "number-and-bool",
        "Give the price of bread and whether it is in stock, as JSON.",
        schema={
            "type": "object",
            "required": ["price", "in_stock"],
            "properties": {"price": {"type": "number"}, "in_stock": {"type": "boolean"}},
            "additionalProperties": False,
        },
    ),
    Case(
        "line-items",
        "List two invoice line items as JSON.",
        max_tokens=200,
        schema={
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {
                        "type": "object",
                        "required": ["sku", "qty"],
                        "additionalProperties": False,
                        "properties": {
                            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                            "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                        },
                    },
                }
            },
        },
    ),
    Case("boolean", "Is water wet? Answer true or false.", schema={"type": "boolean"}),
    Case(
        "bounded-integer",
        "Pick a number between 1 and 10.",
        schema={"type": "integer", "minimum": 1, "maximum": 10},
    ),
    Case("short-string", "Name a dog.", schema={"type": "string", "minLength": 2, "maxLength": 10}),
    Case(
        "any-of",
        "Give an id, a number or a short code.",
        schema={
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 9999},
                {"type": "string", "maxLength": 8},
            ]
        },
    ),
    Case(
        "nullable",
        "What is the middle name of Madonna? JSON with middle_name or null.",
        schema={
            "type": "object",
            "required": ["middle_name"],
            "additionalProperties": False,
            "properties": {"middle_name": {"type": ["string", "null"], "maxLength": 20}},
        },
    ),
    Case(
        "const-and-date-format",
        "Give today's event as JSON.",
        schema={
            "type": "object",
            "required": ["kind", "date"],
            "additionalProperties": False,
            "properties": {
                "kind": {"const": "event"},
                "date": {"type": "string", "format": "date"},
            },
        },
    ),
]


@sgl.function
def constrained(
    s: Any, question: str, regex: str | None, schema: str | None, max_tokens: int
) -> None:
    s += sgl.system("You are a precise assistant. Answer briefly.")
    s += sgl.user(question)
    s += sgl.assistant(
        sgl.gen("answer", max_tokens=max_tokens, temperature=0, regex=regex, json_schema=schema)
    )


@pytest.fixture(scope="module")
def backend(engine_url: str) -> sgl.RuntimeEndpoint:
    return sgl.RuntimeEndpoint(engine_url, chat_template_name="chatml")


def _check(case: Case, answer: str) -> None:
    if case.regex is not None:
        assert re.fullmatch(case.regex, answer), f"{case.name}: {answer!r} !~ {case.regex}"
    else:
        assert case.schema is not None
        value = json.loads(answer)
        jsonschema.validate(value, case.schema, format_checker=jsonschema.FormatChecker())


def test_at_least_25_distinct_constraints_all_valid(backend: sgl.RuntimeEndpoint) -> None:
    assert len({c.name for c in CASES}) >= 25
    states = constrained.run_batch(
        [
            {
                "question": c.question,
                "regex": c.regex,
                "max_tokens": c.max_tokens,
                "schema": json.dumps(c.schema) if c.schema is not None else None,
            }
            for c in CASES
        ],
        backend=backend,
        num_threads=4,
        progress_bar=False,
    )
    failures = []
    for case, state in zip(CASES, states, strict=True):
        finish = state.get_meta_info("answer")["finish_reason"]
        try:
            assert finish["type"] == "stop", f"{case.name}: finished by {finish}"
            _check(case, state["answer"])
        except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
            failures.append(str(exc)[:300])
    assert not failures, "\n".join(failures)


def test_gen_dtype_int(backend: sgl.RuntimeEndpoint) -> None:
    @sgl.function
    def count(s: Any) -> None:
        s += sgl.user("How many legs does a spider have? Answer with a number.")
        s += sgl.assistant(sgl.gen("n", dtype=int, max_tokens=8))

    state = count.run(backend=backend)
    assert isinstance(int(state["n"]), int)


def test_select_picks_one_of_the_choices(backend: sgl.RuntimeEndpoint) -> None:
    @sgl.function
    def classify(s: Any, text: str) -> None:
        s += sgl.user(f"Is this review positive or negative?\n{text}")
        s += sgl.assistant(sgl.select("label", choices=["positive", "negative"]))

    states = classify.run_batch(
        [
            {"text": "Wonderful, I love it, best purchase ever!"},
            {"text": "Terrible. It broke on day one and support never answered."},
        ],
        backend=backend,
        progress_bar=False,
    )
    assert all(s["label"] in ("positive", "negative") for s in states)


def test_fork_branches_share_the_prefix_and_stay_constrained(
    backend: sgl.RuntimeEndpoint,
) -> None:
    @sgl.function
    def branches(s: Any) -> None:
        s += sgl.system("You answer with one word.")
        s += sgl.user("Name a fruit.")
        forks = s.fork(3)
        for i, f in enumerate(forks):
            f += sgl.assistant(
                sgl.gen("fruit", max_tokens=8, temperature=0.8, regex="(apple|banana|cherry|mango)")
            )
            f += sgl.user(f"Branch {i}: how many letters?")
            f += sgl.assistant(sgl.gen("n", max_tokens=4, regex=r"[0-9]{1,2}"))
        s["fruits"] = [f["fruit"] for f in forks]
        s["counts"] = [f["n"] for f in forks]
        s["cached"] = [f.get_meta_info("fruit")["cached_tokens"] for f in forks]

    state = branches.run(backend=backend)
    assert all(f in ("apple", "banana", "cherry", "mango") for f in state["fruits"])
    assert all(re.fullmatch(r"[0-9]{1,2}", n) for n in state["counts"])
    assert all(c > 0 for c in state["cached"]), state["cached"]


def test_streaming_through_the_frontend_matches_the_final_text(
    backend: sgl.RuntimeEndpoint,
) -> None:
    @sgl.function
    def story(s: Any) -> None:
        s += sgl.user("Say something about cats.")
        s += sgl.assistant(sgl.gen("text", max_tokens=24, temperature=0))

    state = story.run(backend=backend, stream=True)
    pieces = list(state.text_iter("text"))
    assert len(pieces) > 1
    assert "".join(pieces) == state["text"]


EBNF_CASES: list[tuple[str, str, str, Callable[[str], bool]]] = [
    (
        "arithmetic",
        # repetition is bounded: a 135M model happily repeats "*12" until max_new_tokens
        'root ::= expr\nexpr ::= term (("+" | "-") term){0,3}\nterm ::= factor (("*" | "/") factor){0,2}\n'
        'factor ::= num | "(" expr ")"\nnum ::= [1-9] [0-9]{0,2}',
        "Write an arithmetic expression that equals 12.",
        lambda t: re.fullmatch(r"[0-9+\-*/()]+", t) is not None and _balanced(t),
    ),
    (
        "sql-select",
        'root ::= "SELECT " cols " FROM " ident (" WHERE " ident " = " num)? ";"\n'
        'cols ::= "*" | ident (", " ident)*\nident ::= [a-z_]{1,12}\nnum ::= [0-9]{1,4}',
        "Write a SQL query selecting the names of all users.",
        lambda t: (
            re.fullmatch(
                r"SELECT (\*|[a-z_]+(, [a-z_]+)*) FROM [a-z_]+( WHERE [a-z_]+ = [0-9]+)?;", t
            )
            is not None
        ),
    ),
]


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize(("name", "grammar", "question", "valid"), EBNF_CASES)
def test_ebnf_constraints(
    client: httpx.Client, name: str, grammar: str, question: str, valid: Callable[[str], bool]
) -> None:
    # sglang 0.4.10's frontend `gen` has no `ebnf` argument; the wire parameter is SGLang's.
    r = client.post(
        "/generate",
        json={
            "text": chat(question),
            "sampling_params": {"max_new_tokens": 48, "temperature": 0, "ebnf": grammar},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta_info"]["finish_reason"]["type"] == "stop", body
    assert valid(body["text"]), f"{name}: {body['text']!r}"
