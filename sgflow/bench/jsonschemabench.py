"""The JSONSchemaBench sample in ``shared/eval/jsonschemabench``: loading, sampling, checking.

The sample (1,928 real-world schemas in 10 subsets, described in the data's README) is
listed by ``MANIFEST.tsv``: ``subset``, ``file`` (``schemas/<subset>/<file>``), ``bytes`` and
the ``with-tests`` twin (``-`` when there is none). Shared by ``sgflow bench grammars``
(compile times) and ``sgflow bench coverage`` (declared/empirical coverage).

:class:`CheckPool` runs :func:`sgflow.grammars.check` in a child process, so that a
schema whose compilation runs past the limit can be abandoned without leaving an
xgrammar thread to compete for this machine's two cores: the child is killed and a
fresh one started.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self, TypeVar

__all__ = [
    "SUBSETS",
    "BenchSchema",
    "CheckOutcome",
    "CheckPool",
    "Worker",
    "check_once",
    "data_dir",
    "evenly_spaced",
    "load_manifest",
    "measure_check",
    "per_subset",
    "sample_per_subset",
    "warm_validation",
    "with_tests_results",
]

# The paper's order (Table 1): roughly by growing complexity within the GitHub subsets.
SUBSETS = (
    "Glaiveai2K",
    "Github_trivial",
    "Github_easy",
    "Snowplow",
    "Github_medium",
    "Kubernetes",
    "WashingtonPost",
    "Github_hard",
    "JsonSchemaStore",
    "Github_ultra",
)

T = TypeVar("T")


def data_dir() -> Path:
    """``$SGFLOW_JSONSCHEMABENCH``, else ``shared/eval/jsonschemabench`` inside the checkout,
    beside it (``../shared``, where the workplace keeps it) or at ``/work/shared`` (the same
    place seen from a clone elsewhere, as CI makes)."""
    env = os.environ.get("SGFLOW_JSONSCHEMABENCH")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    for base in (root / "shared", root.parent / "shared", Path("/work/shared")):
        candidate = base / "eval" / "jsonschemabench"
        if (candidate / "MANIFEST.tsv").exists():
            return candidate
    raise FileNotFoundError(
        "JSONSchemaBench sample not found in ./shared or ../shared; set SGFLOW_JSONSCHEMABENCH"
    )


@dataclass(frozen=True)
class BenchSchema:
    """One schema of the sample; ``tests_path`` is its ``with-tests`` twin, if any."""

    subset: str
    file: str
    bytes: int
    path: Path
    tests_path: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.subset}/{self.file}"

    def load(self) -> Any:
        return json.loads(self.path.read_text(encoding="utf-8"))

    def load_tests(self) -> dict[str, Any] | None:
        """``{"schema", "tests": [{"valid", "data", …}]}`` or None when there are none."""
        if self.tests_path is None:
            return None
        data = json.loads(self.tests_path.read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        return data


def load_manifest(root: Path | None = None) -> list[BenchSchema]:
    """Every schema of the sample, in manifest order."""
    root = root or data_dir()
    items = []
    lines = (root / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        subset, file, size, tests = line.split("\t")
        items.append(
            BenchSchema(
                subset=subset,
                file=file,
                bytes=int(size),
                path=root / "schemas" / subset / file,
                tests_path=None if tests == "-" else root / tests,
            )
        )
    return items


def per_subset(items: Iterable[BenchSchema]) -> dict[str, list[BenchSchema]]:
    """Items grouped by subset, subsets in :data:`SUBSETS` order, files sorted by name."""
    groups: dict[str, list[BenchSchema]] = {name: [] for name in SUBSETS}
    for item in items:
        groups.setdefault(item.subset, []).append(item)
    return {k: sorted(v, key=lambda s: s.file) for k, v in groups.items() if v}


def evenly_spaced(items: Sequence[T], k: int) -> list[T]:
    """``k`` picks spread over ``items`` (``index = floor(i * n / k)``), all of them if fewer:
    the sampling rule of the data set itself, so a quick run sees every part of a subset."""
    n = len(items)
    if k >= n:
        return list(items)
    return [items[(i * n) // k] for i in range(k)]


def sample_per_subset(items: Iterable[BenchSchema], k: int | None) -> list[BenchSchema]:
    """``k`` evenly spaced schemas per subset (every schema when ``k`` is None)."""
    out: list[BenchSchema] = []
    for group in per_subset(items).values():
        out.extend(group if k is None else evenly_spaced(group, k))
    return out


# -- work in a child process ---------------------------------------------------------------


@dataclass
class CheckOutcome:
    """What :func:`sgflow.grammars.check` said about one spec, and how long it took.

    ``status``: ``ok`` (declared), ``rejected`` (a static or compile error, ``codes``),
    ``timeout`` (``grammar.compile_timeout``, or past the hard deadline: the child was
    killed) or ``crashed`` (an exception escaped the checker: a bug, never a pass).
    ``cold_ms`` is the first check after the caches were cleared, ``build_ms`` the xgrammar
    build inside it (the rest is static checks); ``cached_ms`` the second, identical
    request; ``cached_grammar_ms`` the grammar cache alone; ``rebuild_ms`` a second xgrammar
    build bypassing sgflow's caches.
    """

    key: str
    status: str
    codes: list[str] = field(default_factory=list)
    message: str = ""
    cold_ms: float | None = None
    cached_ms: float | None = None
    cached_grammar_ms: float | None = None
    build_ms: float | None = None
    rebuild_ms: float | None = None

    @property
    def declared(self) -> bool:
        return self.status == "ok"

    @property
    def rebuild_vs_first_build(self) -> float | None:
        """A second xgrammar build of the same content ÷ the first (inside the cold check)."""
        if self.rebuild_ms is None or not self.build_ms:
            return None
        return self.rebuild_ms / self.build_ms


def _spec(kind: str, payload: Any) -> Any:
    from sgflow.grammars import JsonSchema, Named

    if kind == "named":
        return Named(payload)
    if kind == "schema_file":
        return JsonSchema(json.loads(Path(payload).read_text(encoding="utf-8")))
    return JsonSchema(payload)


def measure_check(kind: str, payload: Any, rebuild: bool) -> dict[str, Any]:
    """Cold check, cached check, the grammar cache alone and, with ``rebuild``, a second
    xgrammar build that bypasses sgflow's caches: ``rebuild_ms / build_ms`` near 1 shows
    that xgrammar keeps nothing between builds, i.e. that the cold check was cold."""
    from sgflow.grammars import check, clear_cache, get_limits
    from sgflow.grammars import compiler as compiler_module
    from sgflow.grammars.check import resolve

    spec = _spec(kind, payload)
    limits = get_limits()
    build = compiler_module.build_grammar
    builds: list[float] = []

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            builds.append((time.perf_counter() - t) * 1000)

    clear_cache()
    compiler_module.build_grammar = timed_build
    try:
        t0 = time.perf_counter()
        errors = check(spec)
        t1 = time.perf_counter()
    finally:
        compiler_module.build_grammar = build
    again = check(spec)
    t2 = time.perf_counter()
    codes = sorted({e.code for e in errors})
    out: dict[str, Any] = {
        "status": "ok" if not errors else "rejected",
        "codes": codes,
        "message": errors[0].message[:300] if errors else "",
        "cold_ms": (t1 - t0) * 1000,
        "cached_ms": (t2 - t1) * 1000,
        "build_ms": builds[0] if builds else None,
    }
    if codes != sorted({e.code for e in again}):
        out["status"] = "crashed"
        out["message"] = f"the second check disagreed: {codes} then {[e.code for e in again]}"
    if errors:
        return out
    concrete = resolve(spec)
    t3 = time.perf_counter()
    compiler_module.cached_grammar(
        concrete, layout=limits.layout, timeout_s=limits.compile_timeout_s
    )
    out["cached_grammar_ms"] = (time.perf_counter() - t3) * 1000
    if rebuild:
        t4 = time.perf_counter()
        build(concrete, layout=limits.layout)
        out["rebuild_ms"] = (time.perf_counter() - t4) * 1000
    return out


def check_once(kind: str, payload: Any) -> dict[str, Any]:
    """One :func:`sgflow.grammars.check`: is the spec declared?"""
    from sgflow.grammars import check

    t0 = time.perf_counter()
    errors = check(_spec(kind, payload))
    return {
        "status": "ok" if not errors else "rejected",
        "codes": sorted({e.code for e in errors}),
        "message": errors[0].message[:300] if errors else "",
        "cold_ms": (time.perf_counter() - t0) * 1000,
    }


def _child(conn: Connection) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # xgrammar warns on stderr for every allOf/oneOf it approximates
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        name, args = job
        try:
            conn.send(("ok", globals()[name](*args)))
        except Exception as exc:  # reported to the parent, never a pass
            conn.send(("crashed", f"{type(exc).__name__}: {exc}"[:300]))


class Worker:
    """A child process that runs this module's functions one call at a time under a
    deadline; a call past it kills the child (a fresh one starts on the next call).

    xgrammar builds and Python regexes cannot be interrupted, and sgflow's own compile
    timeout leaves the build running in a daemon thread: in a child, a runaway schema
    costs its deadline and nothing more, and never competes with the next measurement.
    """

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self.kills = 0

    def _start(self) -> Connection:
        if self._conn is None:
            parent, child = self._ctx.Pipe()
            self._proc = self._ctx.Process(target=_child, args=(child,), daemon=True)
            self._proc.start()
            child.close()
            self._conn = parent
        return self._conn

    def call(self, name: str, *args: Any, deadline_s: float | None = None) -> tuple[str, Any]:
        """``("ok", result)``, ``("timeout", None)`` or ``("crashed", message)``."""
        conn = self._start()
        conn.send((name, args))
        if not conn.poll(self.deadline_s if deadline_s is None else deadline_s):
            self.kill()
            return "timeout", None
        try:
            status, result = conn.recv()
        except EOFError:
            self.kill()
            return "crashed", "the child process died"
        return status, result

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
            self.kills += 1
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CheckPool(Worker):
    """:func:`measure_check` in a :class:`Worker`. The hard deadline is twice sgflow's
    ``compile_timeout_s`` plus 5 s (static checks come before the compile); a child that
    reported ``grammar.compile_timeout`` is replaced too, as its xgrammar thread runs on."""

    def __init__(self, deadline_s: float | None = None) -> None:
        from sgflow.grammars import get_limits

        self.compile_timeout_s = get_limits().compile_timeout_s
        super().__init__(deadline_s or 2 * self.compile_timeout_s + 5.0)
        self._warm = False

    def check(
        self, key: str, kind: str, payload: Any, *, rebuild: bool = False, measure: bool = True
    ) -> CheckOutcome:
        """``kind``: ``schema_file`` (a path), ``json_schema`` (a dict) or ``named``;
        ``measure=False`` checks once (no cached request, no timings but ``cold_ms``)."""
        if not self._warm:  # start-up, imports and first-use costs, outside any deadline
            self.call("measure_check", "json_schema", {"type": "integer"}, True, deadline_s=300)
            self._warm = True
        if measure:
            status, result = self.call("measure_check", kind, payload, rebuild)
        else:
            status, result = self.call("check_once", kind, payload)
        if status == "timeout":
            self._warm = False
            return CheckOutcome(key, "timeout", ["bench.deadline"], f"> {self.deadline_s:g}s")
        if status != "ok":
            return CheckOutcome(key, "crashed", [], str(result))
        outcome = CheckOutcome(key, **result)
        if "grammar.compile_timeout" in outcome.codes:
            outcome.status = "timeout"
            self.kill()
            self._warm = False
        return outcome


def warm_validation() -> None:
    """Import the executor (and with it sglang) before any deadline counts."""
    import sgflow.execution.executor  # noqa: F401


def with_tests_results(path: str) -> list[dict[str, Any]]:
    """Each test instance of a ``with-tests`` file through sgflow's validation path:
    ``{"valid": expected, "accepted": bool | None, "error": first problem or exception}``
    (``accepted`` is None when validation raised)."""
    from sgflow.grammars.validation import validation_errors

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    schema = data["schema"]
    out = []
    for test in data.get("tests", []):
        row: dict[str, Any] = {"valid": bool(test["valid"]), "description": test.get("description")}
        try:
            problems = validation_errors(test["data"], schema, limit=1)
        except Exception as exc:  # e.g. an unresolvable remote $ref
            row.update(accepted=None, error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            row.update(
                accepted=not problems,
                error=f"{problems[0]['pointer']}: {problems[0]['message']}" if problems else "",
            )
        out.append(row)
    return out
