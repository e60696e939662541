"""sgflow's one error type, and the one registry of every code it can carry.

Every refusal or failure, in every package and process, is a :class:`SgflowError` (or a
subclass named for the package that raises it) with a ``code`` from :data:`CODES`. Clients
branch on the code, never on the message. The same code means the same thing whether the
static checker, the engine, a worker or the API found it, and it carries the same HTTP status
and ``retryable`` flag wherever it is answered.

Tree (catch by meaning)::

    SgflowError                      code, message, field, limit, hint, retryable, status
    ├── GrammarError                 sgflow.grammars: a constraint refused (grammar.*, limit.*)
    ├── ProgramError                 sgflow.programs: one problem in a program, with file/line
    ├── RunError                     sgflow.programs: a run failed (output.*, run.*, engine.*)
    ├── StoreError                   the run store: run.not_found, run.lease_lost, …
    ├── EngineError                  sgflow.engine: answered in SGLang's wire shape
    └── ApiError (sgflow.client)     an error answer, rebuilt on the client side

``field`` is where the problem is: an RFC 6901 JSON pointer into the document the error is
about (the request body, a program, a schema; ``""`` is the whole document), or, for a part
of an HTTP request that is not its body, ``query:NAME``, ``header:NAME`` or ``path:NAME``.
``limit`` is the limit that was exceeded (``limit.*`` codes), ``hint`` how to fix it.

Each boundary translates once: the service's handlers answer
``{"error": {"code", "message", "field", "limit", "hint", "retryable", …}}`` with the code's
status; the engine answers SGLang's ``{"error": {"message", …}}`` with the same keys; a run's
``error`` is :meth:`SgflowError.to_dict`; the client raises ``ApiError`` from the body.
The README's table of codes is :func:`codes_table` (a test keeps them equal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CODES", "Code", "SgflowError", "code_info", "codes_table", "escape_pointer"]


@dataclass(frozen=True)
class Code:
    """A registered code: the HTTP ``status`` it is answered with, whether trying the same
    thing again may help (``retryable``), and what it means (``summary``)."""

    status: int
    retryable: bool
    summary: str


def _codes(*rows: tuple[str, int, bool, str]) -> dict[str, Code]:
    table: dict[str, Code] = {}
    for name, status, retryable, summary in rows:
        if name in table:
            raise ValueError(f"error code {name} registered twice")
        table[name] = Code(status, retryable, summary)
    return table


CODES: dict[str, Code] = _codes(
    # -- the request itself ------------------------------------------------------------------
    ("request.invalid", 422, False, "the request does not match the endpoint's schema"),
    ("request.malformed_json", 400, False, "the body is not JSON (or not UTF-8)"),
    ("request.aborted", 499, False, "the request was cancelled, or the engine shut down"),
    ("limit.request_size", 413, False, "the request body is larger than the limit"),
    ("request.timeout", 408, True, "the request body did not arrive in time"),
    ("limit.concurrent_runs", 429, True, "the tenant has as many active runs as it may"),
    ("limit.batch_size", 413, False, "a batch has more lines than the limit"),
    ("limit.text_size", 422, False, "a text to extract from is longer than the limit"),
    ("json.non_finite", 400, False, "NaN, Infinity, or a number too large for a float"),
    ("json.lone_surrogate", 400, False, "a UTF-16 surrogate escape without its pair"),
    ("json.duplicate_key", 400, False, "an object names the same key twice"),
    ("limit.json_depth", 400, False, "arrays/objects nest deeper than the limit"),
    ("limit.json_size", 413, False, "a document is longer than the limit"),
    ("limit.json_number", 400, False, "an integer literal has more digits than the limit"),
    ("limit.yaml_aliases", 400, False, "YAML aliases expand past the node limit, or loop"),
    ("auth.missing", 401, False, "no API key was sent"),
    ("auth.invalid", 401, False, "the API key is unknown, revoked or malformed"),
    ("route.not_found", 404, False, "no such route"),
    ("route.method_not_allowed", 405, False, "the route does not take this method"),
    ("idempotency.conflict", 409, False, "an Idempotency-Key reused with another body"),
    ("service.not_ready", 503, True, "a dependency of the service is down"),
    ("internal", 500, True, "a bug; the answer carries the request id to report"),
    # -- programs: the static checker --------------------------------------------------------
    ("program.syntax", 422, False, "the program source is not YAML/JSON"),
    ("program.not_object", 422, False, "the program is not a mapping"),
    ("program.unknown_field", 422, False, "a field the program format does not have"),
    ("program.missing_field", 422, False, "a required field is missing"),
    ("program.wrong_type", 422, False, "a field has the wrong type"),
    ("program.invalid_value", 422, False, "a field has a value out of its range"),
    ("program.forward_ref", 422, False, "a template uses a step that runs later"),
    ("program.undefined_ref", 422, False, "a template uses a step that does not exist"),
    ("inputs.invalid_schema", 422, False, "the program's inputs schema is invalid"),
    ("output.invalid_schema", 422, False, "the program's output schema is invalid"),
    ("step.duplicate_id", 422, False, "two steps have the same id"),
    ("step.reserved_id", 422, False, "a step id is a reserved name"),
    ("step.multiple_actions", 422, False, "a step has more than one action"),
    ("step.empty", 422, False, "a step has no action"),
    ("step.think_without_answer", 422, False, "a think step is not followed by an answer"),
    ("condition.syntax", 422, False, "an `if` expression does not parse"),
    ("fork.over_syntax", 422, False, "a fork's `over` expression does not parse"),
    ("gen.schema_from_syntax", 422, False, "a `json_schema_from` expression does not parse"),
    ("template.syntax", 422, False, "a template does not parse"),
    ("template.forbidden", 422, False, "a template uses a tag or attribute the sandbox refuses"),
    ("template.unknown_name", 422, False, "a template uses a name it cannot see"),
    ("template.unknown_input", 422, False, "a template uses an input the program lacks"),
    ("template.undefined", 422, False, "a template used an undefined value while rendering"),
    ("template.limit", 422, False, "a template rendered past its size or time limit"),
    ("template.error", 422, False, "a template failed while rendering"),
    ("limit.steps", 422, False, "the program has more steps than the limit"),
    ("limit.total_tokens", 422, False, "the steps' max_tokens add up past the limit"),
    ("limit.token_budget", 422, False, "a run used more completion tokens than its budget"),
    ("limit.fork_depth", 422, False, "forks nest deeper than the limit"),
    ("limit.fork_width", 422, False, "a fork has more branches than the limit"),
    ("limit.template_size", 422, False, "a template is longer than the limit"),
    ("limit.max_tokens", 422, False, "a step's max_tokens is over the limit"),
    ("limit.choices", 422, False, "a select step has more choices than the limit"),
    # -- grammars: constraints ---------------------------------------------------------------
    ("grammar.unsupported", 422, False, "valid, but xgrammar cannot enforce it as written"),
    ("grammar.invalid_regex", 422, False, "the regex does not parse"),
    ("grammar.invalid_ebnf", 422, False, "the EBNF grammar does not parse"),
    ("grammar.invalid_schema", 422, False, "the JSON Schema is invalid or cannot be compiled"),
    (
        "grammar.invalid_choices",
        422,
        False,
        "a choices list is empty, or has empty/duplicate options",
    ),
    ("grammar.unknown_name", 422, False, "no library grammar has this name"),
    ("grammar.ref_cycle", 422, False, "$refs that loop without producing JSON"),
    ("grammar.regex_dialect", 422, False, "a pattern RE2 and xgrammar would read differently"),
    ("grammar.compile_timeout", 422, False, "compilation took longer than the time limit"),
    ("grammar.compile_crashed", 422, False, "the grammar compiler crashed or ran out of memory"),
    ("grammar.compile_busy", 503, True, "every grammar compiler stayed busy; retry shortly"),
    ("grammar.conflict", 422, False, "more than one constraint on one generation"),
    ("grammar.ref_unresolved", 422, False, "a $ref names no library schema and no file"),
    (
        "grammar.dead_end",
        422,
        False,
        "constrained decoding reached a state no token continues, or ended where the grammar "
        "does not accept the text (finish_reason abort; the text is not a value)",
    ),
    ("limit.schema_depth", 422, False, "the JSON Schema nests too deeply"),
    ("limit.schema_size", 422, False, "the JSON Schema is too large"),
    ("limit.enum_size", 422, False, "an enum or choices list has too many options"),
    ("limit.schema_branches", 422, False, "an anyOf/oneOf/allOf has too many subschemas"),
    ("limit.regex_size", 422, False, "a regex is too long"),
    ("limit.grammar_size", 422, False, "a grammar is too long"),
    ("limit.context", 422, False, "the prompt plus max_new_tokens do not fit the context"),
    # -- stored programs, runs, batches ------------------------------------------------------
    ("program.not_found", 404, False, "no such program for this tenant"),
    ("program.version_exists", 409, False, "this name@version exists with another body"),
    ("program.version_deleted", 409, False, "this name@version was deleted; use a new version"),
    ("program.deleted", 410, False, "the program version was deleted and takes no new runs"),
    ("program.missing", 500, False, "a run's program body is missing from the store"),
    ("input.invalid", 422, False, "a run's inputs do not match the program's inputs schema"),
    ("output.invalid", 422, False, "the output broke its schema after every attempt"),
    ("output.truncated", 422, False, "generation stopped at max_tokens inside a value"),
    ("fork.not_a_list", 422, False, "a fork's `over` did not evaluate to a list"),
    ("run.not_found", 404, False, "no such run for this tenant (or its result expired)"),
    ("run.invalid_cursor", 422, False, "a pagination cursor the API did not issue"),
    ("run.lease_lost", 409, False, "a write by an attempt that no longer holds the run"),
    ("run.already_finished", 409, False, "a write to a run whose result is written"),
    ("run.max_attempts", 500, False, "the run lost its worker on every attempt"),
    ("run.cancelled", 409, False, "the run was cancelled"),
    ("run.deadline_exceeded", 504, False, "the run was not done by its deadline"),
    ("run.time_limit", 504, False, "an attempt ran past the workers' hard time limit"),
    ("run.timeout", 504, True, "the run took longer than its program's timeout_s"),
    ("run.failed", 500, False, "the run failed without a more specific code"),
    ("run.store", 500, True, "the run store refused an operation"),
    ("batch.not_found", 404, False, "no such batch for this tenant"),
    ("batch.expired", 504, False, "the batch's deadline passed before this line finished"),
    ("batch.duplicate_custom_id", 422, False, "two lines of a batch have the same custom_id"),
    ("batch.creation_interrupted", 500, True, "the API stopped while creating the batch"),
    # -- engines -----------------------------------------------------------------------------
    ("engine.unavailable", 503, True, "the engine could not be reached"),
    ("engine.overloaded", 503, True, "the engine's queue is full; retry after a while"),
    ("engine.error", 502, True, "the engine answered with an error"),
    ("engine.internal", 500, False, "the engine failed (a bug in the engine)"),
    (
        "engine.unsupported",
        422,
        False,
        "the engine cannot enforce what a step needs (the step, the feature and the engine "
        "are named); nothing was generated",
    ),
    ("engine.unrecognised", 502, False, "the URL answers like no engine sgflow knows"),
    # -- the OpenAI-compatible surface (sgflow.openai) -----------------------------------------
    ("openai.invalid_json_schema", 400, False, "a strict schema outside OpenAI's strict subset"),
    ("openai.unsupported", 400, False, "an OpenAI parameter or value sgflow does not support"),
    ("model.not_found", 404, False, "no engine model or stored program has this name"),
    ("limit.message_size", 422, False, "a message is longer than the limit"),
    ("limit.file_size", 413, False, "an uploaded file is larger than the limit"),
    ("batch.invalid_line", 422, False, "a line of an OpenAI batch input file is broken"),
    ("file.not_found", 404, False, "no such file for this tenant"),
    (
        "stream.restarted",
        503,
        True,
        "the run restarted after part of a streamed answer was sent; send the request again",
    ),
    # -- the Python client ---------------------------------------------------------------------
    ("client.stream", 0, True, "a run's event stream kept breaking (status 0: no HTTP answer)"),
)


def code_info(code: str) -> Code:
    """The registry entry of ``code``; raises ``KeyError`` naming an unregistered code."""
    try:
        return CODES[code]
    except KeyError:
        raise KeyError(f"error code {code!r} is not registered in sgflow.errors.CODES") from None


def escape_pointer(token: str | int) -> str:
    """One reference token of a JSON pointer (RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``)."""
    return str(token).replace("~", "~0").replace("/", "~1")


_UNKNOWN = Code(0, False, "not registered in this version")
_KEYS = ("code", "message", "field", "limit", "hint", "retryable")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")


class SgflowError(Exception):
    """An error a caller caused or must act on.

    ``code`` must be registered in :data:`CODES` (``KeyError`` otherwise); its status and
    ``retryable`` come from there (``retryable`` may be overridden for one error). ``field``
    (default None) is a JSON pointer or ``query:``/``header:``/``path:`` name (a dotted path
    such as ``sampling_params.regex`` is turned into the pointer ``/sampling_params/regex``);
    ``limit`` (default None) the limit exceeded; ``hint`` (default None) how to fix it;
    ``extra`` (default None) more keys for the error object (``errors``, ``request_id``, …);
    ``headers`` (default None) headers to answer with (``Retry-After``).
    """

    registered_only = True  # False where codes come from elsewhere (an API answer)

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        limit: Any = None,
        hint: str | None = None,
        retryable: bool | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        info = code_info(code) if self.registered_only else CODES.get(code, _UNKNOWN)
        self.code = code
        self.message = message
        self.field = as_pointer(field)
        self.limit = limit
        self.hint = hint or None
        self.retryable = info.retryable if retryable is None else retryable
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.status = info.status  # the HTTP status it is answered with

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **extra: Any) -> SgflowError:
        """Rebuild an error from its :meth:`to_dict` (e.g. a run's stored ``error``), with
        ``extra`` keys added. An unregistered or missing code becomes ``run.failed`` (the
        original code is kept as ``original_code``)."""
        code = str(data.get("code") or "run.failed")
        more = {k: v for k, v in data.items() if k not in _KEYS}
        if code not in CODES:
            more["original_code"], code = code, "run.failed"
        return SgflowError(
            code,
            str(data.get("message") or "failed"),
            field=data.get("field"),
            limit=data.get("limit"),
            hint=data.get("hint"),
            retryable=data.get("retryable"),
            extra={**more, **extra},
        )

    def to_dict(self) -> dict[str, Any]:
        """The error object: ``code``, ``message``, ``field``, ``limit``, ``hint``,
        ``retryable`` (always present, ``null`` where they do not apply) and ``extra``."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "limit": self.limit,
            "hint": self.hint,
            "retryable": self.retryable,
        }
        body.update(self.extra)
        return body

    def to_body(self) -> dict[str, Any]:
        """``{"error": to_dict()}``, the body of an HTTP answer."""
        return {"error": self.to_dict()}

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.code}{where}: {self.message}{hint}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, field={self.field!r})"


def as_pointer(field: str | None) -> str | None:
    """``field`` as sgflow writes locations: pointers stay, ``a.b.0`` becomes ``/a/b/0``,
    a bare body key ``name`` becomes ``/name``; ``query:``/``header:``/``path:`` names stay."""
    if field is None or field == "" or field.startswith("/"):
        return field
    if field.split(":", 1)[0] in ("query", "header", "path") and ":" in field:
        return field
    if _DOTTED.match(field):
        return "".join(f"/{escape_pointer(p)}" for p in field.split("."))
    return f"/{escape_pointer(field)}"


def codes_table() -> str:
    """The registry as a Markdown table (code, status, retryable, meaning), for the README."""
    lines = ["| code | status | retryable | meaning |", "|---|---|---|---|"]
    for name, info in CODES.items():
        lines.append(
            f"| `{name}` | {info.status} | {'yes' if info.retryable else 'no'} | {info.summary} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m sgflow.errors`: the README's table
    print(codes_table())
