// Saved test cases: inputs and an expectation per case, kept in this browser's storage per
// program name, and the verdict of a batch result line on each.

import type { BatchRow } from "./types";

export type Expectation = "valid" | "contains" | "equals";

export interface TestCase {
  name: string;
  inputs: Record<string, unknown>;
  kind: Expectation;
  expected?: unknown;
}

const PREFIX = "sgflow.playground.cases.";

export function loadCases(program: string): TestCase[] {
  try {
    const saved = JSON.parse(window.localStorage.getItem(PREFIX + program) ?? "[]");
    return Array.isArray(saved) ? (saved as TestCase[]) : [];
  } catch {
    return [];
  }
}

export function saveCases(program: string, cases: TestCase[]): void {
  window.localStorage.setItem(PREFIX + program, JSON.stringify(cases));
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value as object).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The first place where `actual` does not contain `expected` (a JSON pointer), or null. */
export function missing(expected: unknown, actual: unknown, at = ""): string | null {
  if (expected && typeof expected === "object" && !Array.isArray(expected)) {
    if (!actual || typeof actual !== "object" || Array.isArray(actual)) return at || "/";
    for (const [k, v] of Object.entries(expected as Record<string, unknown>)) {
      const where = `${at}/${k.replace(/~/g, "~0").replace(/\//g, "~1")}`;
      if (!(k in (actual as object))) return where;
      const inner = missing(v, (actual as Record<string, unknown>)[k], where);
      if (inner !== null) return inner;
    }
    return null;
  }
  return canonical(expected) === canonical(actual) ? null : at || "/";
}

export function describe(c: TestCase): string {
  if (c.kind === "valid") return "valid output";
  return `${c.kind === "equals" ? "equals" : "contains"} ${JSON.stringify(c.expected)}`;
}

/** Whether a batch result line meets the case's expectation, and why not. */
export function verdict(c: TestCase, row: BatchRow | undefined): { pass: boolean; why: string } {
  if (!row) return { pass: false, why: "no result line" };
  if (row.status !== "succeeded") {
    const e = row.error;
    return { pass: false, why: e ? `${e.code}: ${e.message}` : `run ${row.status}` };
  }
  if (c.kind === "valid") return { pass: true, why: "the output is valid" };
  if (c.kind === "equals") {
    const same = canonical(c.expected) === canonical(row.output);
    return { pass: same, why: same ? "equal" : `got ${JSON.stringify(row.output)}` };
  }
  const where = missing(c.expected, row.output);
  return where === null
    ? { pass: true, why: "contains the expected fields" }
    : { pass: false, why: `differs at ${where}: got ${JSON.stringify(row.output)}` };
}
