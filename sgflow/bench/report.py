"""What every ``sgflow bench`` scenario returns: ratios against targets, raw figures, a table.

A scenario measures its subject and a baseline in the same run (these machines are noisy)
and reports ratios. :class:`Report` prints the table a person reads and writes the JSON a
script reads (``<out>/<scenario>.json``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Target", "machine", "percentiles", "progress"]


@dataclass(frozen=True)
class Target:
    """``value op limit``, e.g. ``Target(">=", 3.0)``; ``None`` limit: reported, not judged."""

    op: str
    limit: float | None

    def met(self, value: float | None) -> bool | None:
        if self.limit is None or value is None:
            return None
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def __str__(self) -> str:
        return "—" if self.limit is None else f"{self.op} {self.limit:g}"


@dataclass
class Report:
    scenario: str
    ratios: dict[str, float | None] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0
    required: list[str] = field(default_factory=list)  # metrics whose miss fails the run

    def add(
        self,
        name: str,
        value: float | None,
        target: Target | None = None,
        *,
        required: bool = False,
    ) -> None:
        """Record ``value``; with ``required``, missing ``target`` makes ``sgflow bench``
        exit non-zero (a property, such as "no run lost", rather than a ratio to watch)."""
        self.ratios[name] = None if value is None else round(float(value), 4)
        if target is not None:
            self.targets[name] = target
        if required:
            self.required.append(name)

    def missed_required(self) -> list[str]:
        """The required metrics whose target is not met (a missing value is a miss)."""
        return [
            name
            for name in self.required
            if name not in self.targets or self.targets[name].met(self.ratios.get(name)) is not True
        ]

    def results(self) -> list[dict[str, Any]]:
        rows = []
        for name, value in self.ratios.items():
            target = self.targets.get(name)
            met = target.met(value) if target else None
            rows.append(
                {
                    "metric": name,
                    "value": value,
                    "target": str(target) if target else "—",
                    "met": met,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seconds": round(self.seconds, 1),
            "results": self.results(),
            "ratios": self.ratios,
            "tables": self.tables,
            "raw": self.raw,
            "notes": self.notes,
            "machine": machine(),
        }

    def print(self) -> None:
        print(f"\n== {self.scenario} ({self.seconds:.0f} s) ==")
        for title, rows in self.tables.items():
            print_rows(title, rows)
        print(f"{'metric':<40} {'value':>10} {'target':>9}  result")
        for row in self.results():
            value = "n/a" if row["value"] is None else f"{row['value']:.4g}"
            verdict = {True: "pass", False: "MISS", None: ""}[row["met"]]
            print(f"{row['metric']:<40} {value:>10} {row['target']:>9}  {verdict}")
        for note in self.notes:
            print(f"  note: {note}")

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / f"{self.scenario}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    """A small fixed-width table of dict rows (same keys in every row)."""
    if not rows:
        return
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"-- {title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max of ``values`` (None when empty)."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1], "n": len(ordered)}


def progress(scenario: str, message: str) -> None:
    print(f"[{scenario}] {message}", flush=True)


def machine() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    return {
        "platform": platform.platform(),
        "cpu": names[0] if names else platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
