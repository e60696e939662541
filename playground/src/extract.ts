// The Extract panel: a JSON Schema and a pasted text or a document (a file split into
// chunks) through POST /v1/extract, into the object and its run's trace.

import { ApiError, call, describeError as message } from "./api";
import { byId, pretty, setStatus } from "./dom";
import { InvalidInputs } from "./form";
import type { ExtractBody } from "./snippets";
import { follow } from "./sse";
import { renderResult } from "./trace";
import type { RunView } from "./types";

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

export function extractBody(): ExtractBody {
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

export async function extract(): Promise<void> {
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

