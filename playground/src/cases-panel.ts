// The Test cases panel: cases of the program in the editor, kept in this browser, run all
// at once as one batch (POST /v1/batches) into a pass/fail table.

import { call, callLines, describeError as message } from "./api";
import { type Expectation, type TestCase, describe, loadCases, saveCases, verdict } from "./cases";
import { byId, h, pretty, setStatus } from "./dom";
import { currentInputs, currentReport, inputsError, programName } from "./program";
import type { Subject } from "./snippets";
import type { BatchRow, BatchView, CheckReport } from "./types";

const FINAL_BATCH = new Set(["completed", "failed", "expired", "cancelled"]);

/** Shows the Test cases tab (the page sets it). */
export const show = { tab: (): void => undefined };

// -- test cases -------------------------------------------------------------------------------------

const testError = byId("test-error");
const batchStatus = byId("batch-status");

export function renderCases(): void {
  const body = byId("tests-body");
  body.replaceChildren();
  const name = programName();
  const cases = name ? loadCases(name) : [];
  if (!cases.length) {
    body.append(h("tr", {}, h("td", { colspan: 4, class: "note" }, "No test cases yet: add one below, or use “Save as test case” on the Program tab.")));
  }
  cases.forEach((c, i) => {
    const remove = h("button", { type: "button", class: "quiet", "aria-label": `Delete test case ${c.name}` }, "Delete");
    remove.addEventListener("click", () => {
      const all = loadCases(name as string);
      all.splice(i, 1);
      saveCases(name as string, all);
      renderCases();
    });
    body.append(
      h(
        "tr",
        { "data-case": c.name },
        h("th", { scope: "row" }, c.name),
        h("td", {}, h("code", { class: "clip" }, JSON.stringify(c.inputs))),
        h("td", {}, describe(c)),
        h("td", {}, remove),
      ),
    );
  });
}

byId("add-test").addEventListener("click", () => {
  try {
    byId<HTMLTextAreaElement>("test-inputs").value = pretty(currentInputs());
  } catch (e) {
    inputsError.textContent = message(e);
    return;
  }
  show.tab();
  byId("test-name").focus();
});

const testKind = byId<HTMLSelectElement>("test-kind");
const testExpected = byId<HTMLTextAreaElement>("test-expected");
function expectationChanged(): void {
  testExpected.disabled = testKind.value === "valid";
  testExpected.placeholder = testKind.value === "valid" ? "not needed: the run must only succeed" : '{"topic": "billing"}';
}
testKind.addEventListener("change", expectationChanged);
expectationChanged();

byId("test-form").addEventListener("submit", (e) => {
  e.preventDefault();
  testError.textContent = "";
  const name = programName();
  if (!name) {
    testError.textContent = "the program has no name yet: check it on the Program tab first";
    return;
  }
  const caseName = byId<HTMLInputElement>("test-name").value.trim();
  const kind = byId<HTMLSelectElement>("test-kind").value as Expectation;
  let inputs: unknown;
  let expected: unknown;
  try {
    inputs = JSON.parse(byId<HTMLTextAreaElement>("test-inputs").value || "{}");
    if (!inputs || typeof inputs !== "object" || Array.isArray(inputs)) throw new Error("the inputs must be a JSON object");
    if (kind !== "valid") expected = JSON.parse(byId<HTMLTextAreaElement>("test-expected").value);
  } catch (err) {
    testError.textContent = message(err);
    return;
  }
  const cases = loadCases(name);
  if (cases.some((c) => c.name === caseName)) {
    testError.textContent = `there is a test case named ${caseName} already`;
    return;
  }
  const added: TestCase = { name: caseName, inputs: inputs as Record<string, unknown>, kind };
  if (kind !== "valid") added.expected = expected;
  cases.push(added);
  saveCases(name, cases);
  (e.target as HTMLFormElement).reset();
  expectationChanged();
  renderCases();
  setStatus(batchStatus, `added ${caseName}`, "ok");
});

export function batchSubject(report: CheckReport): Subject {
  const cases = loadCases(programName() ?? "");
  return {
    kind: "batch",
    program: report.program,
    ref: report.ref,
    lines: cases.map((c) => ({ custom_id: c.name, inputs: c.inputs })),
  };
}

let batching = false;

export async function runAll(): Promise<void> {
  if (batching) return;
  const table = byId("results-table");
  const body = byId("results-body");
  batching = true;
  try {
    const report = await currentReport();
    if (!report.ok || !report.program) throw new Error(`fix the program first (${report.errors.length} problem(s))`);
    const cases = loadCases(programName() ?? "");
    if (!cases.length) throw new Error("add a test case first");
    setStatus(batchStatus, "submitting the batch…", "busy");
    const subject = batchSubject(report) as Extract<Subject, { kind: "batch" }>;
    let batch = await call<BatchView>("POST", "/v1/batches", { program: subject.program, inputs: subject.lines });
    while (!FINAL_BATCH.has(batch.status)) {
      const n = batch.request_counts;
      setStatus(batchStatus, `batch ${batch.status}: ${n.completed + n.failed} of ${n.total} done`, "busy");
      await new Promise((resolve) => window.setTimeout(resolve, 500));
      batch = await call<BatchView>("GET", `/v1/batches/${batch.id}`);
    }
    const rows = await callLines<BatchRow>(`/v1/batches/${batch.id}/results`);
    const byName = new Map(rows.map((r) => [r.custom_id, r]));
    body.replaceChildren();
    let passed = 0;
    for (const c of cases) {
      const row = byName.get(c.name);
      const v = verdict(c, row);
      if (v.pass) passed++;
      body.append(
        h(
          "tr",
          { "data-case": c.name, "data-result": v.pass ? "pass" : "fail" },
          h("th", { scope: "row" }, c.name),
          h("td", {}, row ? h("code", {}, row.run_id.slice(0, 8)) : "–"),
          h("td", {}, h("span", { class: `badge ${v.pass ? "pass" : "fail"}` }, v.pass ? "pass" : "fail")),
          h("td", { class: "why" }, v.why),
        ),
      );
    }
    table.hidden = false;
    setStatus(batchStatus, `${passed} of ${cases.length} passed (batch ${batch.id.slice(0, 8)}…)`, passed === cases.length ? "ok" : "error");
  } catch (e) {
    setStatus(batchStatus, message(e), "error");
  } finally {
    batching = false;
  }
}

byId("run-all").addEventListener("click", () => void runAll());

