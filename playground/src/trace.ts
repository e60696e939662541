// The step timeline streamed from a run's events, and the per-step trace of a finished run.

import { h, pretty } from "./dom";
import type { RunView, StepTrace } from "./types";

type Data = Record<string, unknown>;

function pointer(p: unknown): string {
  return typeof p === "string" && p ? p : "/";
}

function problemsList(errors: unknown): HTMLUListElement {
  const list = h("ul", { class: "problems" });
  for (const e of Array.isArray(errors) ? errors : []) {
    const row = e as { pointer?: string; message?: string };
    list.append(h("li", {}, h("code", {}, pointer(row.pointer)), " ", row.message ?? ""));
  }
  return list;
}

function stepMeta(t: StepTrace): string {
  const parts = [
    `${t.completion_tokens} tok`,
    `prompt ${t.prompt_tokens}`,
    `cached ${t.cached_tokens}`,
    `${t.latency_s.toFixed(2)} s`,
  ];
  if (t.attempts > 1) parts.push(`${t.attempts} attempts`);
  return parts.join(" · ");
}

export class Timeline {
  private rows = new Map<string, HTMLLIElement>();

  constructor(private readonly root: HTMLOListElement) {}

  reset(): void {
    this.rows.clear();
    this.root.replaceChildren();
  }

  note(text: string, kind = ""): void {
    this.root.append(h("li", { class: `run-event ${kind}` }, text));
  }

  private row(step: string, branch: unknown): HTMLLIElement {
    const key = `${step}#${branch ?? ""}`;
    let row = this.rows.get(key);
    if (!row) {
      const name = branch === null || branch === undefined ? step : `${step} [${String(branch)}]`;
      row = h(
        "li",
        { class: "step", "data-step": step, "data-status": "running" },
        h("div", { class: "step-head" }, h("strong", {}, name), h("span", { class: "badge" }, "running"), h("span", { class: "meta" })),
      );
      this.rows.set(key, row);
      this.root.append(row);
    }
    return row;
  }

  private rowOf(step: string, branch: unknown): HTMLLIElement {
    if (branch !== undefined) return this.row(step, branch);
    for (const [key, row] of this.rows) if (key.startsWith(`${step}#`)) return row;
    return this.row(step, null);
  }

  private attempt(row: HTMLLIElement, n: number): HTMLElement {
    let block = row.querySelector<HTMLElement>(`.attempt[data-attempt="${n}"]`);
    if (!block) {
      block = h(
        "div",
        { class: "attempt", "data-attempt": n },
        h("span", { class: "attempt-label" }, `attempt ${n}`),
        h("pre", { class: "delta" }),
      );
      row.append(block);
    }
    return block;
  }

  /** One event of the run's stream. */
  event(kind: string, data: Data): void {
    const step = typeof data.step === "string" ? data.step : "";
    switch (kind) {
      case "step.started":
        this.row(step, data.branch);
        break;
      case "step.delta": {
        const block = this.attempt(this.row(step, data.branch), Number(data.attempt ?? 1));
        const pre = block.querySelector("pre") as HTMLPreElement;
        pre.textContent = (pre.textContent ?? "") + String(data.text ?? "");
        break;
      }
      case "step.invalid": {
        const row = this.rowOf(step, data.branch);
        const block = this.attempt(row, Number(data.attempt ?? 1));
        block.classList.add("invalid");
        block.append(h("p", { class: "invalid-note" }, "invalid (validation errors by JSON pointer):"), problemsList(data.errors));
        row.dataset.status = "invalid";
        (row.querySelector(".badge") as HTMLElement).textContent = "invalid";
        break;
      }
      case "step.finished": {
        const row = this.row(step, data.branch);
        const trace = data.trace as StepTrace | undefined;
        const status = data.skipped ? "skipped" : (trace?.status ?? "ok");
        row.dataset.status = status;
        (row.querySelector(".badge") as HTMLElement).textContent = status;
        if (trace) (row.querySelector(".meta") as HTMLElement).textContent = stepMeta(trace);
        if (!row.querySelector(".attempt") && !data.skipped) {
          const text = typeof data.text === "string" ? data.text : pretty(data.value);
          const block = this.attempt(row, trace?.attempts || 1);
          (block.querySelector("pre") as HTMLPreElement).textContent = text;
        }
        break;
      }
      case "run.finished": {
        // a step that ended the run has no step.finished: it ends with the run
        const status = String(data.status ?? "finished");
        const ended = status === "succeeded" ? "ok" : status === "cancelled" ? "cancelled" : "failed";
        for (const row of this.rows.values()) {
          if (row.dataset.status !== "running" && row.dataset.status !== "invalid") continue;
          row.dataset.status = ended;
          (row.querySelector(".badge") as HTMLElement).textContent = ended;
        }
        this.note(`run ${status}`, `run-${status}`);
        break;
      }
      default:
        if (kind.startsWith("run.")) this.note(kind.slice(4).replace(/_/g, " "));
    }
  }
}

/** The output (or the error) and the per-step trace table of a finished run. */
export function renderResult(output: HTMLElement, traceRoot: HTMLElement, run: RunView): void {
  if (run.status === "succeeded") {
    output.textContent = pretty(run.output);
    output.dataset.kind = "ok";
  } else {
    const e = run.error;
    output.textContent = e ? `${e.code}${e.field ? ` at ${e.field}` : ""}: ${e.message}` : `run ${run.status}`;
    if (e?.details) output.textContent += `\n${pretty(e.details)}`;
    output.dataset.kind = "error";
  }
  renderTrace(traceRoot, run);
}

export function renderTrace(root: HTMLElement, run: RunView): void {
  root.replaceChildren();
  const trace = run.trace ?? [];
  if (!trace.length) return;
  const body = h("tbody");
  for (const t of trace) {
    const name = t.branch === null || t.branch === undefined ? t.step : `${t.step} [${t.branch}]`;
    body.append(
      h(
        "tr",
        { "data-step": t.step },
        h("th", { scope: "row" }, name),
        h("td", {}, t.status),
        h("td", {}, h("code", {}, t.constraint)),
        h("td", { class: "num" }, String(t.prompt_tokens)),
        h("td", { class: "num" }, String(t.cached_tokens)),
        h("td", { class: "num" }, String(t.completion_tokens)),
        h("td", { class: "num" }, `${t.latency_s.toFixed(2)} s`),
        h("td", { class: "num" }, String(t.attempts)),
      ),
    );
    const details = h("details", { class: "prompt" }, h("summary", {}, `Prompt of ${name}`));
    details.append(h("pre", { class: "text" }, t.prompt || "(this step adds no turn of its own)"));
    if (t.validation_errors?.length) {
      details.append(h("p", {}, "Validation errors of the last attempt:"), problemsList(t.validation_errors));
    }
    body.append(h("tr", { class: "prompt-row" }, h("td", { colspan: 8 }, details)));
  }
  const usage = run.usage;
  root.append(
    h("h2", {}, "Trace"),
    h(
      "table",
      { class: "grid trace" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["Step", "Status", "Constraint", "Prompt tok", "Cached", "Out tok", "Latency", "Attempts"].map((c) =>
            h("th", { scope: "col" }, c),
          ),
        ),
      ),
      body,
    ),
  );
  if (usage) {
    root.append(
      h(
        "p",
        { class: "note" },
        `Run ${run.id}: prompt ${usage.prompt_tokens ?? 0} tokens (${usage.cached_tokens ?? 0} cached), completion ${usage.completion_tokens ?? 0}.` +
          (run.trace_id ? ` Trace ${run.trace_id}.` : ""),
      ),
    );
  }
}
