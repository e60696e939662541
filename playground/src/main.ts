// The playground page: the key, the tabs, "copy as" and the keyboard; each panel is a
// module of its own (program, extract, cases-panel).

import "./style.css";
import { describeError as message, getKey, setKey } from "./api";
import { batchSubject, renderCases, runAll, show } from "./cases-panel";
import { byId, h } from "./dom";
import { extract, extractBody } from "./extract";
import { currentInputs, currentReport, hooks, recheck, run } from "./program";
import { type Flavour, type Subject, snippet } from "./snippets";

// -- API key -----------------------------------------------------------------------------------

const keyInput = byId<HTMLInputElement>("api-key");
keyInput.value = getKey();

function keyChanged(): void {
  setKey(keyInput.value.trim());
  recheck();
}
keyInput.addEventListener("change", keyChanged);
byId("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  keyChanged();
});
byId("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  keyChanged();
  keyInput.focus();
});

// -- tabs --------------------------------------------------------------------------------------

const tabs = Array.from(document.querySelectorAll<HTMLButtonElement>('[role="tab"]'));

function selectTab(tab: HTMLButtonElement, focus = false): void {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    byId(t.getAttribute("aria-controls") as string).hidden = !selected;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-tests") renderCases();
}

function activePanel(): string {
  return tabs.find((t) => t.getAttribute("aria-selected") === "true")?.id ?? "tab-program";
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(tab);
    const next =
      e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length]
      : e.key === "ArrowLeft" ? tabs[(i - 1 + tabs.length) % tabs.length]
      : e.key === "Home" ? tabs[0]
      : e.key === "End" ? tabs[tabs.length - 1]
      : null;
    if (next) {
      e.preventDefault();
      selectTab(next, true);
    }
  });
}

show.tab = () => selectTab(byId<HTMLButtonElement>("tab-tests"));
hooks.onRun = () => void primaryAction();

// -- copy as ----------------------------------------------------------------------------------------

async function subjectOf(panel: string): Promise<Subject> {
  if (panel === "panel-extract") return { kind: "extract", body: extractBody() };
  const report = await currentReport();
  if (!report.ok || !report.program) throw new Error("fix the program first");
  if (panel === "panel-tests") return batchSubject(report);
  return { kind: "run", program: report.program, ref: report.ref, inputs: currentInputs() };
}

for (const group of document.querySelectorAll<HTMLElement>(".copy")) {
  const status = h("span", { class: "note", role: "status", "aria-live": "polite" });
  const pre = h("pre", { class: "text snippet", tabindex: "0", "aria-label": "Copied code", hidden: true });
  group.append(status);
  group.after(pre);
  for (const button of group.querySelectorAll<HTMLButtonElement>("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const panel = group.closest("section")?.id ?? "panel-program";
      try {
        const code = snippet(button.dataset.copy as Flavour, await subjectOf(panel));
        pre.textContent = code;
        pre.hidden = false;
        pre.dataset.flavour = button.dataset.copy;
        try {
          await navigator.clipboard.writeText(code);
          status.textContent = `${button.textContent} copied`;
        } catch {
          status.textContent = "select the code below and copy it";
        }
      } catch (e) {
        status.textContent = message(e);
      }
    });
  }
}

// -- keyboard ---------------------------------------------------------------------------------------

function primaryAction(): Promise<void> {
  const panel = activePanel();
  if (panel === "tab-extract") return extract();
  if (panel === "tab-tests") return runAll();
  return run();
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.defaultPrevented) {
    e.preventDefault();
    void primaryAction();
  }
});
