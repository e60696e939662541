// The Program panel: the YAML editor checked as you type, the inputs form built from the
// program's inputs schema, and runs followed over their event stream.

import type { EditorView } from "@codemirror/view";
import { ApiError, call, describeError as message } from "./api";
import { byId, h, pretty, setStatus } from "./dom";
import { checkAgain, createEditor, goToLine, replaceDoc } from "./editor";
import { EXAMPLES } from "./examples";
import { InputsForm, InvalidInputs } from "./form";
import { follow } from "./sse";
import { Timeline, renderResult } from "./trace";
import type { CheckReport, RunView } from "./types";

const SOURCE_STORAGE = "sgflow.playground.source";

/** What the page hooks in: Ctrl/Cmd+Enter in the editor. */
export const hooks = { onRun: (): void => undefined };

/** Checks the editor's text again (the key changed). */
export function recheck(): void {
  checkAgain(view);
}

// -- program: inputs -------------------------------------------------------------------------------

const form = new InputsForm(byId("inputs-form"));
const rawToggle = byId<HTMLInputElement>("raw-inputs");
const rawInputs = byId<HTMLTextAreaElement>("inputs-json");
export const inputsError = byId("inputs-error");

export function currentInputs(): Record<string, unknown> {
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
export async function currentReport(): Promise<CheckReport> {
  const text = view.state.doc.toString();
  if (lastCheck && lastCheck.text === text) return lastCheck.report;
  const report = await check(text);
  checked(text, report, null);
  return report;
}

export function programName(): string | null {
  const name = lastCheck?.report.program?.program ?? lastCheck?.report.ref?.split("@")[0];
  return typeof name === "string" ? name : null;
}

const exampleSelect = byId<HTMLSelectElement>("example");
EXAMPLES.forEach((ex, i) => exampleSelect.append(h("option", { value: String(i) }, ex.name)));
exampleSelect.addEventListener("change", () => {
  replaceDoc(view, EXAMPLES[Number(exampleSelect.value)].source);
});

const view: EditorView = createEditor(byId("editor"), window.localStorage.getItem(SOURCE_STORAGE) ?? EXAMPLES[0].source, {
  check,
  onChecked: (text, report, error) => {
    window.localStorage.setItem(SOURCE_STORAGE, text);
    checked(text, report, error);
  },
  onRun: () => hooks.onRun(),
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

export async function run(): Promise<void> {
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

