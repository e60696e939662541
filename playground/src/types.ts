// The shapes of the API answers the playground reads (see /docs).

export interface CheckProblem {
  code: string;
  field: string;
  line: number | null;
  span: number[] | null;
  message: string;
  hint: string | null;
}

export interface KeywordRow {
  pointer: string;
  keyword: string;
  status: "enforced" | "validated" | "rejected" | "ignored";
  note: string;
  hint?: string | null;
  field: string;
  line: number | null;
  span: number[] | null;
}

export interface CheckReport {
  ok: boolean;
  errors: CheckProblem[];
  ref: string | null;
  program: Record<string, unknown> | null;
  inputs_schema: JsonSchema | null;
  prefix: {
    shared_chars: number;
    breaks_at: string | null;
    static_chars_after: number;
    text: string;
    spans: Array<{ field: string; line: number; end_line: number; span: number[] }>;
  } | null;
  explain: Array<{ where: string; step: string; field: string; keywords: KeywordRow[] }>;
}

export type JsonSchema = Record<string, unknown>;

export interface StepTrace {
  step: string;
  status: string;
  branch: number | null;
  constraint: string;
  prompt_chars: number;
  prompt?: string;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  latency_s: number;
  finish_reason: unknown;
  attempts: number;
  validation_errors: Array<{ pointer: string; message: string }>;
}

export interface RunView {
  id: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  program: string;
  output: unknown;
  steps: Record<string, unknown> | null;
  trace: StepTrace[] | null;
  usage: Record<string, number> | null;
  trace_id?: string | null;
  error: { code: string; message: string; field?: string | null; details?: unknown } | null;
  events_url: string;
  status_url: string;
}

export interface BatchView {
  id: string;
  status: string;
  request_counts: { total: number; completed: number; failed: number };
}

export interface BatchRow {
  custom_id: string;
  run_id: string;
  status: string;
  output?: unknown;
  error?: { code: string; message: string };
}
