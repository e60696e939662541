// An inputs form generated from a program's `inputs` JSON Schema: one labelled control per
// property (text, text area, number, checkbox, a list for an enum, JSON for the rest).

import { h } from "./dom";
import type { JsonSchema } from "./types";

type Kind = "string" | "text" | "number" | "integer" | "boolean" | "enum" | "json";

interface Control {
  name: string;
  kind: Kind;
  required: boolean;
  el: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
  options?: unknown[];
}

export class InvalidInputs extends Error {}

function kindOf(schema: Record<string, unknown>): Kind {
  if (Array.isArray(schema.enum)) return "enum";
  const type = schema.type;
  if (type === "string") {
    const max = typeof schema.maxLength === "number" ? schema.maxLength : Infinity;
    return max <= 120 ? "string" : "text";
  }
  if (type === "integer" || type === "number" || type === "boolean") return type;
  return "json";
}

let formCount = 0;

export class InputsForm {
  private controls: Control[] = [];
  private schemaKey = "";
  readonly id = `inputs-${++formCount}`;

  constructor(private readonly root: HTMLElement) {}

  /** True when the schema is an object with properties (a form can be built). */
  get usable(): boolean {
    return this.controls.length > 0;
  }

  /** Rebuilds the form when the schema changed, keeping the values it can. */
  setSchema(schema: JsonSchema | null): void {
    const key = JSON.stringify(schema ?? null);
    if (key === this.schemaKey) return;
    let kept: Record<string, unknown> = {};
    try {
      kept = this.values();
    } catch {
      // a half-typed JSON field: start afresh
    }
    this.schemaKey = key;
    this.controls = [];
    this.root.replaceChildren();
    const props = schema && typeof schema.properties === "object" ? schema.properties : null;
    if (!props || Array.isArray(props) || !Object.keys(props as object).length) {
      this.root.append(h("p", { class: "note" }, "This program's inputs have no properties to fill in: use Raw JSON."));
      return;
    }
    const required = new Set(Array.isArray(schema?.required) ? (schema?.required as string[]) : []);
    for (const [name, raw] of Object.entries(props as Record<string, unknown>)) {
      const sub = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
      this.add(name, sub, required.has(name));
    }
    this.setValues(kept);
  }

  private add(name: string, schema: Record<string, unknown>, required: boolean): void {
    const kind = kindOf(schema);
    const id = `${this.id}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const help = typeof schema.description === "string" ? schema.description : "";
    const helpId = help ? `${id}-help` : undefined;
    const common = { id, name, "aria-describedby": helpId, "aria-required": required ? "true" : undefined };
    let el: Control["el"];
    let options: unknown[] | undefined;
    if (kind === "enum") {
      options = schema.enum as unknown[];
      el = h("select", common, required ? null : h("option", { value: "" }, "(none)"));
      options.forEach((option, i) =>
        el.append(h("option", { value: String(i) }, typeof option === "string" ? option : JSON.stringify(option))),
      );
    } else if (kind === "boolean") {
      el = h("input", { ...common, type: "checkbox" });
    } else if (kind === "number" || kind === "integer") {
      el = h("input", {
        ...common,
        type: "number",
        step: kind === "integer" ? "1" : "any",
        min: typeof schema.minimum === "number" ? schema.minimum : undefined,
        max: typeof schema.maximum === "number" ? schema.maximum : undefined,
      });
    } else if (kind === "string") {
      el = h("input", { ...common, type: "text", maxlength: schema.maxLength as number | undefined });
    } else {
      el = h("textarea", {
        ...common,
        rows: kind === "json" ? 3 : 4,
        class: kind === "json" ? "code" : undefined,
        spellcheck: kind === "json" ? "false" : undefined,
      });
    }
    const label = h(
      "label",
      { for: id },
      name,
      required ? h("span", { class: "req", title: "required" }, " *") : null,
      kind === "json" ? h("span", { class: "note" }, " (JSON)") : null,
    );
    const field = h("div", { class: `field field-${kind}` }, label, el, help ? h("small", { id: helpId }, help) : null);
    this.root.append(field);
    this.controls.push({ name, kind, required, el, options });
  }

  /** The inputs object; throws InvalidInputs naming the field whose JSON does not parse. */
  values(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const c of this.controls) {
      const el = c.el;
      if (c.kind === "boolean") {
        out[c.name] = (el as HTMLInputElement).checked;
        continue;
      }
      const raw = el.value;
      if (raw === "" && c.kind !== "string" && c.kind !== "text") continue;
      if (raw === "" && !c.required) continue;
      if (c.kind === "enum") out[c.name] = c.options?.[Number(raw)];
      else if (c.kind === "number" || c.kind === "integer") out[c.name] = Number(raw);
      else if (c.kind === "json") {
        try {
          out[c.name] = JSON.parse(raw);
        } catch {
          throw new InvalidInputs(`${c.name}: not JSON`);
        }
      } else out[c.name] = raw;
    }
    return out;
  }

  setValues(values: Record<string, unknown>): void {
    for (const c of this.controls) {
      const value = values[c.name];
      const el = c.el;
      if (c.kind === "boolean") (el as HTMLInputElement).checked = value === true;
      else if (value === undefined) el.value = "";
      else if (c.kind === "enum") {
        const i = (c.options ?? []).findIndex((o) => JSON.stringify(o) === JSON.stringify(value));
        el.value = i < 0 ? "" : String(i);
      } else if (c.kind === "json") el.value = JSON.stringify(value, null, 2);
      else el.value = String(value);
    }
  }

  focusFirst(): void {
    this.controls[0]?.el.focus();
  }
}
