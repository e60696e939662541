"""Validating values against a user's JSON Schema, with every regex on RE2.

The ``jsonschema`` library evaluates regexes with Python's backtracking ``re`` in five
places: ``pattern``, ``patternProperties``, the pattern part of ``additionalProperties`` and
of ``unevaluatedProperties``, and ``format: regex`` (checking that a value *is* a regex).
One hostile pattern there freezes the process. :func:`validator_for` returns the schema's
draft validator (2020-12 when ``$schema`` says nothing) with those five replaced by
:mod:`~sgflow.grammars.safe_regex` (RE2, linear time), and with two more guards:

- a subschema that declares another ``$schema`` keeps the RE2 keywords (``jsonschema``
  would otherwise switch to its stock validator for that dialect);
- ``$ref`` never leaves the schema: the stock validator fetches ``http(s)://`` and
  ``file://`` refs with ``urllib``; here they are unresolvable, and reported as such;
- ``format: iri`` / ``iri-reference`` are checked in linear time: the stock checker
  (``rfc3987_syntax``, an Earley parser) takes 2 s on an 800-character IRI. An IRI is a URI
  once its non-ASCII characters are percent-encoded (RFC 3987, 3.1), so that URI is checked
  with the same ``rfc3986_validator`` as ``format: uri``.

Every value sgflow validates goes through :func:`validation_errors`: run inputs (API, batch
lines, the executor), step outputs, final outputs and ``/v1/extract`` example outputs.
Every ``format`` the installed ``jsonschema`` knows is checked, whatever the draft.
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import attrs
import jsonschema
import referencing
import referencing.exceptions
from jsonschema.exceptions import ValidationError

from sgflow.grammars import safe_regex
from sgflow.grammars.errors import escape_pointer
from sgflow.grammars.safe_regex import RegexRefused

__all__ = ["FORMATS", "is_valid", "meta_validator", "validation_errors", "validator_for"]

_MESSAGE_CHARS = 300  # a value's repr can be a whole document; messages stay short


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _iri_checker(rule: str) -> Callable[[object], bool] | None:
    try:
        from rfc3986_validator import validate_rfc3986  # jsonschema[format-nongpl]
    except ImportError:
        return None

    def is_iri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            uri = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), value)
        except UnicodeEncodeError:  # a lone surrogate is no character
            return False
        return validate_rfc3986(uri, rule=rule) is not None

    return is_iri


def _format_checker(*, regex: bool) -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()  # every format jsonschema knows, any draft
    if regex:
        checker.checks("regex")(safe_regex.is_regex)
    else:
        checker.checkers.pop("regex", None)
    for name, rule in (("iri", "URI"), ("iri-reference", "URI_reference")):
        linear = _iri_checker(rule)
        if linear is None:
            checker.checkers.pop(name, None)  # never the slow one
        else:
            checker.checks(name)(linear)
    return checker


FORMATS = _format_checker(regex=True)
"""The format checker of :func:`validator_for`: every known format, ``regex`` on RE2."""

# meta-schema validation leaves `pattern` values to the pattern checks (schema_checks),
# which say what is wrong with a position and a hint instead of "is not a 'regex'"
_META_FORMATS = _format_checker(regex=False)


def _matches(pattern: str, text: str) -> bool:
    try:
        return safe_regex.search(pattern, text)
    except RegexRefused:
        return False  # checked schemas never get here; unchecked ones fail closed


def _refused(keyword: str, pattern: str, exc: RegexRefused) -> ValidationError:
    return ValidationError(f"{keyword} {pattern!r} cannot be evaluated: {exc}")


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    try:
        found = safe_regex.search(pattern, instance)
    except RegexRefused as exc:
        yield _refused("pattern", pattern, exc)
        return
    if not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object") or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        try:
            keys = [key for key in instance if safe_regex.search(pattern, key)]
        except RegexRefused as exc:
            yield _refused("patternProperties", pattern, exc)
            continue
        for key in keys:
            yield from validator.descend(instance[key], subschema, path=key, schema_path=pattern)


def _extras(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The keys neither ``properties`` nor ``patternProperties`` of ``schema`` cover."""
    declared = schema.get("properties")
    declared = declared if isinstance(declared, dict) else {}
    patterns = schema.get("patternProperties")
    patterns = list(patterns) if isinstance(patterns, dict) else []
    return [
        key
        for key in instance
        if key not in declared and not any(_matches(p, key) for p in patterns)
    ]


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
        return
    if additional is not False or not extras:
        return
    names = ", ".join(repr(k) for k in sorted(extras))
    if "patternProperties" in schema:
        patterns = ", ".join(repr(p) for p in sorted(schema["patternProperties"]))
        verb = "does" if len(extras) == 1 else "do"
        yield ValidationError(f"{names} {verb} not match any of the regexes: {patterns}")
    else:
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


def _lookup(validator: Any, ref: str) -> tuple[Any, Any]:
    resolved = validator._resolver.lookup(ref)
    return validator.evolve(
        schema=resolved.contents, _resolver=resolved.resolver
    ), resolved.contents


def _holds(validator: Any, instance: Any, schema: Any) -> bool:
    return next(validator.descend(instance, schema), None) is None


def _evaluated_keys(
    validator: Any, instance: dict[str, Any], schema: Any, *, top: bool
) -> set[str]:
    """The keys of ``instance`` that some keyword of ``schema`` (or of the subschemas that
    apply to ``instance``) evaluated: what ``unevaluatedProperties`` leaves alone."""
    if not isinstance(schema, dict):
        return set()
    keys: set[str] = set()
    for ref_keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
        ref = schema.get(ref_keyword)
        if isinstance(ref, str):
            target, contents = _lookup(validator, ref)
            keys |= _evaluated_keys(target, instance, contents, top=False)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        keys |= {k for k in instance if k in properties}
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        keys |= {k for k in instance if any(_matches(p, k) for p in patterns)}
    if "additionalProperties" in schema:
        keys |= set(_extras(instance, schema))
    if "unevaluatedProperties" in schema and not top:
        keys |= set(instance)
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for name, sub in dependent.items():
            if name in instance:
                keys |= _evaluated_keys(validator, instance, sub, top=False)
    for keyword in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(keyword)
        for sub in subs if isinstance(subs, list) else []:
            if _holds(validator, instance, sub):
                keys |= _evaluated_keys(validator, instance, sub, top=False)
    if "if" in schema:
        if _holds(validator, instance, schema["if"]):
            keys |= _evaluated_keys(validator, instance, schema["if"], top=False)
            keys |= _evaluated_keys(validator, instance, schema.get("then"), top=False)
        else:
            keys |= _evaluated_keys(validator, instance, schema.get("else"), top=False)
    return keys


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema, top=True)
    bad = [
        key
        for key in instance
        if key not in evaluated
        and next(validator.descend(instance[key], unevaluated, path=key), None) is not None
    ]
    if not bad:
        return
    names = ", ".join(repr(k) for k in sorted(bad))
    if unevaluated is False:
        verb = "was" if len(bad) == 1 else "were"
        yield ValidationError(f"Unevaluated properties are not allowed ({names} {verb} unexpected)")
    else:
        verb = "is" if len(bad) == 1 else "are"
        yield ValidationError(
            f"Unevaluated properties are not valid under the given schema ({names} {verb} "
            "unevaluated and invalid)"
        )


def _canonical(value: Any) -> Any:
    """A hashable form equal exactly when JSON Schema calls two values equal (``1 == 1.0``,
    ``true != 1``, objects regardless of key order)."""
    if isinstance(value, bool) or value is None:
        return ("k", value)
    if isinstance(value, int | float):
        return ("n", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("o", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    return ("r", repr(value))


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``uniqueItems`` in one pass over hashes. jsonschema compares every pair of unhashable
    items (objects, arrays): 20,000 small objects in a run's inputs were minutes of a held
    GIL."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: dict[Any, int] = {}
    duplicate: tuple[int, int] | None = None
    collecting = gc.isenabled()
    gc.disable()  # the keys are many small tuples: the collector would cost 8x the work
    try:
        for i, item in enumerate(instance):
            key = _canonical(item)
            if key in seen:
                duplicate = (seen[key], i)
                break
            seen[key] = i
    finally:
        if collecting:
            gc.enable()
    if duplicate is not None:
        yield ValidationError(
            f"the array has non-unique elements (items {duplicate[0]} and {duplicate[1]} are equal)"
        )


_KEYWORDS = {
    "uniqueItems": _unique_items,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
}
_SAFE: set[Any] = set()


@functools.cache
def _safe_class(base: Any) -> Any:
    """``base`` (a draft's validator class) with the RE2 keywords, and an ``evolve`` that
    keeps them when a subschema names another draft."""
    if base in _SAFE:
        return base
    replaced = {k: fn for k, fn in _KEYWORDS.items() if k in base.VALIDATORS}
    cls: Any = jsonschema.validators.extend(base, replaced)  # type: ignore[no-untyped-call]
    cls.evolve = _evolve
    _SAFE.add(cls)
    return cls


def _evolve(self: Any, **changes: Any) -> Any:
    # jsonschema's evolve picks the validator class a subschema's $schema names, which
    # would be the stock one with Python's re; pick its RE2 version instead
    schema = changes.setdefault("schema", self.schema)
    cls = _safe_class(jsonschema.validators.validator_for(schema, default=type(self)))
    for field in attrs.fields(type(self)):
        if field.init and field.alias not in changes:
            changes[field.alias] = getattr(self, field.name)
    return cls(**changes)


_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()


def validator_for(schema: Any) -> Any:
    """A validator of ``schema`` for its draft (2020-12 by default) that evaluates regexes
    with RE2, checks every known format and resolves ``$ref`` only inside the schema."""
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return _safe_class(base)(schema, format_checker=FORMATS, registry=_NO_RETRIEVAL)


def meta_validator(schema: Any) -> Any:
    """A validator of ``schema`` against its draft's meta-schema, formats checked except
    ``regex`` (patterns get their own checks, with positions and hints)."""
    cls = _safe_class(
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    )
    return cls(cls.META_SCHEMA, format_checker=_META_FORMATS, registry=_NO_RETRIEVAL)


def _pointer(path: Any) -> str:
    return "/" + "/".join(escape_pointer(p) for p in path)


def validation_errors(value: Any, schema: Any, limit: int = 5) -> list[dict[str, str]]:
    """Where ``value`` breaks ``schema``: ``[{"pointer", "message"}]``, most specific first,
    at most ``limit`` (default 5). Never raises for a hostile schema or value: a ``$ref``
    that does not resolve, or a value nesting deeper than Python can follow through a
    recursive schema, is reported as a problem at ``"/"`` (the whole value, as every root-level error)."""
    try:
        validator = validator_for(schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: (-len(e.path), e.message))
    except referencing.exceptions.Unresolvable as exc:
        return [{"pointer": "/", "message": f"the schema has a $ref that does not resolve: {exc}"}]
    except RecursionError:
        return [{"pointer": "/", "message": "the value nests too deeply to validate"}]
    return [
        {"pointer": _pointer(e.path), "message": e.message[:_MESSAGE_CHARS]} for e in errors[:limit]
    ]


def is_valid(value: Any, schema: Any) -> bool:
    """Whether ``value`` satisfies ``schema`` (False when it cannot be decided, as for
    :func:`validation_errors`)."""
    try:
        return bool(validator_for(schema).is_valid(value))
    except (referencing.exceptions.Unresolvable, RecursionError):
        return False
