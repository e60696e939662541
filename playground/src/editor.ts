// The program editor: CodeMirror 6 with YAML, the checker's problems as lint diagnostics
// (underlined, in the gutter), the shared prefix highlighted and each JSON Schema keyword
// marked with who enforces it.

import { EditorState, Prec, RangeSetBuilder, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration,
  type DecorationSet,
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { yaml } from "@codemirror/lang-yaml";
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from "@codemirror/language";
import { type Diagnostic, forceLinting, lintGutter, linter } from "@codemirror/lint";
import type { CheckReport } from "./types";

/** A character offset counted in code points (Python's) as an index into a JS string. */
export function utf16Offset(text: string, codePoints: number): number {
  if (!/[\uD800-\uDFFF]/.test(text)) return Math.min(codePoints, text.length);
  let index = 0;
  for (let n = 0; n < codePoints && index < text.length; n++) {
    const c = text.charCodeAt(index);
    index += c >= 0xd800 && c <= 0xdbff && index + 1 < text.length ? 2 : 1;
  }
  return index;
}

interface Mark {
  from: number;
  to: number;
  className: string;
  title?: string;
}

const setMarks = StateEffect.define<Mark[]>();
const recheck = StateEffect.define<null>();

const marks = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(value, tr) {
    let next = value.map(tr.changes);
    for (const effect of tr.effects) {
      if (!effect.is(setMarks)) continue;
      const builder = new RangeSetBuilder<Decoration>();
      const sorted = [...effect.value].sort((a, b) => a.from - b.from || a.to - b.to);
      for (const m of sorted) {
        if (m.to <= m.from) continue;
        const attributes: Record<string, string> = {};
        if (m.title) attributes.title = m.title;
        builder.add(m.from, m.to, Decoration.mark({ class: m.className, attributes }));
      }
      next = builder.finish();
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});

export interface EditorHooks {
  /** Checks the text; the report, or throws (an ApiError, or no key). */
  check: (text: string) => Promise<CheckReport>;
  /** Told every finished check: the report (or the error) and the text it was for. */
  onChecked: (text: string, report: CheckReport | null, error: unknown) => void;
  /** Ctrl/Cmd+Enter. */
  onRun: () => void;
}

/** The diagnostics an error answer of the check gives (a refused source has a line). */
export type ErrorDiagnostic = { line: number | null; message: string };

function lineRange(state: EditorState, line: number | null | undefined): { from: number; to: number } {
  const n = Math.min(Math.max(line ?? 1, 1), state.doc.lines);
  const l = state.doc.line(n);
  const indent = l.text.length - l.text.trimStart().length;
  return { from: l.from + Math.min(indent, l.length), to: l.to };
}

/** A span of the source, as editor positions: from its start to the end of its first line. */
function spanRange(
  state: EditorState,
  text: string,
  span: number[] | null | undefined,
  line: number | null | undefined,
): { from: number; to: number } {
  if (!span) return lineRange(state, line);
  const from = Math.min(utf16Offset(text, span[0]), state.doc.length);
  const end = Math.min(utf16Offset(text, span[1]), state.doc.length);
  const lineEnd = state.doc.lineAt(from).to;
  return { from, to: Math.max(from, Math.min(end, lineEnd)) };
}

export function diagnosticsOf(state: EditorState, text: string, report: CheckReport): Diagnostic[] {
  return report.errors.map((e) => {
    const { from, to } = spanRange(state, text, e.span, e.line);
    return {
      from,
      to: to > from ? to : Math.min(from + 1, state.doc.length),
      severity: "error",
      source: e.code,
      message: e.hint ? `${e.message}\nhint: ${e.hint}` : e.message,
    };
  });
}

function marksOf(text: string, report: CheckReport): Mark[] {
  const out: Mark[] = [];
  for (const s of report.prefix?.spans ?? []) {
    out.push({
      from: utf16Offset(text, s.span[0]),
      to: utf16Offset(text, s.span[1]),
      className: "cm-shared-prefix",
      title: "shared prefix: every run starts with this text (cached once)",
    });
  }
  for (const section of report.explain) {
    for (const row of section.keywords) {
      if (!row.span || !row.field.includes("/json_schema")) continue;
      const from = utf16Offset(text, row.span[0]);
      const keyText = text.slice(from, from + row.keyword.length + 2).replace(/^["']/, "");
      if (!keyText.startsWith(row.keyword)) continue;
      const start = text[from] === '"' || text[from] === "'" ? from + 1 : from;
      out.push({
        from: start,
        to: start + row.keyword.length,
        className: `cm-kw cm-kw-${row.status}`,
        title: `${row.keyword}: ${row.status}${row.note ? ` (${row.note})` : ""}`,
      });
    }
  }
  return out;
}

/** The nonce the page was served with: the editor's <style> element must carry it. */
function cspNonce(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="sgflow-csp-nonce"]')?.content ?? "";
}

export function createEditor(parent: HTMLElement, doc: string, hooks: EditorHooks): EditorView {
  const source = async (view: EditorView): Promise<Diagnostic[]> => {
    const text = view.state.doc.toString();
    let report: CheckReport | null = null;
    let error: unknown = null;
    try {
      report = await hooks.check(text);
    } catch (e) {
      error = e;
    }
    if (view.state.doc.toString() !== text) return []; // stale: the linter runs again
    hooks.onChecked(text, report, error);
    view.dispatch({ effects: setMarks.of(report ? marksOf(text, report) : []) });
    if (report) return diagnosticsOf(view.state, text, report);
    const line = (error as { body?: { line?: number | null } } | null)?.body?.line;
    const describe = (error as { describe?: () => string } | null)?.describe;
    if (line !== undefined && describe) {
      return [{ ...lineRange(view.state, line), severity: "error", message: describe.call(error) }];
    }
    return [];
  };

  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        Prec.highest(
          keymap.of([
            {
              key: "Mod-Enter",
              run: () => {
                hooks.onRun();
                return true;
              },
            },
          ]),
        ),
        lineNumbers(),
        highlightActiveLineGutter(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        highlightActiveLine(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        yaml(),
        EditorState.tabSize.of(2),
        EditorView.cspNonce.of(cspNonce()),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": "Program (YAML)" }),
        linter(source, {
          delay: 350,
          needsRefresh: (update) => update.transactions.some((tr) => tr.effects.some((e) => e.is(recheck))),
        }),
        lintGutter(),
        marks,
      ],
    }),
  });
}

/** Checks the text again now (the key changed, say), though it did not change. */
export function checkAgain(view: EditorView): void {
  view.dispatch({ effects: recheck.of(null) });
  forceLinting(view);
}

export function replaceDoc(view: EditorView, text: string): void {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
  forceLinting(view);
}

export function goToLine(view: EditorView, line: number | null | undefined): void {
  const { from } = lineRange(view.state, line);
  view.dispatch({ selection: { anchor: from }, scrollIntoView: true });
  view.focus();
}
