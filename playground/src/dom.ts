// Small DOM helpers: build elements without innerHTML (text is always text, never markup).

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | number | undefined | null>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = String(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

export function clear(el: HTMLElement): void {
  el.replaceChildren();
}

export function setStatus(el: HTMLElement, text: string, kind: "" | "ok" | "busy" | "error" = ""): void {
  el.textContent = text;
  el.dataset.kind = kind;
}

export function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? "";
}
