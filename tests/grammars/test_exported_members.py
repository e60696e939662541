"""The public surface of sgflow.grammars is pinned: a change here is an API change."""

from __future__ import annotations

import sgflow.grammars

EXPECTED = {
    "CODES",
    "CacheInfo",
    "Choices",
    "Ebnf",
    "GrammarError",
    "GrammarInfo",
    "JsonSchema",
    "KeywordReport",
    "Limits",
    "MatchResult",
    "Named",
    "Regex",
    "Spec",
    "cache_info",
    "check",
    "clear_cache",
    "compile_checked",
    "explain",
    "format_report",
    "get_grammar",
    "get_limits",
    "limits",
    "list_grammars",
    "match",
    "resolve",
    "resolve_ref",
    "set_limits",
}


def test_all_is_pinned() -> None:
    assert set(sgflow.grammars.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in sgflow.grammars.__all__:
        assert hasattr(sgflow.grammars, name), name


def test_the_package_is_pure() -> None:
    """No module of the package imports an I/O layer (DESIGN: grammars/ is a pure core)."""
    import ast
    from pathlib import Path

    forbidden = {"fastapi", "celery", "redis", "httpx", "uvicorn", "sglang", "sgflow.programs"}
    for path in Path(sgflow.grammars.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in forbidden), (
                    f"{path.name} imports {name}"
                )
