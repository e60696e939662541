"""``sgflow bench peers``: the same extraction on sgflow, llama-cpp-python and Outlines.

One set of short documents (invoices and events; ``--quick``: the first five), two realistic
schemas (required fields, enums, ``format: date``/``email``, patterns, integer bounds, a
nested object, bounded arrays, ``uniqueItems``), the same model file, 2 threads, greedy
decoding and the same chat prompt (the library's ``extract`` program, rendered) on:

a. **sgflow**: ``sgflow engine`` + the executor running the ``extract`` program (xgrammar
   during decoding, then ``jsonschema`` validation and up to two repairs);
b. **llama-cpp-python**: ``create_chat_completion(response_format={"type": "json_object",
   "schema": …})`` (its GBNF converter, ``llama_cpp/llama_grammar.py``);
c. **Outlines** 1.x: ``outlines.from_llamacpp(Llama(...))`` with a ``JsonSchema`` output type
   (its default ``outlines_core`` regex backend).

Per system: validity (the output parses and ``validation_errors`` finds nothing against the
*original* schema, formats checked), completion tokens ÷ wall time, and why each invalid
output is invalid: the violated keyword, and whether that system's grammar converter drops
the keyword (the converter's output is the same with and without it) or the output ran into
``max_tokens``. The engine is stopped before the peers' model is loaded: nothing shares the
CPU. Model loads, the engine's start and Outlines' index builds are timed apart, not in
tokens/s; sgflow's per-document time includes its grammar compile and any repairs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema

from sgflow.bench.report import Report, Target, progress
from sgflow.engine.launcher import EngineProcess
from sgflow.engine.model import default_model_path
from sgflow.grammars.validation import validation_errors

__all__ = ["run"]

THREADS = 2
N_CTX = 2048
QUICK_DOCS = 5
SGFLOW, LLAMA, OUTLINES = "sgflow", "llama-cpp-python", "outlines"
TARGETS = {"sgflow_validity": Target(">=", 1.0)}

# -- the task ------------------------------------------------------------------------------


def obj(**properties: Any) -> dict[str, Any]:
    """A closed JSON Schema object, every property required."""
    closed = {"required": list(properties), "additionalProperties": False}
    return {"type": "object", "properties": properties, **closed}


def text(lo: int = 1, hi: int = 60) -> dict[str, Any]:
    return {"type": "string", "minLength": lo, "maxLength": hi}


# A bounded pattern, not ``format: email``: under xgrammar's and outlines-core's email grammars
# (unbounded local part, and xgrammar ignores maxLength beside format) SmolLM2-135M loops
# inside the address ("mailto_nwtdtdtd.com/nwtdtdtd.com/…") until max_tokens on every attempt.
# The dot is ``[.]``, not ``\.``: llama-cpp-python 0.3.36's pattern converter copies ``\.``
# into GBNF, llama.cpp's parser rejects it ("unknown escape at \."), and sampling with the
# null grammar segfaults in llama_sampler_sample — a crash, not an invalid output.
EMAIL = {
    "type": "string",
    "pattern": "^[a-z0-9._-]{1,30}@[a-z0-9-]{1,30}([.][a-z0-9-]{1,20}){1,3}$",
}
DATE = {"type": "string", "format": "date"}

INVOICE = obj(
    invoice_number={"type": "string", "pattern": "^INV-[0-9]{4,6}$"},
    issue_date=DATE,
    due_date=DATE,
    currency={"enum": ["USD", "EUR", "GBP"]},
    status={"enum": ["paid", "unpaid", "overdue"]},
    vendor=obj(name=text(), email=EMAIL),
    line_items={
        "type": "array",
        "minItems": 1,
        "maxItems": 5,
        "items": obj(
            description=text(),
            quantity={"type": "integer", "minimum": 1, "maximum": 1000},
            unit_price={"type": "number", "minimum": 0, "maximum": 100000},
        ),
    },
    total={"type": "number", "minimum": 0, "maximum": 1000000},
)

EVENT = obj(
    title=text(1, 80),
    date=DATE,
    start_time={"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    duration_minutes={"type": "integer", "minimum": 15, "maximum": 600},
    mode={"enum": ["in-person", "online", "hybrid"]},
    venue=obj(
        name=text(), city=text(1, 40), country_code={"type": "string", "pattern": "^[A-Z]{2}$"}
    ),
    organizer=obj(name=text(), email=EMAIL),
    tags={"type": "array", "items": text(1, 20), "minItems": 1, "maxItems": 4, "uniqueItems": True},
    capacity={"type": ["integer", "null"], "minimum": 1, "maximum": 5000},
)

SCHEMAS: dict[str, dict[str, Any]] = {"invoice": INVOICE, "event": EVENT}

# (schema, document); interleaved so that --quick (the first five) has both schemas
DOCUMENTS: list[tuple[str, str]] = [
    (
        "invoice",
        "Invoice INV-20417 from Northwind Traders (billing@northwind.example.com), issued "
        "2025-03-04, due 2025-04-03. 3 x ergonomic chair at $249.00 each; 2 x standing desk "
        "at $499.50 each. Total due: $1,746.00 USD. Status: unpaid.",
    ),
    (
        "event",
        "PyCon Lisbon 2025 takes place on 12 June 2025, starting at 09:30 and running for 8 "
        "hours, at the Centro Cultural de Belem in Lisbon, Portugal. It is an in-person "
        "conference organised by Ana Costa (ana.costa@pycon.pt). Tags: python, community, "
        "open source. Capacity: 1,200 attendees.",
    ),
    (
        "invoice",
        "Rechnung / Invoice no. INV-0078 - Kleinert GmbH, kontakt@kleinert.de. Date: 12 "
        "January 2025; payment due 11 February 2025. Items: 10 boxes of printer paper at EUR "
        "4.20; 1 laser toner cartridge at EUR 89.90. Amount paid in full: EUR 131.90.",
    ),
    (
        "event",
        "Join us for the Riverside Book Fair! Saturday 5 April 2025 from 10:00, all day (6 "
        "hours), Riverside Park Pavilion, Austin, USA. Organiser: Maria Gonzalez, "
        "maria@riversidebooks.org. Both in person and streamed online. Tags: books, books "
        "for kids, family, reading. Up to 300 visitors.",
    ),
    (
        "invoice",
        "From: Harbour Lights Catering <orders@harbourlights.co.uk>. Invoice INV-33190, dated "
        "28/02/2025, overdue since 30/03/2025. Buffet lunch for 40 guests at GBP 18.50 per "
        "head; coffee service x 40 at GBP 2.25. Total GBP 830.00.",
    ),
    (
        "event",
        "Webinar: Intro to Vector Databases. Online, Thursday 2025-02-20 at 4pm CET, 45 "
        "minutes. Host: Dr. Lee Min (lee.min@vectorlab.ai), streaming on Zoom from Seoul, "
        "South Korea. Topics: databases, AI, search. Open to everyone, no attendance limit.",
    ),
    (
        "invoice",
        "Invoice INV-5521 | Pixel & Pine Design Studio | hello@pixelandpine.io. Issued March "
        "15, 2025, due April 14, 2025. Logo design: 1 at $1,200; business cards: 500 at $0.12; "
        "website mockups: 3 at $350. Total $2,310. Paid by card on March 20.",
    ),
    (
        "event",
        "Team offsite: quarterly planning. 2025-07-08, 13:00-14:30 (90 min) at The Foundry, "
        "meeting room 2, Manchester, United Kingdom. Organizer: Sam Patel "
        "<sam.patel@acme-corp.com>. In-person only, 25 seats. Tags: planning, strategy.",
    ),
    (
        "invoice",
        "INVOICE INV-100203. Vendor: Atlas Cloud Hosting (accounts@atlascloud.net). Billing "
        "date 2025-05-01, due 2025-05-15. Dedicated server rental, 1 month: 1 x $320.00. Extra "
        "IP addresses: 4 x $3.00. Backup storage 200 GB: 1 x $40.00. Total: $372.00 USD, unpaid.",
    ),
    (
        "event",
        "Night-sky photography walk on 21 September 2025 at 21:00 for 2 hours, meeting at the "
        "Kielder Observatory car park, Kielder, UK. Led by Tom Hart (tom@darkskywalks.co.uk). "
        "12 places. Bring a tripod. Tags: astronomy, photography, outdoors.",
    ),
]

# -- scoring (pure) ------------------------------------------------------------------------

VALUE_KEYWORDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
)


@dataclass
class Outcome:
    """One document on one system."""

    doc: int
    schema: str
    valid: bool
    completion_tokens: int
    seconds: float
    finish: str | None = None  # "stop" | "length" | None (unknown)
    failures: list[dict[str, str]] = field(default_factory=list)  # {"keyword", "pointer", …}
    attempts: int = 1
    repaired: list[str] = field(default_factory=list)  # sgflow: what a repair fixed
    output: str = ""


def keyword_label(error: jsonschema.ValidationError) -> str:
    """``minimum``, ``format:email``, …: the violated keyword (and format name)."""
    keyword = str(error.validator)
    if keyword == "format":
        return f"format:{error.validator_value}"
    return keyword


def violations(value: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every violation of ``schema`` by ``value``: keyword, JSON pointer, message and the
    subschema holding the keyword (the same validator and format checker as
    :func:`validation_errors`)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    found = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        found.append(
            {
                "keyword": keyword_label(error),
                "pointer": "/" + "/".join(str(p) for p in error.path),
                "message": error.message[:200],
                "subschema": error.schema if isinstance(error.schema, dict) else {},
            }
        )
    return found


def score(
    output: str, schema: dict[str, Any], finish: str | None
) -> tuple[bool, list[dict[str, Any]]]:
    """Is ``output`` a valid instance of ``schema``? If not, why: one entry per problem,
    ``keyword`` being ``truncated`` (unparseable after hitting ``max_tokens``), ``not_json``
    or the violated schema keyword."""
    try:
        value = json.loads(output)
    except json.JSONDecodeError as exc:
        keyword = "truncated" if finish == "length" else "not_json"
        tail = output[-60:].replace("\n", " ")
        return False, [{"keyword": keyword, "pointer": "", "message": f"{exc.msg}; ends {tail!r}"}]
    if not validation_errors(value, schema, limit=1):
        return True, []
    found = [{k: v for k, v in f.items() if k != "subschema"} for f in violations(value, schema)]
    return False, found or [{"keyword": "invalid", "pointer": "", "message": "?"}]


Converter = Callable[[dict[str, Any]], str]


def drops(convert: Converter, subschema: dict[str, Any], keyword: str) -> bool | None:
    """Does ``convert`` (schema -> grammar/regex text) give the same output with and without
    ``keyword`` (``format:x`` means ``format``)? ``None`` when it cannot convert either."""
    name = keyword.split(":", 1)[0]
    if name not in subschema:
        return None
    without = {k: v for k, v in subschema.items() if k != name}
    try:
        return convert(subschema) == convert(without)
    except Exception:
        return None


def walk(schema: dict[str, Any], pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(pointer, subschema)`` for the schema and every property / items subschema."""
    yield pointer, schema
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield from walk(sub, f"{pointer}/{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        yield from walk(items, f"{pointer}/*")


def dropped_keywords(convert: Converter, schema: dict[str, Any]) -> dict[str, list[str]]:
    """The value keywords of ``schema`` that ``convert`` ignores: ``{label: [pointers]}``."""
    out: dict[str, list[str]] = {}
    for pointer, sub in walk(schema):
        for keyword in VALUE_KEYWORDS:
            if keyword in sub and drops(convert, sub, keyword):
                label = f"format:{sub[keyword]}" if keyword == "format" else keyword
                out.setdefault(label, []).append(pointer or "/")
    return out


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    valid = sum(o.valid for o in outcomes)
    tokens = sum(o.completion_tokens for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    return {
        "docs": n,
        "valid": valid,
        "validity": valid / n if n else None,
        "completion_tokens": tokens,
        "wall_s": round(seconds, 2),
        "tokens_per_s": tokens / seconds if seconds else None,
        "valid_per_min": 60 * valid / seconds if seconds else None,
    }


def failure_counts(outcomes: list[Outcome]) -> Counter[str]:
    """How many documents failed on each keyword (a document counts once per keyword)."""
    counts: Counter[str] = Counter()
    for o in outcomes:
        counts.update({f["keyword"] for f in o.failures})
    return counts


def explain_failures(
    system: str,
    outcomes: list[Outcome],
    dropped: dict[str, list[str]] | None,
    max_tokens: int,
) -> str | None:
    """One note line: how many outputs were invalid and why."""
    bad = [o for o in outcomes if not o.valid]
    if not bad:
        return None
    parts = []
    for keyword, count in failure_counts(bad).most_common():
        where = sorted({f["pointer"] for o in bad for f in o.failures if f["keyword"] == keyword})
        at = f" at {', '.join(where[:3])}" if any(where) else ""
        if keyword in ("truncated", "output.truncated"):  # the second: sgflow, every attempt
            why = f"ran to max_tokens={max_tokens} inside a value"
        elif keyword == "not_json":
            why = "stopped before the JSON was complete"
        elif dropped is not None and keyword in dropped:
            why = "its grammar converter drops this keyword"
        elif dropped is not None:
            why = "enforced by its grammar, yet violated"
        else:
            why = "reported by the run"
        parts.append(f"{keyword} x{count}{at} ({why})")
    return f"{system}: {len(bad)}/{len(outcomes)} invalid: " + "; ".join(parts)


# -- the prompt, shared by all three -------------------------------------------------------


def extract_ir() -> Any:
    from sgflow.programs import Program, compile_program
    from sgflow.service.routes.extract import extract_program

    return compile_program(Program.model_validate(extract_program()))


def messages(ir: Any, document: str) -> list[dict[str, str]]:
    """The chat turns the executor sends for the ``extract`` program (no instructions, no
    examples): its system prompt and its one step's rendered user turn."""
    from sgflow.programs.templates import render

    assert not ir.context and len(ir.steps) == 1, "extract is one step with no context turns"
    inputs: dict[str, Any] = {"schema": {}, "text": document, "instructions": None}
    inputs["examples"] = None
    turns = [{"role": "user", "content": render(ir.steps[0].user, {"inputs": inputs})}]
    if ir.system:
        turns.insert(0, {"role": "system", "content": render(ir.system, {"inputs": inputs})})
    return turns


# -- (a) sgflow ----------------------------------------------------------------------------


def run_sgflow(ir: Any, docs: list[tuple[str, str]], raw: dict[str, Any]) -> list[Outcome]:
    from sgflow.execution import SgflowEndpoint, execute

    t0 = time.perf_counter()
    outcomes = []
    with EngineProcess("--threads", str(THREADS), startup_s=180) as engine:
        raw["setup_s"][SGFLOW] = round(time.perf_counter() - t0, 2)
        endpoint = SgflowEndpoint(engine.url)
        for i, (name, document) in enumerate(docs):
            schema = SCHEMAS[name]
            start = time.perf_counter()
            result = execute(ir, {"schema": schema, "text": document}, endpoint)
            seconds = time.perf_counter() - start
            trace = result.trace[0] if result.trace else None
            finish = trace.finish_reason if trace else None
            outcome = Outcome(
                doc=i,
                schema=name,
                valid=False,
                completion_tokens=int(result.usage["completion_tokens"]),
                seconds=seconds,
                finish=finish.get("type") if isinstance(finish, dict) else None,
                attempts=trace.attempts if trace else 0,
            )
            if result.ok:
                value = result.output  # the program's output is the object itself
                outcome.output = json.dumps(value, ensure_ascii=False)
                outcome.valid, outcome.failures = score(outcome.output, schema, outcome.finish)
                if trace and trace.attempts > 1:
                    outcome.repaired = [
                        f"{e['pointer']}: {e['message'][:80]}" for e in trace.validation_errors
                    ]
            else:
                error = result.error or {}
                outcome.failures = [
                    {
                        "keyword": str(error.get("code")),
                        "pointer": d.get("pointer", ""),
                        "message": d.get("message", ""),
                    }
                    for d in (error.get("details") or [{}])
                ]
            outcomes.append(outcome)
            progress("peers", f"{SGFLOW} doc {i}: {_verdict(outcome)}")
    return outcomes


# -- (b) llama-cpp-python and (c) Outlines, on one model instance --------------------------


def load_llama() -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        default_model_path(), n_ctx=N_CTX, n_threads=THREADS, n_batch=512, verbose=False
    )


def run_llama_cpp(llm: Any, ir: Any, docs: list[tuple[str, str]], max_tokens: int) -> list[Outcome]:
    outcomes = []
    for i, (name, document) in enumerate(docs):
        schema = SCHEMAS[name]
        start = time.perf_counter()
        response = llm.create_chat_completion(
            messages(ir, document),
            response_format={"type": "json_object", "schema": schema},
            max_tokens=max_tokens,
            temperature=0.0,
        )
        seconds = time.perf_counter() - start
        choice = response["choices"][0]
        output = choice["message"]["content"] or ""
        valid, failures = score(output, schema, choice.get("finish_reason"))
        outcome = Outcome(
            doc=i,
            schema=name,
            valid=valid,
            completion_tokens=int(response["usage"]["completion_tokens"]),
            seconds=seconds,
            finish=choice.get("finish_reason"),
            failures=failures,
            output=output,
        )
        outcomes.append(outcome)
        progress("peers", f"{LLAMA} doc {i}: {_verdict(outcome)}")
    return outcomes


def outlines_missing() -> str | None:
    """Why Outlines cannot run here, or None. Without numba its numpy kernels raise inside
    llama-cpp-python's ctypes sampler callback, which swallows the error: the generation
    would silently be unconstrained, so that counts as unavailable too."""
    try:
        import outlines  # noqa: F401
        from outlines_core.kernels.numpy import allocate_token_bitmask  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc} (install with `pip install -e '.[bench]'`)"
    return None


@contextmanager
def unraisable_errors() -> Iterator[list[str]]:
    """Collect exceptions that ctypes callbacks swallow (a failing logits processor)."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        seen.append(f"{type(info.exc_value).__name__}: {info.exc_value}")

    sys.unraisablehook = hook
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def run_outlines(
    llm: Any, ir: Any, docs: list[tuple[str, str]], max_tokens: int, raw: dict[str, Any]
) -> list[Outcome]:
    import outlines
    from outlines.inputs import Chat
    from outlines.types import JsonSchema

    t0 = time.perf_counter()
    model = outlines.from_llamacpp(llm)
    generators = {name: outlines.Generator(model, JsonSchema(SCHEMAS[name])) for name, _ in docs}
    raw["setup_s"][OUTLINES] = round(time.perf_counter() - t0, 2)
    responses: list[Any] = []
    create = llm.create_chat_completion

    def capture(*args: Any, **kwargs: Any) -> Any:  # Outlines drops usage and finish_reason
        responses.append(create(*args, **kwargs))
        return responses[-1]

    llm.create_chat_completion = capture
    outcomes = []
    try:
        for i, (name, document) in enumerate(docs):
            schema = SCHEMAS[name]
            start = time.perf_counter()
            with unraisable_errors() as swallowed:
                generated = generators[name](
                    Chat(messages(ir, document)), max_tokens=max_tokens, temperature=0.0
                )
            output = str(generated)
            seconds = time.perf_counter() - start
            choice = responses[-1]["choices"][0]
            valid, failures = score(output, schema, choice.get("finish_reason"))
            if swallowed:
                valid = False
                failures = [{"keyword": "processor_error", "pointer": "", "message": swallowed[0]}]
            outcome = Outcome(
                doc=i,
                schema=name,
                valid=valid,
                completion_tokens=int(responses[-1]["usage"]["completion_tokens"]),
                seconds=seconds,
                finish=choice.get("finish_reason"),
                failures=failures,
                output=output,
            )
            outcomes.append(outcome)
            progress("peers", f"{OUTLINES} doc {i}: {_verdict(outcome)}")
    finally:
        llm.create_chat_completion = create
    return outcomes


def _verdict(o: Outcome) -> str:
    head = "valid" if o.valid else "INVALID " + ", ".join(f["keyword"] for f in o.failures[:3])
    extra = f", {o.attempts} attempts" if o.attempts > 1 else ""
    return f"{head} ({o.completion_tokens} tokens, {o.seconds:.1f} s{extra})"


# -- converters, for "why" -----------------------------------------------------------------


def converters() -> dict[str, Converter]:
    """Each system's JSON-Schema-to-grammar step, as schema -> text."""
    out: dict[str, Converter] = {}
    try:
        import xgrammar as xgr

        out[SGFLOW] = lambda s: str(
            xgr.Grammar.from_json_schema(json.dumps(s), any_whitespace=True)
        )
    except ImportError:
        pass
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        out[LLAMA] = lambda s: str(json_schema_to_gbnf(json.dumps(s)))
    except ImportError:
        pass
    try:
        from outlines_core.json_schema import build_regex_from_schema

        out[OUTLINES] = lambda s: str(build_regex_from_schema(json.dumps(s)))
    except ImportError:
        pass
    return out


# -- report --------------------------------------------------------------------------------


def run(*, quick: bool) -> Report:
    import llama_cpp

    docs = DOCUMENTS[:QUICK_DOCS] if quick else DOCUMENTS
    ir = extract_ir()
    max_tokens = int(ir.steps[0].gen.max_tokens)
    raw: dict[str, Any] = {
        "documents": len(docs),
        "threads": THREADS,
        "max_tokens": max_tokens,
        "model": os.path.basename(default_model_path()),
        "llama_cpp_python": llama_cpp.__version__,
        "schemas": SCHEMAS,
        "setup_s": {},
    }
    results: dict[str, list[Outcome]] = {}
    progress("peers", f"{len(docs)} documents; sgflow first (engine + executor)")
    results[SGFLOW] = run_sgflow(ir, docs, raw)  # the engine is stopped when this returns
    missing = outlines_missing()
    t0 = time.perf_counter()
    llm = load_llama()
    raw["setup_s"][LLAMA] = round(time.perf_counter() - t0, 2)
    try:
        results[LLAMA] = run_llama_cpp(llm, ir, docs, max_tokens)
        if missing is None:
            import outlines

            raw["outlines"] = outlines.__version__ if hasattr(outlines, "__version__") else "?"
            results[OUTLINES] = run_outlines(llm, ir, docs, max_tokens, raw)
    finally:
        llm.close()
    return build_report(results, raw, max_tokens, outlines_missing=missing)


def build_report(
    results: dict[str, list[Outcome]],
    raw: dict[str, Any],
    max_tokens: int,
    *,
    outlines_missing: str | None = None,
) -> Report:
    report = Report("peers", raw=raw)
    convert = converters()
    dropped: dict[str, dict[str, list[str]]] = {}
    for system, fn in convert.items():
        merged: dict[str, list[str]] = {}
        for name, schema in SCHEMAS.items():
            for label, where in dropped_keywords(fn, schema).items():
                merged.setdefault(label, []).extend(f"{name}{p}" for p in where)
        dropped[system] = merged
    raw["converter_drops"] = dropped
    summaries = {system: summarize(outcomes) for system, outcomes in results.items()}
    raw["summary"] = summaries
    raw["outcomes"] = {s: [asdict(o) for o in outs] for s, outs in results.items()}
    key = {SGFLOW: "sgflow", LLAMA: "llama_cpp", OUTLINES: "outlines"}
    for system in (SGFLOW, LLAMA, OUTLINES):
        summary = summaries.get(system)
        report.add(
            f"{key[system]}_validity",
            summary["validity"] if summary else None,
            TARGETS.get(f"{key[system]}_validity"),
        )
    ours = summaries.get(SGFLOW)
    for peer in (LLAMA, OUTLINES):
        theirs = summaries.get(peer)
        for metric, label in (("tokens_per_s", "tps"), ("valid_per_min", "valid_per_min")):
            mine = ours.get(metric) if ours else None
            other = theirs.get(metric) if theirs else None
            ratio = mine / other if mine is not None and other else None
            report.add(f"{label}_vs_{key[peer]}", ratio)
    report.tables["systems"] = [
        {
            "system": system,
            "valid": f"{s['valid']}/{s['docs']}",
            "validity": s["validity"],
            "tokens": s["completion_tokens"],
            "wall_s": s["wall_s"],
            "tok/s": s["tokens_per_s"],
            "valid/min": s["valid_per_min"],
            "setup_s": raw["setup_s"].get(system),
        }
        for system, s in summaries.items()
    ]
    report.tables["documents"] = [
        {
            "doc": i,
            "schema": results[SGFLOW][i].schema if SGFLOW in results else "",
            **{system: _cell(outs[i]) for system, outs in results.items() if i < len(outs)},
        }
        for i in range(max((len(v) for v in results.values()), default=0))
    ]
    for system, outcomes in results.items():
        line = explain_failures(system, outcomes, dropped.get(system), max_tokens)
        if line:
            report.notes.append(line)
    repaired = [o for o in results.get(SGFLOW, []) if o.attempts > 1]
    if repaired:
        fixed = "; ".join(f"doc {o.doc}: {', '.join(o.repaired[:2])}" for o in repaired)
        report.notes.append(
            f"sgflow repaired {len(repaired)} document(s) after validation ({fixed})"
        )
    for system, labels in dropped.items():
        if labels:
            report.notes.append(
                f"{system}'s grammar converter drops (same output with or without): "
                + ", ".join(f"{k} ({len(v)}x)" for k, v in sorted(labels.items()))
            )
    if outlines_missing:
        report.notes.append(f"outlines unavailable: {outlines_missing}")
    report.notes.append(
        "tokens/s = completion tokens (sgflow: all attempts, repairs included) / summed "
        "per-document wall time; setup (engine start, model load, Outlines index) excluded"
    )
    return report


def _cell(o: Outcome) -> str:
    if o.valid:
        return "ok" + (f" ({o.attempts} att.)" if o.attempts > 1 else "")
    return ",".join(sorted({f["keyword"] for f in o.failures}))
