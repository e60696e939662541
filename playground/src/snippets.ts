// "Copy as curl / Python client / OpenAI SDK" for what is on screen. The key is never
// written into a snippet: each reads it from $SGFLOW_API_KEY.

import { apiBase } from "./api";

export type Flavour = "curl" | "python" | "openai";

export type Subject =
  | { kind: "run"; program: unknown; ref: string | null; inputs: Record<string, unknown> }
  | { kind: "extract"; body: ExtractBody }
  | { kind: "batch"; program: unknown; ref: string | null; lines: Array<{ custom_id: string; inputs: unknown }> };

export interface ExtractBody {
  schema: unknown;
  text?: string;
  document?: string[];
  instructions?: string;
}

/** A value as a Python literal (JSON with True/False/None), indented like `json.dumps`. */
export function py(value: unknown, indent = 0): string {
  const pad = "    ".repeat(indent + 1);
  const end = "    ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "None";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => pad + py(v, indent + 1)).join(",\n")},\n${end}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${py(v, indent + 1)}`).join(",\n")},\n${end}}`;
}

/** A string as one shell word in single quotes. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

const AUTH = `-H "Authorization: Bearer $SGFLOW_API_KEY"`;
const JSON_TYPE = `-H 'Content-Type: application/json'`;

function curl(subject: Subject): string {
  const api = apiBase();
  const head = `# export SGFLOW_API_KEY=sgf_…\nAPI=${api}\n`;
  if (subject.kind === "run") {
    const body = JSON.stringify({ program: subject.program, inputs: subject.inputs });
    return (
      head +
      `RUN_ID=$(curl -s $API/v1/runs ${AUTH} ${JSON_TYPE} \\\n  -d ${shellQuote(body)} |\n` +
      `  python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')\n` +
      `curl -sN $API/v1/runs/$RUN_ID/events ${AUTH}   # the step timeline (SSE)\n` +
      `curl -s $API/v1/runs/$RUN_ID ${AUTH}           # output and per-step trace\n`
    );
  }
  if (subject.kind === "extract") {
    return head + `curl -s $API/v1/extract ${AUTH} ${JSON_TYPE} \\\n  -d ${shellQuote(JSON.stringify(subject.body))}\n`;
  }
  const body = JSON.stringify({ program: subject.program, inputs: subject.lines });
  return (
    head +
    `BATCH_ID=$(curl -s $API/v1/batches ${AUTH} ${JSON_TYPE} \\\n  -d ${shellQuote(body)} |\n` +
    `  python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')\n` +
    `curl -s $API/v1/batches/$BATCH_ID ${AUTH}          # status and request_counts\n` +
    `curl -s $API/v1/batches/$BATCH_ID/results ${AUTH}  # JSONL, one line per test case\n`
  );
}

function python(subject: Subject): string {
  const open = `from sgflow.client import Client\n\n`;
  const client = `with Client(${JSON.stringify(apiBase())}) as api:  # the key: $SGFLOW_API_KEY\n`;
  if (subject.kind === "run") {
    return (
      open +
      `program = ${py(subject.program)}\ninputs = ${py(subject.inputs)}\n\n` +
      client +
      `    run = api.submit(program, inputs)\n` +
      `    for event in api.events(run["id"]):  # resumes with Last-Event-ID if the stream breaks\n` +
      `        print(event.kind, event.data.get("step"), event.data.get("text", ""))\n` +
      `    done = api.wait(run["id"])\n` +
      `    print(done["output"])\n` +
      `    print(done["trace"])\n`
    );
  }
  if (subject.kind === "extract") {
    const b = subject.body;
    const text = b.text ?? (b.document ?? []).join("\n\n");
    const instructions = b.instructions ? `, instructions=${py(b.instructions)}` : "";
    return (
      open +
      `schema = ${py(b.schema)}\ntext = ${py(text)}\n\n` +
      client +
      `    result = api.extract(schema, text${instructions})\n` +
      `    print(result["object"])\n` +
      `    print(result["run"]["trace"])\n`
    );
  }
  return (
    `import time\n\n` +
    open +
    `program = ${py(subject.program)}\nlines = ${py(subject.lines)}\n\n` +
    client +
    `    batch = api.create_batch(program, lines)\n` +
    `    while api.get_batch(batch["id"])["status"] not in ("completed", "failed", "expired", "cancelled"):\n` +
    `        time.sleep(1)\n` +
    `    for row in api.batch_results(batch["id"]):\n` +
    `        print(row["custom_id"], row["status"], row.get("output") or row.get("error"))\n`
  );
}

function openai(subject: Subject): string {
  const open =
    `import json\nimport os\n\nfrom openai import OpenAI\n\n` +
    `client = OpenAI(base_url=${JSON.stringify(`${apiBase()}/v1`)}, api_key=os.environ["SGFLOW_API_KEY"])\n`;
  const stored = (ref: string | null) =>
    `# a stored program is the model program:NAME@VERSION: store this one first (Save program)\n` +
    `model = ${JSON.stringify(`program:${ref ?? "NAME@VERSION"}`)}\n`;
  if (subject.kind === "run") {
    return (
      open +
      stored(subject.ref) +
      `inputs = ${py(subject.inputs)}\n\n` +
      `completion = client.chat.completions.create(\n` +
      `    model=model,\n` +
      `    messages=[{"role": "user", "content": json.dumps(inputs)}],  # the inputs, as JSON\n` +
      `)\n` +
      `print(completion.choices[0].message.content)  # the program's validated output, as JSON\n`
    );
  }
  if (subject.kind === "extract") {
    const b = subject.body;
    const text = b.text ?? (b.document ?? []).join("\n\n");
    const prompt = b.instructions ? `${b.instructions}\n\n${text}` : text;
    return (
      open +
      `model = client.models.list().data[0].id  # the engine's model\n` +
      `schema = ${py(b.schema)}\n\n` +
      `completion = client.chat.completions.create(\n` +
      `    model=model,\n` +
      `    messages=[{"role": "user", "content": ${py(prompt, 1)}}],\n` +
      `    response_format={"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema}},\n` +
      `    temperature=0,\n` +
      `)\n` +
      `print(json.loads(completion.choices[0].message.content))  # generated under the schema\n`
    );
  }
  return (
    open +
    stored(subject.ref) +
    `lines = ${py(subject.lines)}\n\n` +
    `for line in lines:\n` +
    `    completion = client.chat.completions.create(\n` +
    `        model=model, messages=[{"role": "user", "content": json.dumps(line["inputs"])}]\n` +
    `    )\n` +
    `    print(line["custom_id"], completion.choices[0].message.content)\n`
  );
}

export function snippet(flavour: Flavour, subject: Subject): string {
  if (flavour === "curl") return curl(subject);
  if (flavour === "python") return python(subject);
  return openai(subject);
}
