"""Constraints for structured generation: specs, checks, the named library, the report.

A pure library (no HTTP, Celery or Redis). The pieces:

- :mod:`~sgflow.grammars.spec`: :class:`Regex`, :class:`JsonSchema`, :class:`Ebnf`,
  :class:`Choices`, :class:`Named` — what a generation must match, and the SGLang
  ``sampling_params`` that enforce it;
- :func:`check` / :func:`compile_checked`: validate a spec with xgrammar (the compiler the
  engine uses) under the :class:`Limits`, without a tokenizer;
- :func:`explain`: which JSON Schema keywords the grammar enforces while decoding, which
  only ``jsonschema`` validation catches, and which are refused;
- the library: :func:`list_grammars`, :func:`get_grammar`, :func:`resolve_ref`;
- :mod:`~sgflow.grammars.safe_regex` and :mod:`~sgflow.grammars.validation`: every user
  regex evaluated in Python runs on RE2 (linear time), and values are validated against
  user schemas with it (``validation_errors``).

Every refusal is a :class:`GrammarError` with a stable ``code``, a JSON ``pointer`` and a
``hint``.
"""

from sgflow.grammars.check import check, compile_checked, resolve
from sgflow.grammars.compiler import CacheInfo, MatchResult, cache_info, clear_cache, match
from sgflow.grammars.enforcement import KeywordReport, explain, format_report
from sgflow.grammars.errors import CODES, GrammarError
from sgflow.grammars.library import GrammarInfo, get_grammar, list_grammars, resolve_ref
from sgflow.grammars.limits import Limits, get_limits, limits, set_limits
from sgflow.grammars.spec import Choices, Ebnf, JsonSchema, Named, Regex, Spec

__all__ = [
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
]
