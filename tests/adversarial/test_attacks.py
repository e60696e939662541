"""The attacker's corpus against the real service (`sgflow serve` + `sgflow worker` processes):
each case, by attack class, is answered with a 4xx (the code named where it matters) within
the bound of :data:`tests.adversarial.hostile.CASE_TIMEOUT_S`, and the service is still ready
and answering afterwards. The regex and JSON classes live beside this file."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.adversarial.hostile import HostileService

PROGRAM = {
    "program": "adv",
    "version": 1,
    "inputs": {
        "type": "object",
        "properties": {"ticket": {"type": "string", "maxLength": 200}},
        "required": ["ticket"],
        "additionalProperties": False,
    },
    "steps": [{"id": "kind", "user": "{{ inputs.ticket }}", "gen": {"choices": ["a", "b"]}}],
}
NDJSON = {"Content-Type": "application/x-ndjson"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int | tuple[int, ...]
    code: str | None = None
    who: str = "acme"  # acme | globex | anon | a raw Authorization value
    kwargs: dict[str, Any] = field(default_factory=dict)


def program_with(**step: Any) -> dict[str, Any]:
    return {**PROGRAM, "steps": [{"id": "s", "user": "{{ inputs.ticket }}", **step}]}


def schema_program(schema: Any, where: str = "gen") -> dict[str, Any]:
    if where == "inputs":
        return {**PROGRAM, "inputs": schema}
    if where == "output":
        return {**PROGRAM, "output": {"value": "{{ steps.kind }}", "schema": schema}}
    return program_with(gen={"json_schema": schema, "max_tokens": 64})


def run_inline(program: dict[str, Any], inputs: Any = None) -> dict[str, Any]:
    return {"json": {"program": program, "inputs": inputs or {"ticket": "x"}}}


def extract(schema: Any) -> dict[str, Any]:
    return {"json": {"schema": schema, "text": "hello", "timeout_s": 0}}


# -- $ref to remote, file and traversal targets, in every schema a user sends ------------------

REFS = [
    "http://169.254.169.254/latest/meta-data/",
    "https://evil.example/schema.json",
    "file:///etc/passwd",
    "/etc/passwd",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "//evil.example/x",
    "ftp://evil.example/x.json",
    "data:application/json,{}",
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    "\\\\evil\\share\\x.json",
    "#/$defs/../../../etc/passwd",
    "person.schema.json#/../../../../etc/passwd",
]
REF_CASES = (
    [
        Case(f"ref-{where}-{i}", "POST", "/v1/programs", 422, None, kwargs=kw)
        for i, ref in enumerate(REFS)
        for where, kw in (
            ("gen", {"json": {"source": json.dumps(schema_program({"$ref": ref}))}}),
            (
                "inputs",
                {
                    "json": {
                        "source": json.dumps(
                            schema_program(
                                {"type": "object", "properties": {"a": {"$ref": ref}}}, "inputs"
                            )
                        )
                    }
                },
            ),
        )
    ]
    + [
        Case(
            f"ref-extract-{i}",
            "POST",
            "/v1/extract",
            422,
            None,
            kwargs=extract({"type": "object", "properties": {"a": {"$ref": ref}}}),
        )
        for i, ref in enumerate(REFS)
    ]
    + [
        Case(
            "ref-id-rebase",
            "POST",
            "/v1/extract",
            422,
            None,
            kwargs=extract(
                {
                    "$id": "http://evil.example/",
                    "type": "object",
                    "properties": {"a": {"$ref": "x.json"}},
                }
            ),
        ),
        Case(
            "ref-dynamic",
            "POST",
            "/v1/extract",
            422,
            None,
            kwargs=extract(
                {"type": "object", "properties": {"a": {"$dynamicRef": "http://evil.example/#x"}}}
            ),
        ),
        Case(
            "ref-output-schema",
            "POST",
            "/v1/runs",
            422,
            None,
            kwargs=run_inline(schema_program({"$ref": "file:///etc/shadow"}, "output")),
        ),
    ]
)

# -- enum, property and size bombs ----------------------------------------------------------

BOMBS = [
    Case(
        "enum-100k",
        "POST",
        "/v1/extract",
        422,
        None,
        kwargs=extract({"type": "object", "properties": {"a": {"enum": list(range(100_000))}}}),
    ),
    Case(
        "enum-long-strings",
        "POST",
        "/v1/extract",
        (413, 422),
        None,
        kwargs=extract({"type": "object", "properties": {"a": {"enum": ["x" * 1000] * 900}}}),
    ),
    Case(
        "properties-20k",
        "POST",
        "/v1/extract",
        422,
        "limit.schema_size",
        kwargs=extract(
            {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(20_000)}}
        ),
    ),
    Case(
        "required-100k",
        "POST",
        "/v1/extract",
        (413, 422),
        None,
        kwargs=extract({"type": "object", "required": [f"r{i}" for i in range(100_000)]}),
    ),
    Case(
        "anyof-3000",
        "POST",
        "/v1/extract",
        422,
        "limit.schema_branches",
        kwargs=extract({"anyOf": [{"const": i} for i in range(3000)]}),
    ),
    Case(
        "defs-5000",
        "POST",
        "/v1/extract",
        422,
        None,
        kwargs=extract(
            {"$defs": {f"d{i}": {"type": "string"} for i in range(5000)}, "type": "object"}
        ),
    ),
    Case(
        "nested-anyof-deep",
        "POST",
        "/v1/extract",
        422,
        "limit.schema_depth",
        kwargs=extract(json.loads('{"anyOf":[' * 60 + "{}" + "]}" * 60)),
    ),
    Case(
        "choices-5000",
        "POST",
        "/v1/programs",
        422,
        None,
        kwargs={
            "json": {
                "source": json.dumps(program_with(gen={"choices": [f"c{i}" for i in range(5000)]}))
            }
        },
    ),
    Case(
        "select-long-options",
        "POST",
        "/v1/programs",
        (413, 422),
        None,
        kwargs={
            "json": {
                "source": json.dumps(
                    program_with(select=["x" * 20_000 + str(i) for i in range(60)])
                )
            }
        },
    ),
    Case(
        "steps-1000",
        "POST",
        "/v1/programs",
        422,
        "limit.steps",
        kwargs={
            "json": {
                "source": json.dumps(
                    {
                        **PROGRAM,
                        "steps": [
                            {"id": f"s{i}", "user": "x", "gen": {"max_tokens": 1}}
                            for i in range(1000)
                        ],
                    }
                )
            }
        },
    ),
    Case(
        "max-tokens-huge",
        "POST",
        "/v1/programs",
        422,
        "limit.max_tokens",
        kwargs={"json": {"source": json.dumps(program_with(gen={"max_tokens": 10**9}))}},
    ),
    Case(
        "fork-wide",
        "POST",
        "/v1/programs",
        422,
        "limit.fork_width",
        kwargs={
            "json": {
                "source": json.dumps(
                    program_with(
                        fork={
                            "n": 100_000,
                            "steps": [{"id": "b", "user": "x", "gen": {"max_tokens": 1}}],
                        }
                    )
                )
            }
        },
    ),
    Case(
        "unique-items-inputs",
        "POST",
        "/v1/runs",
        422,
        None,
        kwargs=run_inline(
            {
                **PROGRAM,
                "inputs": {
                    "type": "object",
                    "properties": {"a": {"type": "array", "uniqueItems": True, "maxItems": 100}},
                },
            },
            {"a": [{"k": i} for i in range(20_000)]},
        ),
    ),
    Case(
        "inputs-array-huge",
        "POST",
        "/v1/runs",
        (413, 422),
        None,
        kwargs=run_inline(PROGRAM, {"ticket": "x", "extra": list(range(200_000))}),
    ),
    Case(
        "ebnf-huge-repeat",
        "POST",
        "/v1/programs",
        (201, 422),
        None,
        kwargs={
            "json": {"source": json.dumps(program_with(gen={"ebnf": 'root ::= ("a"{1000}){1000}'}))}
        },
    ),
    Case(
        "ebnf-many-rules",
        "POST",
        "/v1/programs",
        422,
        None,
        kwargs={
            "json": {
                "source": json.dumps(
                    program_with(
                        gen={
                            "ebnf": "root ::= r0\n"
                            + "\n".join(f'r{i} ::= "a" r{i + 1} | "b"' for i in range(6000))
                            + '\nr6000 ::= "c"'
                        }
                    )
                )
            }
        },
    ),
    Case(
        "ebnf-deep-parens",
        "POST",
        "/v1/programs",
        422,
        None,
        kwargs={
            "json": {
                "source": json.dumps(
                    program_with(gen={"ebnf": "root ::= " + "(" * 20_000 + '"a"' + ")" * 20_000})
                )
            }
        },
    ),
    Case(
        "regex-deep-parens",
        "POST",
        "/v1/programs",
        422,
        None,
        kwargs={
            "json": {
                "source": json.dumps(program_with(gen={"regex": "(" * 3000 + "a" + ")" * 3000}))
            }
        },
    ),
    Case(
        "schema-min-items-huge",
        "POST",
        "/v1/extract",
        422,
        None,
        kwargs=extract(
            {
                "type": "object",
                "properties": {"a": {"type": "array", "minItems": 10**9}},
                "required": ["a"],
            }
        ),
    ),
    Case(
        "schema-min-length-huge",
        "POST",
        "/v1/extract",
        (202, 422),  # unsatisfiable in max_tokens: a run that ends output.truncated
        None,
        kwargs={
            **extract(
                {
                    "type": "object",
                    "properties": {"a": {"type": "string", "minLength": 10**9}},
                    "required": ["a"],
                }
            ),
            # The answer waits for the schema's compile against the vocabulary, bounded by
            # SGFLOW_COMPILE_TIMEOUT_S (10 s), not by the 1-s attack bound: xgrammar takes
            # about 1 s for this string on 2 cores in every JSON layout (0.9-1.4 s measured
            # under load), so the 1-s bound failed whenever the machine was busy.
            "timeout": 15.0,
        },
    ),
    Case(
        "yaml-alias-bomb",
        "POST",
        "/v1/programs",
        400,
        "limit.yaml_aliases",
        kwargs={
            "json": {
                "source": "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
                + "".join(
                    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
                    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
                    for i in range(9)
                )
                + "program: bomb\nsteps: [{id: s, user: x, gen: {}}]\n"
            }
        },
    ),
]

# -- template-sandbox escapes, through the API ----------------------------------------------------

TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__ }}",
    "{{ inputs.ticket|attr('__class__') }}",
    "{{ inputs['__class__'] }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{% set x %}{{ inputs.ticket }}{% endset %}{{ x }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% filter system %}id{% endfilter %}",
    "{{ {}.__class__.__base__.__subclasses__() }}",
]
TEMPLATE_CASES = [
    Case(
        f"template-{i}",
        "POST",
        "/v1/programs",
        422,
        None,
        kwargs={
            "json": {
                "source": json.dumps(
                    program_with(gen={"max_tokens": 4})
                    | {"steps": [{"id": "s", "user": t, "gen": {"max_tokens": 4}}]}
                )
            }
        },
    )
    for i, t in enumerate(TEMPLATES)
] + [
    Case(
        f"template-run-{i}",
        "POST",
        "/v1/runs",
        422,
        None,
        kwargs=run_inline({**PROGRAM, "steps": [{"id": "s", "user": t, "gen": {"max_tokens": 4}}]}),
    )
    for i, t in enumerate(TEMPLATES[:6])
]

# -- headers and idempotency keys --------------------------------------------------------------

HEADER_CASES = [
    Case(
        "idem-key-huge",
        "POST",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={
            "json": {"program": "adv@1", "inputs": {"ticket": "x"}},
            "headers": {"Idempotency-Key": "k" * 5000},
        },
    ),
    Case(
        "idem-key-reused-other-body",
        "POST",
        "/v1/runs",
        409,
        "idempotency.conflict",
        kwargs={
            "json": {"program": "adv@1", "inputs": {"ticket": "other body"}},
            "headers": {"Idempotency-Key": "adv-fixed-key"},
        },
    ),
    Case(
        "last-event-id-garbage",
        "GET",
        "/v1/runs/{run}/events",
        422,
        "request.invalid",
        kwargs={"headers": {"Last-Event-ID": "not-an-id-$$$"}},
    ),
    Case(
        "last-event-id-huge",
        "GET",
        "/v1/runs/{run}/events",
        422,
        "request.invalid",
        kwargs={"headers": {"Last-Event-ID": "1" * 5000}},
    ),
    Case(
        "content-type-xml",
        "POST",
        "/v1/runs",
        (400, 415, 422),
        None,
        kwargs={
            "content": b"<run><program>adv@1</program></run>",
            "headers": {"Content-Type": "application/xml"},
        },
    ),
    Case(
        "content-encoding-gzip-bomb",
        "POST",
        "/v1/runs",
        (400, 413, 415, 422),
        None,
        kwargs={
            "content": b"\x1f\x8b\x08\x00" + b"\x00" * 64,
            "headers": {"Content-Encoding": "gzip", "Content-Type": "application/json"},
        },
    ),
    Case(
        "header-huge",
        "GET",
        "/v1/programs",
        (200, 400, 413, 431),  # refused, or read and ignored
        None,
        kwargs={"headers": {"X-Junk": "j" * 200_000}},
    ),
    Case(
        "many-headers",
        "GET",
        "/v1/programs",
        (200, 400, 431),
        None,
        kwargs={"headers": {f"X-H{i}": "v" for i in range(500)}},
    ),
    Case(
        "request-id-injection",
        "GET",
        "/v1/runs/nope",
        404,
        "run.not_found",
        kwargs={"headers": {"X-Request-ID": "a" * 500}},
    ),
    Case(
        "query-limit-negative",
        "GET",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"params": {"limit": "-1"}},
    ),
    Case(
        "query-limit-huge",
        "GET",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"params": {"limit": "1" * 40}},
    ),
    Case(
        "query-cursor-garbage",
        "GET",
        "/v1/runs",
        422,
        None,
        kwargs={"params": {"cursor": "!!!!" * 40}},
    ),
    Case(
        "query-status-script",
        "GET",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"params": {"status": "<script>alert(1)</script>"}},
    ),
    Case(
        "query-program-huge",
        "GET",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"params": {"program": "p" * 5000}},
    ),
    Case("path-run-id-huge", "GET", "/v1/runs/" + "r" * 10_000, (404, 414, 431), None),
    Case("path-unicode", "GET", "/v1/runs/%F0%9F%92%A3%00", 404, None),
    Case("path-traversal-program", "GET", "/v1/programs/..%2F..%2Fetc%2Fpasswd/1", 404, None),
    Case("path-version-overflow", "GET", "/v1/programs/adv/99999999999999999999", 422, None),
    Case(
        "priority-overflow",
        "POST",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"json": {"program": "adv@1", "inputs": {"ticket": "x"}, "priority": 10**30}},
    ),
    Case(
        "deadline-nan",
        "POST",
        "/v1/runs",
        (400, 422),
        None,
        kwargs={
            "content": b'{"program": "adv@1", "inputs": {"ticket": "x"}, "deadline_s": NaN}',
            "headers": {"Content-Type": "application/json"},
        },
    ),
    Case(
        "deadline-negative",
        "POST",
        "/v1/runs",
        422,
        "request.invalid",
        kwargs={"json": {"program": "adv@1", "inputs": {"ticket": "x"}, "deadline_s": -5}},
    ),
    Case(
        "extract-timeout-huge",
        "POST",
        "/v1/extract",
        422,
        "request.invalid",
        kwargs={"json": {"schema": {"type": "object"}, "text": "x", "timeout_s": 10**9}},
    ),
]

# -- getting in without a valid key, or into another tenant ------------------------------------

AUTH_CASES = [
    Case("no-key", "GET", "/v1/programs", 401, "auth.missing", who="anon"),
    Case("empty-bearer", "GET", "/v1/programs", 401, None, who="Bearer x y"),
    Case("bearer-only", "GET", "/v1/programs", 401, None, who="Bearer"),
    Case("basic-auth", "GET", "/v1/programs", 401, None, who="Basic YWRtaW46YWRtaW4="),
    Case(
        "lowercase-scheme-bad-key",
        "GET",
        "/v1/programs",
        401,
        "auth.invalid",
        who="bearer sgf_0000000000000000_" + "A" * 43,
    ),
    Case(
        "well-formed-unknown-key",
        "GET",
        "/v1/programs",
        401,
        "auth.invalid",
        who="Bearer sgf_0123456789abcdef_" + "B" * 43,
    ),
    Case("known-id-wrong-secret", "GET", "/v1/programs", 401, "auth.invalid", who="{acme_id}"),
    Case("key-with-newline", "GET", "/v1/programs", 401, None, who="Bearer {acme}%0a"),
    Case("key-huge", "GET", "/v1/programs", (401, 431), None, who="Bearer " + "k" * 100_000),
    Case("sql-ish-key", "GET", "/v1/programs", 401, None, who="Bearer ' OR '1'='1"),
    Case("null-byte-key", "GET", "/v1/programs", 401, None, who="Bearer sgf_%00"),
    Case("other-tenants-run", "GET", "/v1/runs/{run}", 404, "run.not_found", who="globex"),
    Case(
        "other-tenants-run-events",
        "GET",
        "/v1/runs/{run}/events",
        404,
        "run.not_found",
        who="globex",
    ),
    Case(
        "other-tenants-run-cancel",
        "POST",
        "/v1/runs/{run}/cancel",
        404,
        "run.not_found",
        who="globex",
    ),
    Case(
        "other-tenants-program", "GET", "/v1/programs/adv/1", 404, "program.not_found", who="globex"
    ),
    Case(
        "other-tenants-program-run",
        "POST",
        "/v1/runs",
        404,
        "program.not_found",
        who="globex",
        kwargs={"json": {"program": "adv@1", "inputs": {"ticket": "x"}}},
    ),
    Case(
        "other-tenants-program-delete",
        "DELETE",
        "/v1/programs/adv/1",
        404,
        "program.not_found",
        who="globex",
    ),
    Case("other-tenants-batch", "GET", "/v1/batches/{batch}", 404, "batch.not_found", who="globex"),
    Case(
        "method-override-header",
        "GET",
        "/v1/programs/adv/1",
        404,
        "program.not_found",
        who="globex",
        kwargs={"headers": {"X-HTTP-Method-Override": "DELETE"}},
    ),
    Case("double-slash-path", "GET", "//v1//programs", (401, 404), None, who="anon"),
    Case("uppercase-path", "GET", "/V1/programs", 404, "route.not_found", who="anon"),
    Case("unknown-method", "PATCH", "/v1/runs/{run}", 405, "route.method_not_allowed"),
    Case(
        "tenant-in-body",
        "POST",
        "/v1/runs",
        422,
        "request.invalid",
        who="globex",
        kwargs={"json": {"program": "adv@1", "inputs": {"ticket": "x"}, "tenant": "acme"}},
    ),
]

# -- batch lines broken in every way ---------------------------------------------------------

GOOD = '{"custom_id": "a", "inputs": {"ticket": "x"}}'
BATCH_LINES = {
    "not-json": "{nope",
    "array": "[1, 2]",
    "string": '"just a string"',
    "number": "42",
    "null": "null",
    "no-custom-id": '{"inputs": {"ticket": "x"}}',
    "custom-id-number": '{"custom_id": 7, "inputs": {"ticket": "x"}}',
    "custom-id-empty": '{"custom_id": "", "inputs": {"ticket": "x"}}',
    "custom-id-huge": json.dumps({"custom_id": "c" * 10_000, "inputs": {"ticket": "x"}}),
    "duplicate-custom-id": GOOD,
    "unknown-field": '{"custom_id": "b", "inputs": {"ticket": "x"}, "evil": 1}',
    "inputs-list": '{"custom_id": "b", "inputs": [1]}',
    "inputs-invalid": '{"custom_id": "b", "inputs": {"ticket": 5}}',
    "inputs-extra": '{"custom_id": "b", "inputs": {"ticket": "x", "more": 1}}',
    "deep": '{"custom_id": "b", "inputs": {"ticket": ' + "[" * 5000 + "]" * 5000 + "}}",
    "nan": '{"custom_id": "b", "inputs": {"ticket": NaN}}',
    "huge-int": '{"custom_id": "b", "inputs": {"ticket": ' + "9" * 5000 + "}}",
    "lone-surrogate": '{"custom_id": "b", "inputs": {"ticket": "\\ud800"}}',
    "trailing-garbage": GOOD[:-1] + "} trailing",
    "nul-byte": '{"custom_id": "b\x00", "inputs": {"ticket": "x"}}',
}
BATCH_CASES = [
    Case(
        f"batch-line-{name}",
        "POST",
        "/v1/batches",
        (400, 413, 422),
        None,
        kwargs={
            "content": (GOOD + "\n" + line + "\n").encode(),
            "headers": NDJSON,
            "params": {"program": "adv@1"},
        },
    )
    for name, line in BATCH_LINES.items()
] + [
    Case(
        "batch-not-utf8",
        "POST",
        "/v1/batches",
        400,
        "request.malformed_json",
        kwargs={
            "content": GOOD.encode() + b"\n\xff\xfe\n",
            "headers": NDJSON,
            "params": {"program": "adv@1"},
        },
    ),
    Case(
        "batch-empty",
        "POST",
        "/v1/batches",
        422,
        None,
        kwargs={"content": b"\n\n\n", "headers": NDJSON, "params": {"program": "adv@1"}},
    ),
    Case(
        "batch-no-program",
        "POST",
        "/v1/batches",
        422,
        "request.invalid",
        kwargs={"content": GOOD.encode(), "headers": NDJSON},
    ),
    Case(
        "batch-unknown-program",
        "POST",
        "/v1/batches",
        404,
        "program.not_found",
        kwargs={"content": GOOD.encode(), "headers": NDJSON, "params": {"program": "nope@1"}},
    ),
    Case(
        "batch-deadline-text",
        "POST",
        "/v1/batches",
        422,
        None,
        kwargs={
            "content": GOOD.encode(),
            "headers": NDJSON,
            "params": {"program": "adv@1", "deadline_s": "soon"},
        },
    ),
    Case(
        "batch-too-many-lines",
        "POST",
        "/v1/batches",
        413,
        "limit.batch_size",
        kwargs={
            "content": "\n".join(
                json.dumps({"custom_id": f"c{i}", "inputs": {"ticket": "x"}}) for i in range(10_001)
            ).encode(),
            "headers": NDJSON,
            "params": {"program": "adv@1"},
        },
    ),
    Case(
        "batch-json-inputs-object",
        "POST",
        "/v1/batches",
        422,
        None,
        kwargs={"json": {"program": "adv@1", "inputs": {"custom_id": "a"}}},
    ),
    Case(
        "batch-json-zero-lines",
        "POST",
        "/v1/batches",
        422,
        None,
        kwargs={"json": {"program": "adv@1", "inputs": []}},
    ),
]

# -- oversized bodies ----------------------------------------------------------------------------

SIZE_CASES = [
    Case(
        "body-2mib",
        "POST",
        "/v1/runs",
        413,
        "limit.request_size",
        kwargs={
            "content": b'{"program": "adv@1", "inputs": {"ticket": "' + b"x" * (2 << 20) + b'"}}',
            "headers": {"Content-Type": "application/json"},
        },
    ),
    Case(
        "body-2mib-chunked",
        "POST",
        "/v1/runs",
        413,
        "limit.request_size",
        kwargs={
            "content": iter(
                [b'{"program": "adv@1", "inputs": {"ticket": "'] + [b"x" * 65536] * 40 + [b'"}}']
            ),
            "headers": {"Content-Type": "application/json"},
        },
    ),
    Case(
        "extract-text-2mib",
        "POST",
        "/v1/extract",
        413,
        "limit.request_size",
        kwargs={"json": {"schema": {"type": "object"}, "text": "x" * (2 << 20)}},
    ),
    Case(
        "program-source-2mib",
        "POST",
        "/v1/programs",
        413,
        "limit.request_size",
        kwargs={"json": {"source": "# " + "x" * (2 << 20)}},
    ),
    Case(
        "empty-body",
        "POST",
        "/v1/runs",
        400,
        "request.malformed_json",
        kwargs={"content": b"", "headers": {"Content-Type": "application/json"}},
    ),
    Case(
        "body-bom",
        "POST",
        "/v1/runs",
        (202, 400, 422),
        None,
        kwargs={
            "content": b'\xef\xbb\xbf{"program": "adv@1", "inputs": {"ticket": "x"}}',
            "headers": {"Content-Type": "application/json"},
        },
    ),
]

CASES = REF_CASES + BOMBS + TEMPLATE_CASES + HEADER_CASES + AUTH_CASES + BATCH_CASES + SIZE_CASES


@pytest.fixture(scope="module")
def service() -> Iterator[HostileService]:
    svc = HostileService(
        SGFLOW_MAX_CONCURRENT_RUNS_PER_TENANT="1000",
        # the corpus's bound is 1 s: the service is configured to give up on a grammar or a
        # body well before that (a request still has to be *answered* within the bound)
        SGFLOW_COMPILE_TIMEOUT_S="0.5",
        SGFLOW_BODY_TIMEOUT_S="0.5",
    )
    try:
        source = json.dumps(PROGRAM)
        assert svc.send(svc.acme, "POST", "/v1/programs", json={"source": source}).status_code in (
            200,
            201,
        )
        run = svc.send(
            svc.acme,
            "POST",
            "/v1/runs",
            json={"program": "adv@1", "inputs": {"ticket": "x"}},
            headers={"Idempotency-Key": "adv-fixed-key"},
        )
        assert run.status_code == 202, run.text
        batch = svc.send(
            svc.acme,
            "POST",
            "/v1/batches",
            json={"program": "adv@1", "inputs": [{"custom_id": "a", "inputs": {"ticket": "x"}}]},
        )
        assert batch.status_code == 202, batch.text
        svc.ids = {"run": run.json()["id"], "batch": batch.json()["id"]}  # type: ignore[attr-defined]
        yield svc
    finally:
        svc.close()


def _unique(case: Case) -> Case:
    """A program posted by a case is named after the case, so no case meets another's
    program (a 409 for a name taken would hide what the case is about)."""
    source = case.kwargs.get("json", {}).get("source")
    if not isinstance(source, str) or not source.startswith("{"):
        return case
    program = json.loads(source) | {"program": re.sub(r"[^a-z0-9-]", "-", case.name.lower())}
    return Case(
        **{**vars(case), "kwargs": {**case.kwargs, "json": {"source": json.dumps(program)}}}
    )


def _send(service: HostileService, case: Case) -> httpx.Response:
    case = _unique(case)
    path = case.path.format(**service.ids)  # type: ignore[attr-defined]
    if case.who == "acme":
        client = service.acme
    elif case.who == "globex":
        client = service.globex
    elif case.who == "anon":
        client = service.anon
    else:
        key_id = service.acme_key.split("_")[1]
        auth = case.who.format(acme=service.acme_key, acme_id=f"Bearer sgf_{key_id}_" + "C" * 43)
        headers = {**case.kwargs.get("headers", {}), "Authorization": auth}
        return service.send(service.anon, case.method, path, **{**case.kwargs, "headers": headers})
    return service.send(client, case.method, path, **case.kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack_is_refused_and_the_service_survives(service: HostileService, case: Case) -> None:
    response = _send(service, case)
    allowed = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        error = response.json()["error"]
        assert error["code"] and error["message"]
        if case.code is not None:
            assert error["code"] == case.code, error
    service.assert_well()


PROGRAM_CASES = [c for c in CASES if (c.method, c.path) == ("POST", "/v1/programs")]


@pytest.mark.parametrize("case", PROGRAM_CASES, ids=[c.name for c in PROGRAM_CASES])
def test_the_check_reports_or_refuses_each_hostile_program(
    service: HostileService, case: Case
) -> None:
    """``POST /v1/programs/check`` takes the same bodies: a program that ``POST
    /v1/programs`` refuses for what is in it is reported (200, ``ok`` false, the same code);
    a body or source refused before the checker is refused alike; within the same bound."""
    response = _send(service, Case(**{**vars(case), "path": "/v1/programs/check"}))
    allowed = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in (200, *allowed), (response.status_code, response.text[:500])
    if response.status_code == 200:
        report = response.json()
        stored = any(200 <= status < 300 for status in allowed)  # some cases may be stored
        assert report["ok"] is stored or (report["ok"] is False and report["errors"]), report
        if case.code is not None:
            assert case.code in [e["code"] for e in report["errors"]], report["errors"]
    else:
        error = response.json()["error"]
        assert error["code"] and error["message"], error
        # the field is named, but for a body refused whole for its size
        assert error["field"] is not None or error["code"] == "limit.request_size", error
    service.assert_well()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 150


def _raw(service: HostileService, head: bytes, chunks: list[bytes], pause_s: float) -> bytes:
    """Send ``head`` then ``chunks`` slowly on a raw socket; the answer (head and body)."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: what we wanted
                break
            sock.settimeout(pause_s)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            if answer:
                return _rest_of_answer(sock, answer)
        sock.settimeout(5)
        return _rest_of_answer(sock, sock.recv(4096))


def _rest_of_answer(sock: socket.socket, answer: bytes) -> bytes:
    """Read on until the answer's head and its ``content-length`` of body have arrived (the
    two may come in separate segments), or the server closes."""
    sock.settimeout(5)
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ]
            if len(body) >= (lengths[0] if lengths else 0):
                return answer
        try:
            more = sock.recv(4096)
        except OSError:
            return answer
        if not more:
            return answer
        answer += more


def test_a_trickled_body_is_answered_408(service: HostileService) -> None:
    head = (
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + service.acme_key.encode() + b"\r\n"
        b"Content-Length: 400\r\n\r\n"
    )
    answer = _raw(service, head, [b"{"] + [b" "] * 60, pause_s=0.1)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request.timeout" in answer
    service.assert_well()


def test_a_trickled_oversized_body_is_refused_before_reading(service: HostileService) -> None:
    head = (
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + service.acme_key.encode() + b"\r\n"
        b"Content-Length: 99999999\r\n\r\n"
    )
    answer = _raw(service, head, [b"{"], pause_s=0.1)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    service.assert_well()


def test_many_slow_bodies_do_not_starve_others(service: HostileService) -> None:
    """20 clients trickling bodies at once: ordinary requests are answered meanwhile."""
    host, port = service.url.removeprefix("http://").split(":")
    socks = []
    try:
        for _ in range(20):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            socks.append(sock)
        service.assert_well()
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("name", "head", "body", "status"),
    [
        (
            "content-length-lies",
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999999\r\n",
            b'{"program": "adv@1"}',
            b"413",
        ),
        (
            "batch-65mib-declared",
            b"POST /v1/batches?program=adv@1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-ndjson\r\nContent-Length: 68157440\r\n",
            b"x",
            b"413",
        ),
        (
            "empty-bearer",
            b"GET /v1/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n",
            b"",
            b"401",
        ),
        (
            "content-length-negative",
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n",
            b"{}",
            b"400",
        ),
        (
            "two-content-lengths",
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n",
            b"{}",
            b"400",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_raw_requests_a_client_library_would_not_send(
    service: HostileService, name: str, head: bytes, body: bytes, status: bytes
) -> None:
    auth = b"Authorization: Bearer " + service.acme_key.encode() + b"\r\n"
    if b"Authorization" in head:
        auth = b""
    answer = _raw(service, head + auth + b"\r\n", [body] if body else [b""], pause_s=0.2)
    assert answer.split(b" ")[1] == status, answer[:300]
    service.assert_well()
