// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read and parsed here (the WHATWG event-stream format: `id`, `event`, `data`
// fields, comments, any line ending) and resumed with Last-Event-ID when it breaks.

import { ApiError, authHeaders, errorOf, url } from "./api";

export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

/** Turns chunks of an event stream into events; keeps what a chunk cuts in half. */
export class SseParser {
  private buffer = "";
  private lastId = "";
  private type = "";
  private data: string[] = [];

  feed(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      if (c === "\r" && i + 1 === this.buffer.length) break; // maybe the first half of \r\n
      const line = this.buffer.slice(start, i);
      if (c === "\r" && this.buffer[i + 1] === "\n") i++;
      start = i + 1;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      const data = this.data;
      const type = this.type || "message";
      this.data = [];
      this.type = "";
      return data.length ? { id: this.lastId, event: type, data: data.join("\n") } : null;
    }
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    return null;
  }
}

export interface FollowOptions {
  signal?: AbortSignal;
  /** Resume after this event id. */
  lastEventId?: string;
  /** Reconnections in a row without an event before giving up (default 6). */
  retries?: number;
  /** Told each time the stream is opened again. */
  onReconnect?: (lastEventId: string) => void;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      window.clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

/**
 * Reads the event stream at `path` until `onEvent` returns true (the last event), resuming
 * with Last-Event-ID when the connection breaks or ends early. A 4xx answer is not retried.
 */
export async function follow(
  path: string,
  onEvent: (event: SseEvent) => boolean,
  options: FollowOptions = {},
): Promise<void> {
  const { signal, retries = 6 } = options;
  let lastId = options.lastEventId ?? "";
  let failures = 0;
  for (let opened = 0; ; opened++) {
    if (opened > 0) options.onReconnect?.(lastId);
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(url(path), { headers, signal, cache: "no-store" });
      if (!response.ok) throw await errorOf(response);
      if (!response.body) throw new Error("the event stream has no body");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.feed(value)) {
          if (event.id) lastId = event.id;
          failures = 0;
          if (onEvent(event)) {
            await reader.cancel().catch(() => undefined);
            return;
          }
        }
      }
      failures++; // the server ended the stream before the last event: resume
    } catch (error) {
      if (signal?.aborted) throw error;
      if (error instanceof ApiError && error.status < 500) throw error;
      failures++;
      if (failures > retries) throw error;
    }
    if (failures > retries) throw new Error("the event stream keeps ending early");
    await pause(Math.min(250 * 2 ** failures, 4000), signal);
  }
}
