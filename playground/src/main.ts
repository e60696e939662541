// The playground page: wires the editor, the inputs form, runs, extraction, test cases and
// the "copy as" snippets to the API.

import "./style.css";
import type { EditorView } from "@codemirror/view";
import { ApiError, call, callLines, getKey, setKey } from "./api";
import { type Expectation, type TestCase, describe, loadCases, saveCases, verdict } from "./cases";
import { byId, h, pretty, setStatus } from "./dom";
import { checkAgain, createEditor, goToLine, replaceDoc } from "./editor";
import { EXAMPLES } from "./examples";
import { InputsForm, InvalidInputs } from "./form";
import { type ExtractBody, type Flavour, type Subject, snippet } from "./snippets";
import { follow } from "./sse";
import { Timeline, renderResult } from "./trace";
import type { BatchRow, BatchView, CheckReport, RunView } from "./types";

const SOURCE_STORAGE = "sgflow.playground.source";
const FINAL_BATCH = new Set(["completed", "failed", "expired", "cancelled"]);

function message(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  if (error instanceof Error) return error.message;
  return String(error);
}

// -- API key -----------------------------------------------------------------------------------

const keyInput = byId<HTMLInputElement>("api-key");
keyInput.value = getKey();
let view: EditorView;

function keyChanged(): void {
  setKey(keyInput.value.trim());
  if (view) checkAgain(view);
}
keyInput.addEventListener("change", keyChanged);
byId("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  keyChanged();
});
byId("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  keyChanged();
  keyInput.focus();
});

// -- tabs --------------------------------------------------------------------------------------

const tabs = Array.from(document.querySelectorAll<HTMLButtonElement>('[role="tab"]'));

function selectTab(tab: HTMLButtonElement, focus = false): void {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    byId(t.getAttribute("aria-controls") as string).hidden = !selected;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-tests") renderCases();
}

function activePanel(): string {
  return tabs.find((t) => t.getAttribute("aria-selected") === "true")?.id ?? "tab-program";
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(tab);
    const next =
      e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length]
      : e.key === "ArrowLeft" ? tabs[(i - 1 + tabs.length) % tabs.length]
      : e.key === "Home" ? tabs[0]
      : e.key === "End" ? tabs[tabs.length - 1]
      : null;
    if (next) {
      e.preventDefault();
      selectTab(next, true);
    }
  });
}

// -- program: inputs -------------------------------------------------------------------------------

const form = new InputsForm(byId("inputs-form"));
const rawToggle = byId<HTMLInputElement>("raw-inputs");
const rawInputs = byId<HTMLTextAreaElement>("inputs-json");
const inputsError = byId("inputs-error");

function currentInputs(): Record<string, unknown> {
  inputsError.textContent = "";
  if (!rawToggle.checked) return form.values();
  let value: unknown;
  try {
    value = JSON.parse(rawInputs.value || "{}");
  } catch (e) {
    throw new InvalidInputs(`the inputs are not JSON: ${(e as Error).message}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new InvalidInputs("the inputs must be a JSON object");
  return value as Record<string, unknown>;
}

// -- program: editor and check -------------------------------------------------------------------

let lastCheck: { text: string; report: CheckReport } | null = null;
const checkStatus = byId("check-status");

async function check(text: string): Promise<CheckReport> {
  return call<CheckReport>("POST", "/v1/programs/check", { source: text });
}

function renderDiagnostics(report: CheckReport | null, error: unknown): void {
  const list = byId<HTMLUListElement>("diagnostics");
  list.replaceChildren();
  const problems = report?.errors ?? [];
  byId("problem-count").textContent = String(problems.length + (error && !report ? 1 : 0));
  for (const p of problems) {
    const jump = h("button", { type: "button", class: "link", "aria-label": `Go to line ${p.line ?? 1}` }, `line ${p.line ?? "?"}`);
    jump.addEventListener("click", () => goToLine(view, p.line));
    list.append(
      h(
        "li",
        { "data-code": p.code },
        jump,
        " ",
        h("code", { class: "code-name" }, p.code),
        " ",
        h("span", {}, p.message),
        p.hint ? h("small", { class: "hint" }, `hint: ${p.hint}`) : null,
      ),
    );
  }
  if (error && !report && !(error instanceof ApiError && error.body.code === "auth.missing")) {
    list.append(h("li", { "data-code": (error as ApiError).body?.code ?? "error" }, message(error)));
  }
}

function renderExplain(report: CheckReport | null): void {
  const root = byId("explain");
  root.replaceChildren();
  const sections = report?.explain ?? [];
  if (!sections.length) {
    root.append(h("p", { class: "note" }, report?.ok ? "No step is generated under a JSON Schema." : "Shown once the program checks."));
    return;
  }
  for (const section of sections) {
    const body = h("tbody");
    for (const row of section.keywords) {
      const jump = h("button", { type: "button", class: "link" }, row.keyword);
      jump.addEventListener("click", () => goToLine(view, row.line));
      body.append(
        h(
          "tr",
          { "data-status": row.status },
          h("td", {}, jump),
          h("td", {}, h("code", {}, row.pointer || "/")),
          h("td", {}, h("span", { class: `badge status-${row.status}` }, row.status)),
          h("td", { class: "note" }, row.note || ""),
        ),
      );
    }
    root.append(
      h("h3", {}, section.where),
      h(
        "table",
        { class: "grid explain" },
        h("thead", {}, h("tr", {}, ...["Keyword", "Where", "Who checks it", "Why"].map((c) => h("th", { scope: "col" }, c)))),
        body,
      ),
    );
  }
}

function renderPrefix(report: CheckReport | null): void {
  const prefix = report?.prefix;
  byId("prefix-count").textContent = prefix
    ? `${prefix.shared_chars} characters${prefix.breaks_at ? `, up to the first input in ${prefix.breaks_at}` : ""}`
    : "";
  byId("prefix-text").textContent = prefix?.text ?? "";
}

function checked(text: string, report: CheckReport | null, error: unknown): void {
  if (report) lastCheck = { text, report };
  renderDiagnostics(report, error);
  renderExplain(report);
  renderPrefix(report);
  if (report) {
    form.setSchema(report.inputs_schema);
    const n = report.errors.length;
    setStatus(checkStatus, n ? `${n} problem${n > 1 ? "s" : ""}` : `✓ ${report.ref ?? "program"} checks`, n ? "error" : "ok");
  } else if (error instanceof ApiError && error.body.code === "auth.missing") {
    setStatus(checkStatus, "paste an API key to check", "error");
  } else {
    setStatus(checkStatus, message(error), "error");
  }
  byId("tests-program").textContent = programName() ?? "the program in the editor";
}

/** The report of the editor's current text: the last one, or a new check. */
async function currentReport(): Promise<CheckReport> {
  const text = view.state.doc.toString();
  if (lastCheck && lastCheck.text === text) return lastCheck.report;
  const report = await check(text);
  checked(text, report, null);
  return report;
}

function programName(): string | null {
  const name = lastCheck?.report.program?.program ?? lastCheck?.report.ref?.split("@")[0];
  return typeof name === "string" ? name : null;
}

const exampleSelect = byId<HTMLSelectElement>("example");
EXAMPLES.forEach((ex, i) => exampleSelect.append(h("option", { value: String(i) }, ex.name)));
exampleSelect.addEventListener("change", () => {
  replaceDoc(view, EXAMPLES[Number(exampleSelect.value)].source);
});

view = createEditor(byId("editor"), window.localStorage.getItem(SOURCE_STORAGE) ?? EXAMPLES[0].source, {
  check,
  onChecked: (text, report, error) => {
    window.localStorage.setItem(SOURCE_STORAGE, text);
    checked(text, report, error);
  },
  onRun: () => void primaryAction(),
});

byId("save-program").addEventListener("click", async () => {
  try {
    const stored = await call<{ ref: string }>("POST", "/v1/programs", { source: view.state.doc.toString() });
    setStatus(checkStatus, `stored ${stored.ref}: the model program:${stored.ref}`, "ok");
  } catch (e) {
    setStatus(checkStatus, message(e), "error");
  }
});

rawToggle.addEventListener("change", () => {
  try {
    if (rawToggle.checked) {
      rawInputs.value = pretty(form.values());
    } else {
      const values = JSON.parse(rawInputs.value || "{}");
      form.setValues(values && typeof values === "object" ? values : {});
    }
    inputsError.textContent = "";
  } catch (e) {
    rawToggle.checked = !rawToggle.checked;
    inputsError.textContent = e instanceof InvalidInputs ? e.message : `not JSON: ${(e as Error).message}`;
  }
  rawInputs.hidden = !rawToggle.checked;
  byId("inputs-form").hidden = rawToggle.checked;
});

// -- program: run ------------------------------------------------------------------------------------

const timeline = new Timeline(byId<HTMLOListElement>("timeline"));
const runStatus = byId("run-status");
const runButton = byId<HTMLButtonElement>("run");
const cancelButton = byId<HTMLButtonElement>("cancel");
let current: { id: string; abort: AbortController } | null = null;

async function run(): Promise<void> {
  if (current) return;
  let report: CheckReport;
  let inputs: Record<string, unknown>;
  try {
    report = await currentReport();
    if (!report.ok || !report.program) {
      setStatus(runStatus, `fix the program first (${report.errors.length} problem(s))`, "error");
      return;
    }
    inputs = currentInputs();
  } catch (e) {
    if (e instanceof InvalidInputs) inputsError.textContent = e.message;
    setStatus(runStatus, message(e), "error");
    return;
  }
  const abort = new AbortController();
  const output = byId("output");
  output.textContent = "";
  delete output.dataset.kind;
  byId("run-trace").replaceChildren();
  timeline.reset();
  runButton.disabled = true;
  setStatus(runStatus, "submitting…", "busy");
  try {
    const created = await call<RunView>("POST", "/v1/runs", { program: report.program, inputs }, abort.signal);
    current = { id: created.id, abort };
    cancelButton.disabled = false;
    setStatus(runStatus, `run ${created.id.slice(0, 8)}… ${created.status}`, "busy");
    await follow(
      created.events_url,
      (event) => {
        const data = JSON.parse(event.data) as Record<string, unknown>;
        timeline.event(event.event, data);
        if (event.event.startsWith("run.")) setStatus(runStatus, `run ${created.id.slice(0, 8)}… ${event.event.slice(4)}`, "busy");
        return event.event === "run.finished";
      },
      { signal: abort.signal, onReconnect: () => timeline.note("stream resumed") },
    );
    const final = await call<RunView>("GET", created.status_url, undefined, abort.signal);
    renderResult(output, byId("run-trace"), final);
    setStatus(runStatus, `run ${final.status}`, final.status === "succeeded" ? "ok" : "error");
  } catch (e) {
    setStatus(runStatus, message(e), "error");
  } finally {
    current = null;
    runButton.disabled = false;
    cancelButton.disabled = true;
  }
}

runButton.addEventListener("click", () => void run());
cancelButton.addEventListener("click", async () => {
  if (!current) return;
  try {
    await call("POST", `/v1/runs/${current.id}/cancel`);
    setStatus(runStatus, "cancelling…", "busy");
  } catch (e) {
    setStatus(runStatus, message(e), "error");
  }
});

// -- extract ------------------------------------------------------------------------------------------

const schemaBox = byId<HTMLTextAreaElement>("extract-schema");
schemaBox.value = pretty({
  type: "object",
  properties: {
    company: { type: "string", maxLength: 60 },
    founded: { type: "integer", minimum: 1800, maximum: 2030 },
  },
  required: ["company", "founded"],
});
byId<HTMLTextAreaElement>("extract-text").value = "Northwind Analytics was founded in 2009 in Seattle.";
const extractStatus = byId("extract-status");

function extractFrom(): "text" | "document" {
  const checkedRadio = document.querySelector<HTMLInputElement>('input[name="extract-from"]:checked');
  return checkedRadio?.value === "document" ? "document" : "text";
}

for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="extract-from"]')) {
  radio.addEventListener("change", () => {
    const doc = extractFrom() === "document";
    byId("extract-doc-box").hidden = !doc;
    byId("extract-text-box").hidden = doc;
  });
}

function chunksOf(text: string, max = 200): string[] {
  const chunks = text
    .split(/\n\s*\n/)
    .map((c) => c.trim())
    .filter(Boolean);
  const per = Math.ceil(chunks.length / max);
  const out: string[] = [];
  for (let i = 0; i < chunks.length; i += per) out.push(chunks.slice(i, i + per).join("\n\n"));
  return out;
}

byId<HTMLInputElement>("extract-file").addEventListener("change", async (e) => {
  const file = (e.target as HTMLInputElement).files?.[0];
  if (!file) return;
  byId<HTMLTextAreaElement>("extract-chunks").value = chunksOf(await file.text()).join("\n---\n");
});

function extractBody(): ExtractBody {
  let schema: unknown;
  try {
    schema = JSON.parse(schemaBox.value);
  } catch (e) {
    throw new InvalidInputs(`the schema is not JSON: ${(e as Error).message}`);
  }
  const body: ExtractBody = { schema };
  const instructions = byId<HTMLInputElement>("extract-instructions").value.trim();
  if (instructions) body.instructions = instructions;
  if (extractFrom() === "document") {
    body.document = byId<HTMLTextAreaElement>("extract-chunks")
      .value.split(/^\s*---\s*$/m)
      .map((c) => c.trim())
      .filter(Boolean);
  } else {
    body.text = byId<HTMLTextAreaElement>("extract-text").value;
  }
  return body;
}

let extracting = false;

async function extract(): Promise<void> {
  if (extracting) return;
  const output = byId("extract-output");
  const traceRoot = byId("extract-trace");
  let body: ExtractBody;
  try {
    body = extractBody();
  } catch (e) {
    setStatus(extractStatus, message(e), "error");
    return;
  }
  extracting = true;
  output.textContent = "";
  delete output.dataset.kind;
  traceRoot.replaceChildren();
  setStatus(extractStatus, "extracting…", "busy");
  try {
    const answer = await call<{ object?: unknown; run?: RunView } & Partial<RunView>>("POST", "/v1/extract", {
      ...body,
      timeout_s: 60,
    });
    let run: RunView;
    if (answer.run) {
      run = answer.run;
    } else {
      // 202: not done within timeout_s; follow the run to its end
      const pending = answer as RunView;
      await follow(pending.events_url, (event) => event.event === "run.finished");
      run = await call<RunView>("GET", pending.status_url);
    }
    renderResult(output, traceRoot, run);
    setStatus(extractStatus, run.status === "succeeded" ? "extracted" : `run ${run.status}`, run.status === "succeeded" ? "ok" : "error");
  } catch (e) {
    output.textContent = message(e);
    output.dataset.kind = "error";
    setStatus(extractStatus, e instanceof ApiError ? e.body.code : "failed", "error");
  } finally {
    extracting = false;
  }
}

byId("extract").addEventListener("click", () => void extract());

// -- test cases -------------------------------------------------------------------------------------

const testError = byId("test-error");
const batchStatus = byId("batch-status");

function renderCases(): void {
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
  selectTab(byId<HTMLButtonElement>("tab-tests"));
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

function batchSubject(report: CheckReport): Subject {
  const cases = loadCases(programName() ?? "");
  return {
    kind: "batch",
    program: report.program,
    ref: report.ref,
    lines: cases.map((c) => ({ custom_id: c.name, inputs: c.inputs })),
  };
}

let batching = false;

async function runAll(): Promise<void> {
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

// -- copy as ----------------------------------------------------------------------------------------

async function subjectOf(panel: string): Promise<Subject> {
  if (panel === "panel-extract") return { kind: "extract", body: extractBody() };
  const report = await currentReport();
  if (!report.ok || !report.program) throw new Error("fix the program first");
  if (panel === "panel-tests") return batchSubject(report);
  return { kind: "run", program: report.program, ref: report.ref, inputs: currentInputs() };
}

for (const group of document.querySelectorAll<HTMLElement>(".copy")) {
  const status = h("span", { class: "note", role: "status", "aria-live": "polite" });
  const pre = h("pre", { class: "text snippet", tabindex: "0", "aria-label": "Copied code", hidden: true });
  group.append(status);
  group.after(pre);
  for (const button of group.querySelectorAll<HTMLButtonElement>("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const panel = group.closest("section")?.id ?? "panel-program";
      try {
        const code = snippet(button.dataset.copy as Flavour, await subjectOf(panel));
        pre.textContent = code;
        pre.hidden = false;
        pre.dataset.flavour = button.dataset.copy;
        try {
          await navigator.clipboard.writeText(code);
          status.textContent = `${button.textContent} copied`;
        } catch {
          status.textContent = "select the code below and copy it";
        }
      } catch (e) {
        status.textContent = message(e);
      }
    });
  }
}

// -- keyboard ---------------------------------------------------------------------------------------

function primaryAction(): Promise<void> {
  const panel = activePanel();
  if (panel === "tab-extract") return extract();
  if (panel === "tab-tests") return runAll();
  return run();
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.defaultPrevented) {
    e.preventDefault();
    void primaryAction();
  }
});
