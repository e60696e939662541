"""``sgflow bench peers``'s pure parts: scoring, failure classification, converter gaps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sgflow.bench import peers
from sgflow.bench.peers import Outcome

GOOD_EVENT: dict[str, Any] = {
    "title": "PyCon Lisbon 2025",
    "date": "2025-06-12",
    "start_time": "09:30",
    "duration_minutes": 480,
    "mode": "in-person",
    "venue": {"name": "Centro Cultural de Belem", "city": "Lisbon", "country_code": "PT"},
    "organizer": {"name": "Ana Costa", "email": "ana.costa@pycon.pt"},
    "tags": ["python", "community"],
    "capacity": 1200,
}


def event(**changes: Any) -> str:
    return json.dumps({**GOOD_EVENT, **changes})


def keywords(failures: list[dict[str, Any]]) -> set[str]:
    return {f["keyword"] for f in failures}


def test_a_valid_output_scores_valid() -> None:
    assert peers.score(event(), peers.EVENT, "stop") == (True, [])


@pytest.mark.parametrize(
    ("changes", "keyword", "pointer"),
    [
        ({"duration_minutes": 5}, "minimum", "/duration_minutes"),
        ({"capacity": 9000}, "maximum", "/capacity"),
        ({"tags": ["books", "books"]}, "uniqueItems", "/tags"),
        ({"date": "2025-02-30"}, "format:date", "/date"),  # the grammars let it through
        ({"start_time": "9:30"}, "pattern", "/start_time"),
        ({"mode": "remote"}, "enum", "/mode"),
        ({"tags": []}, "minItems", "/tags"),
    ],
)
def test_a_violation_is_named_by_keyword_and_pointer(
    changes: dict[str, Any], keyword: str, pointer: str
) -> None:
    valid, failures = peers.score(event(**changes), peers.EVENT, "stop")
    assert not valid
    assert {"keyword": keyword, "pointer": pointer} in [
        {k: f[k] for k in ("keyword", "pointer")} for f in failures
    ]


def test_a_nested_violation_has_the_nested_pointer() -> None:
    valid, failures = peers.score(
        event(organizer={"name": "A", "email": "no-at-sign"}), peers.EVENT, "stop"
    )
    assert not valid
    assert [(f["keyword"], f["pointer"]) for f in failures] == [("pattern", "/organizer/email")]


def test_unparseable_output_is_truncated_or_not_json_by_finish_reason() -> None:
    cut = event()[:40]
    assert keywords(peers.score(cut, peers.EVENT, "length")[1]) == {"truncated"}
    assert keywords(peers.score(cut, peers.EVENT, "stop")[1]) == {"not_json"}


def test_score_agrees_with_the_executors_validation() -> None:
    from sgflow.grammars.validation import validation_errors

    for changes in ({}, {"capacity": None}, {"capacity": 0}, {"tags": ["a"] * 5}):
        text = event(**changes)
        valid, _ = peers.score(text, peers.EVENT, "stop")
        assert valid == (not validation_errors(json.loads(text), peers.EVENT))


def test_drops_compares_the_converter_output_with_and_without_the_keyword() -> None:
    def ignores_minimum(schema: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in schema.items() if k != "minimum"}, sort_keys=True)

    sub = {"type": "integer", "minimum": 1, "maximum": 9}
    assert peers.drops(ignores_minimum, sub, "minimum") is True
    assert peers.drops(ignores_minimum, sub, "maximum") is False
    assert peers.drops(ignores_minimum, sub, "pattern") is None  # not in the subschema

    def broken(schema: dict[str, Any]) -> str:
        raise ValueError("unsupported")

    assert peers.drops(broken, sub, "minimum") is None


def test_dropped_keywords_walks_nested_properties_and_items() -> None:
    def ignores_unique_and_format(schema: dict[str, Any]) -> str:
        kept = {k: v for k, v in schema.items() if k not in ("uniqueItems", "format")}
        return json.dumps(kept, sort_keys=True)

    dropped = peers.dropped_keywords(ignores_unique_and_format, peers.EVENT)
    assert dropped == {"uniqueItems": ["/tags"], "format:date": ["/date"]}
    inv = peers.dropped_keywords(ignores_unique_and_format, peers.INVOICE)
    assert inv == {"format:date": ["/issue_date", "/due_date"]}


def outcome(valid: bool, keyword: str = "", pointer: str = "", **kw: Any) -> Outcome:
    failures = [] if valid else [{"keyword": keyword, "pointer": pointer, "message": ""}]
    return Outcome(doc=0, schema="event", valid=valid, failures=failures, **kw)


def test_summarize_is_tokens_over_summed_wall_time() -> None:
    summary = peers.summarize(
        [
            outcome(True, completion_tokens=100, seconds=1.0),
            outcome(False, "minimum", "/x", completion_tokens=300, seconds=3.0),
        ]
    )
    assert summary["validity"] == 0.5
    assert summary["tokens_per_s"] == 100.0
    assert summary["valid_per_min"] == 15.0


def test_explain_failures_says_whether_the_converter_drops_the_keyword() -> None:
    outs = [
        outcome(True, completion_tokens=1, seconds=1),
        outcome(False, "minimum", "/duration_minutes", completion_tokens=1, seconds=1),
        outcome(False, "truncated", "", completion_tokens=512, seconds=5),
        outcome(False, "pattern", "/start_time", completion_tokens=1, seconds=1),
    ]
    line = peers.explain_failures("llama", outs, {"minimum": ["/duration_minutes"]}, 512)
    assert line is not None
    assert line.startswith("llama: 3/4 invalid")
    assert "minimum x1 at /duration_minutes (its grammar converter drops this keyword)" in line
    assert "truncated x1 (ran to max_tokens=512" in line
    assert "pattern x1 at /start_time (enforced by its grammar, yet violated)" in line
    assert peers.explain_failures("llama", outs[:1], {}, 512) is None
    sgflow = peers.explain_failures(
        "sgflow", [outcome(False, "output.truncated", completion_tokens=1536, seconds=20)], {}, 512
    )
    assert sgflow is not None
    assert "output.truncated x1 (ran to max_tokens=512" in sgflow


def test_build_report_ratios_and_missing_outlines() -> None:
    results = {
        peers.SGFLOW: [outcome(True, completion_tokens=200, seconds=1.0, attempts=2)],
        peers.LLAMA: [outcome(False, "uniqueItems", "/tags", completion_tokens=100, seconds=1.0)],
    }
    raw: dict[str, Any] = {"setup_s": {}}
    report = peers.build_report(results, raw, 512, outlines_missing="ImportError: numba")
    assert report.ratios["sgflow_validity"] == 1.0
    assert report.ratios["llama_cpp_validity"] == 0.0
    assert report.ratios["outlines_validity"] is None
    assert report.ratios["tps_vs_llama_cpp"] == 2.0
    assert report.ratios["tps_vs_outlines"] is None
    assert report.targets["sgflow_validity"].met(1.0)
    assert any(n.startswith("outlines unavailable: ImportError: numba") for n in report.notes)
    assert any("uniqueItems x1 at /tags" in n for n in report.notes)


def test_documents_cover_both_schemas_in_quick_mode() -> None:
    quick = {name for name, _ in peers.DOCUMENTS[: peers.QUICK_DOCS]}
    assert quick == set(peers.SCHEMAS)
    assert len(peers.DOCUMENTS) == 10


def test_the_schemas_are_accepted_by_sgflow() -> None:
    from sgflow.grammars import check
    from sgflow.grammars.spec import JsonSchema

    for schema in peers.SCHEMAS.values():
        assert check(JsonSchema(schema)) == []
