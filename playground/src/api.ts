// The sgflow API as the playground calls it: the key from this browser's storage, sent as
// `Authorization: Bearer`; every error answer becomes an ApiError with the API's fields.

const KEY_STORAGE = "sgflow.playground.key";

/** The API's root URL: the playground is served at <root>/playground/. */
export const apiRoot = new URL("..", window.location.href);

/** The root without its trailing slash, as snippets name it. */
export function apiBase(): string {
  return apiRoot.href.replace(/\/$/, "");
}

export function getKey(): string {
  return window.localStorage.getItem(KEY_STORAGE) ?? "";
}

export function setKey(key: string): void {
  if (key) window.localStorage.setItem(KEY_STORAGE, key);
  else window.localStorage.removeItem(KEY_STORAGE);
}

export interface ErrorBody {
  code: string;
  message: string;
  field?: string | null;
  hint?: string | null;
  line?: number | null;
  errors?: Array<Record<string, unknown>>;
  [key: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }

  /** "code at field: message (hint)" */
  describe(): string {
    const where = this.body.field ? ` at ${this.body.field}` : "";
    const hint = this.body.hint ? ` — ${this.body.hint}` : "";
    return `${this.body.code}${where}: ${this.body.message}${hint}`;
  }
}

export function url(path: string): string {
  return new URL(path.replace(/^\//, ""), apiRoot).href;
}

export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const key = getKey();
  if (!key) {
    throw new ApiError(401, {
      code: "auth.missing",
      message: "paste an API key at the top of the page",
      hint: "sgflow up prints one; or sgflow keys create --tenant NAME",
    });
  }
  return { Authorization: `Bearer ${key}`, ...extra };
}

async function errorOf(response: Response): Promise<ApiError> {
  let body: ErrorBody = { code: `http.${response.status}`, message: response.statusText };
  try {
    const parsed = (await response.json()) as { error?: ErrorBody };
    if (parsed && typeof parsed === "object" && parsed.error) body = parsed.error;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, body);
}

/** A JSON request; resolves to the answer's JSON (any 2xx), rejects with ApiError. */
export async function call<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const init: RequestInit = { method, headers: authHeaders({ Accept: "application/json" }), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const response = await fetch(url(path), init);
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/** A JSONL answer (batch results) as a list of objects. */
export async function callLines<T = unknown>(path: string): Promise<T[]> {
  const response = await fetch(url(path), { headers: authHeaders() });
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as T);
}

export { errorOf };

/** An error as one line for the page: the API's code, field, message and hint. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  if (error instanceof Error) return error.message;
  return String(error);
}
