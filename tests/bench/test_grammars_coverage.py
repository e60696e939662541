"""Pure helpers of ``sgflow bench grammars`` and ``coverage`` (no engine): sampling, the
data set, metric arithmetic, the check memo, and sgflow's validation on with-tests files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sgflow.bench import coverage, grammars
from sgflow.bench.jsonschemabench import (
    SUBSETS,
    BenchSchema,
    CheckOutcome,
    Worker,
    check_once,
    data_dir,
    evenly_spaced,
    load_manifest,
    measure_check,
    per_subset,
    sample_per_subset,
    with_tests_results,
)
from sgflow.grammars import JsonSchema, check, clear_cache, limits
from sgflow.grammars.compiler import _checks, memo_check


def _has_data() -> bool:
    try:
        data_dir()
    except FileNotFoundError:
        return False
    return True


# skipped only on a machine without the sample; in CI a missing sample fails these tests
needs_data = pytest.mark.skipif(
    not _has_data() and not os.environ.get("CI"), reason="JSONSchemaBench sample not present"
)


def _item(subset: str, file: str) -> BenchSchema:
    return BenchSchema(subset, file, 1, Path(f"/nowhere/{subset}/{file}"))


# -- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (10, 3, [0, 3, 6]),
        (10, 5, [0, 2, 4, 6, 8]),
        (7, 7, list(range(7))),
        (3, 30, [0, 1, 2]),
        (0, 3, []),
    ],
)
def test_evenly_spaced_is_the_data_sets_own_rule(n: int, k: int, expected: list[int]) -> None:
    assert evenly_spaced(list(range(n)), k) == expected


def test_sample_per_subset_is_deterministic_and_in_paper_order() -> None:
    items = [_item(s, f"f{i:02d}.json") for s in ("Snowplow", "Glaiveai2K") for i in range(10)]
    items.reverse()  # input order must not matter
    picked = sample_per_subset(items, 2)
    assert [i.id for i in picked] == [
        "Glaiveai2K/f00.json",
        "Glaiveai2K/f05.json",
        "Snowplow/f00.json",
        "Snowplow/f05.json",
    ]
    assert picked == sample_per_subset(list(reversed(items)), 2)
    assert len(sample_per_subset(items, None)) == 20
    assert list(per_subset(items)) == ["Glaiveai2K", "Snowplow"]


# -- the data set -------------------------------------------------------------------------


@needs_data
def test_manifest_matches_the_data_readme() -> None:
    items = load_manifest()
    counts = {name: len(group) for name, group in per_subset(items).items()}
    assert counts == {
        "Glaiveai2K": 307,
        "Github_trivial": 100,
        "Github_easy": 350,
        "Snowplow": 100,
        "Github_medium": 356,
        "Kubernetes": 192,
        "WashingtonPost": 100,
        "Github_hard": 223,
        "JsonSchemaStore": 100,
        "Github_ultra": 100,
    }
    assert list(counts) == list(SUBSETS)
    assert sum(i.tests_path is not None for i in items) == 1690
    first = items[0]
    assert first.path.exists() and isinstance(first.load(), dict)
    twin = next(i for i in items if i.tests_path is not None)
    tests = twin.load_tests()
    assert tests is not None and {"schema", "tests"} <= set(tests)


@needs_data
def test_quick_grammars_sample_is_30_per_subset() -> None:
    picked = sample_per_subset(load_manifest(), grammars.QUICK_PER_SUBSET)
    assert len(picked) == 300
    assert picked == sample_per_subset(load_manifest(), grammars.QUICK_PER_SUBSET)


# -- metric arithmetic --------------------------------------------------------------------


def test_coverage_row_is_jsonschemabench_arithmetic() -> None:
    row = coverage.coverage_row("Snowplow", n=100, declared=80, generated=40, valid=30)
    assert row["declared_cov"] == pytest.approx(0.8)
    assert row["compliance"] == pytest.approx(0.75)
    assert row["empirical_cov"] == pytest.approx(0.6)  # declared * compliance
    # in a full run every declared schema is generated: empirical = valid / n exactly
    full = coverage.coverage_row("Snowplow", n=100, declared=80, generated=80, valid=60)
    assert full["empirical_cov"] == pytest.approx(60 / 100)
    none = coverage.coverage_row("x", n=0, declared=0, generated=0, valid=0)
    assert none["declared_cov"] is None and none["compliance"] is None
    assert none["empirical_cov"] is None


def test_tally_with_tests_counts_and_lists_mismatches() -> None:
    results: dict[str, list[dict[str, Any]]] = {
        "A/a.json": [
            {"valid": True, "accepted": True, "error": ""},
            {"valid": False, "accepted": False, "error": "/x: bad"},
            {"valid": False, "accepted": True, "error": "", "description": "focus on format"},
        ],
        "B/b.json": [
            {"valid": True, "accepted": False, "error": "/: nope"},
            {"valid": True, "accepted": None, "error": "Unresolvable: http://x"},
        ],
    }
    tally = coverage.tally_with_tests(results)
    assert (tally["valid_total"], tally["valid_accepted"]) == (3, 1)
    assert (tally["invalid_total"], tally["invalid_rejected"]) == (2, 1)
    assert tally["agreement"] == pytest.approx(2 / 5)
    assert [(m["schema"], m["test"], m["why"]) for m in tally["mismatches"]] == [
        ("A/a.json", 2, "invalid format accepted"),
        ("B/b.json", 0, "valid instance rejected"),
        ("B/b.json", 1, "validation raised"),
    ]
    assert coverage.tally_with_tests({})["agreement"] is None


def test_grammars_summary_uses_accepted_constraints_only() -> None:
    outcomes = [
        CheckOutcome("a", "ok", cold_ms=10.0, cached_ms=0.1, build_ms=8.0, rebuild_ms=8.0),
        CheckOutcome("b", "ok", cold_ms=20.0, cached_ms=0.3),
        CheckOutcome("c", "rejected", ["grammar.unsupported"], cold_ms=5.0, cached_ms=5.0),
        CheckOutcome("d", "timeout", ["grammar.compile_timeout"]),
    ]
    row = grammars.summarize("s", outcomes)
    assert (row["n"], row["declared"], row["rejected"], row["timeouts"]) == (4, 2, 1, 1)
    assert row["cold_p50_ms"] == pytest.approx(15.0)
    assert row["cached_max_ms"] == pytest.approx(0.3)
    assert row["rebuild_vs_first"] == pytest.approx(1.0)


def test_prompt_schema_text_is_compact_and_capped() -> None:
    assert coverage.prompt_schema_text({"type": "object", "é": 1}) == '{"type":"object","é":1}'
    long = coverage.prompt_schema_text({"description": "x" * 100}, limit=20)
    assert long.startswith('{"description":"xxxx') and long.endswith("…(truncated)")


def test_the_bench_program_checks_and_compiles() -> None:
    ir = coverage._program()
    assert ir.max_attempts == coverage.MAX_ATTEMPTS and ir.on_invalid == "repair"


# -- checking (in process, and the child's kill path) ---------------------------------------


def test_measure_check_cold_then_cached() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    out = measure_check("json_schema", schema, True)
    assert out["status"] == "ok" and out["codes"] == []
    assert out["cold_ms"] > 0 and out["cached_ms"] >= 0 and out["rebuild_ms"] > 0
    bad = measure_check("json_schema", {"$ref": "https://example.com/s.json"}, True)
    assert bad["status"] == "rejected" and bad["codes"]
    assert check_once("named", "iso-date")["status"] == "ok"


def test_memo_check_remembers_results_but_not_timeouts() -> None:
    clear_cache()
    spec = JsonSchema({"type": "string", "maxLength": 3})
    calls = []

    def compute() -> Any:
        calls.append(1)
        return [], None

    assert memo_check(spec, "settings", compute) == ([], None)
    assert memo_check(spec, "settings", compute) == ([], None)
    assert len(calls) == 1
    memo_check(spec, "other settings", compute)
    assert len(calls) == 2
    from sgflow.grammars.errors import GrammarError

    timeout = GrammarError("grammar.compile_timeout", "", "late")
    late = JsonSchema({"type": "string", "maxLength": 4})
    for _ in range(2):
        memo_check(late, "settings", lambda: ([timeout], None))
    assert _checks.info().size == 2  # the timeout was not remembered
    clear_cache()
    assert _checks.info().size == 0


def test_check_answers_the_same_twice() -> None:
    with limits(max_enum_size=2):
        spec = JsonSchema({"enum": ["a", "b", "c"]})
        first, second = check(spec), check(spec)
    assert [e.code for e in first] == [e.code for e in second] == ["limit.enum_size"]


def test_worker_past_its_deadline_is_killed() -> None:
    with Worker(deadline_s=0.01) as worker:  # a spawn alone takes longer than that
        assert worker.call("check_once", "named", "iso-date") == ("timeout", None)
        assert worker.kills == 1


# -- with-tests through sgflow's validation path ---------------------------------------------


@needs_data
def test_with_tests_agree_on_a_function_call_schema() -> None:
    path = data_dir() / "with-tests" / "Glaiveai2K" / "calculate_area_b5aac8b4.json"
    rows = with_tests_results(str(path))
    assert rows and all(r["accepted"] == r["valid"] for r in rows)
    assert any(not r["valid"] for r in rows)


@needs_data
def test_with_tests_draft04_date_format_is_checked() -> None:
    """o44373 declares draft-04, which defines no `date` format; sgflow checks every format
    it knows whatever the draft (the grammar enforces them too), so 2022-01-32 is rejected
    as MaskBench (Draft 2020-12 semantics) expects."""
    path = data_dir() / "with-tests" / "Github_easy" / "o44373.json"
    rows = with_tests_results(str(path))
    assert rows and all(r["accepted"] == r["valid"] for r in rows)
    assert any(not r["valid"] and "format" in str(r["description"]) for r in rows)
