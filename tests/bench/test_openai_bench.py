"""``sgflow bench openai``'s pure parts, with no engine: both ways ask for the same extraction
(the same schema, the same prompt as the ``extract`` program) and the report's ratios are
those of the measured latencies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sgflow.bench._common import (
    PERSON_SCHEMA,
    capture_prompts,
    extract_ir,
    extraction_inputs,
    person,
)
from sgflow.bench.openai import Person, messages, summarize
from sgflow.bench.report import Report


def _without_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_titles(v) for k, v in schema.items() if k != "title"}
    return schema


def test_the_pydantic_model_is_the_extract_schema() -> None:
    assert _without_titles(Person.model_json_schema()) == PERSON_SCHEMA


def test_the_messages_are_the_extract_programs_prompt() -> None:
    inputs = extraction_inputs(1, filler=3)[0]
    (body,) = capture_prompts(extract_ir(), inputs, json.dumps(person(0)))
    system, user = (m["content"] for m in messages(inputs["text"]))
    prompt = body["text"]
    assert f"system\n{system}<|im_end|>" in prompt
    assert f"user\n{user}<|im_end|>" in prompt
    assert prompt.index(system) < prompt.index(user)


def _row(extract_s: float, openai_s: float, *, same: bool = True, tokens: int = 30) -> Any:
    obj = {"name": "Maria Lopez"}
    return {
        "extract": {"seconds": extract_s, "object": obj, "prompt_tokens": 100,
                    "completion_tokens": 30},
        "openai": {"seconds": openai_s, "object": obj if same else {"name": "Mario"},
                   "prompt_tokens": 100, "completion_tokens": tokens},
    }  # fmt: skip


def test_summary_ratios_are_those_of_the_latencies() -> None:
    rows = [_row(1.0, 1.1), _row(2.0, 2.0), _row(3.0, 3.6), _row(4.0, 4.4), _row(10.0, 9.0)]
    report = summarize(rows, Report("openai"))
    # medians 3.0 and 3.6; p95 (nearest rank of 5) 10.0 and 9.0
    assert report.ratios["openai_over_extract_median"] == pytest.approx(1.2)
    assert report.ratios["openai_over_extract_p95"] == pytest.approx(0.9)
    # per-input ratios 1.1, 1.0, 1.2, 1.1, 0.9
    assert report.ratios["openai_over_extract_per_input_median"] == pytest.approx(1.1)
    verdicts = {r["metric"]: r["met"] for r in report.results()}
    assert verdicts["openai_over_extract_median"] is False
    table = report.tables["per way (seconds; tokens summed over the inputs)"]
    assert [(t["way"], t["n"], t["median_s"]) for t in table] == [
        ("extract", 5, 3.0),
        ("openai", 5, 3.6),
    ]
    assert table[0]["completion_tokens"] == 150 and report.notes == []


def test_summary_notes_when_the_two_ways_differ() -> None:
    report = summarize([_row(1.0, 1.0), _row(1.0, 1.0, same=False, tokens=31)], Report("openai"))
    assert report.ratios["openai_over_extract_median"] == pytest.approx(1.0)
    assert any("completion tokens differ" in n for n in report.notes)
    assert any("agreed on 1/2 objects" in n for n in report.notes)
