"""The playground in a real headless Chromium against the real service (API, Celery worker,
embedded engine with SmolLM2): load, diagnostics while editing, a streamed run, extraction,
test cases run as a batch, the copied snippets (run as they are), keyboard-only use and a
laptop's width. The model is tiny: these tests check structure, not what it writes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from playwright.sync_api import Page, Request, Route, expect

from tests.playground.conftest import Pages, shot
from tests.service.stack import Stack

# a short free-text step (its text arrives in several deltas) and a short JSON step
STREAMED = """\
program: sea-notes
version: 1
inputs:
  type: object
  properties:
    topic: {type: string, minLength: 1, maxLength: 200}
  required: [topic]
system: You write short, plain sentences.
steps:
  - id: note
    user: "Write three sentences about {{ inputs.topic }}."
    gen: {max_tokens: 48}
  - id: card
    user: Give it a title as JSON.
    gen:
      max_tokens: 40
      json_schema:
        type: object
        properties:
          title: {type: string, minLength: 2, maxLength: 30}
        required: [title]
        additionalProperties: false
output:
  value:
    note: "{{ steps.note }}"
    card: "{{ steps.card }}"
"""


def open_playground(page: Page) -> None:
    page.goto("/playground")
    expect(page).to_have_title("sgflow playground")
    expect(page.locator("#check-status")).to_have_text(re.compile(r"checks$"))


def set_program(page: Page, source: str) -> None:
    """Replace the editor's text as a user would: select all, paste. (Not Playwright's fill
    or insert_text: Chrome's editing commands leave styled spans in the editor, which the
    page's CSP refuses and CodeMirror replaces, logging a violation.)"""
    page.evaluate("text => navigator.clipboard.writeText(text)", source)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+v")
    expect(page.locator(".cm-content")).to_contain_text(source.splitlines()[0])


def assert_fits(page: Page) -> None:
    """Nothing is wider than the window: no horizontal scroll bar."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths


def output_json(page: Page, selector: str) -> Any:
    box = page.locator(selector)
    expect(box).to_have_attribute("data-kind", "ok")
    return json.loads(box.inner_text())


def test_the_page_loads_and_checks_the_example(page: Page) -> None:
    open_playground(page)
    # the checker's report is drawn: the shared prefix highlighted, keywords marked
    expect(page.locator(".cm-shared-prefix").first).to_be_visible()
    assert "support assistant" in page.locator(".cm-shared-prefix").first.inner_text()
    # the editor draws only the lines in view: go to the JSON Schema at the end
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    expect(page.locator(".cm-kw-enforced").first).to_be_visible()
    assert page.locator(".cm-kw-enforced").first.get_attribute("title") == "type: enforced"
    expect(page.locator("#problem-count")).to_have_text("0")
    # the inputs form comes from the program's inputs schema
    expect(page.get_by_label("message")).to_be_visible()
    expect(page.get_by_label("customer")).to_be_visible()
    page.locator("#explain-box summary").click()
    page.locator("#prefix-box summary").click()
    statuses = page.locator("#explain tr[data-status]")
    expect(statuses.first).to_be_visible()
    assert set(statuses.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"enforced"}
    expect(page.locator("#prefix-count")).to_contain_text("up to the first input in step `topic`")
    assert_fits(page)
    shot(page, "loaded")


def test_editing_shows_a_diagnostic_underlined_at_its_line(page: Page) -> None:
    open_playground(page)
    source = page.locator(".cm-content").inner_text()
    set_program(page, source.replace("inputs.message", "inputs.mesage"))
    problem = page.locator('#diagnostics li[data-code="template.unknown_input"]')
    expect(problem).to_contain_text("line 15")
    expect(problem).to_contain_text("`inputs.mesage` is not a property")
    expect(page.locator("#check-status")).to_have_text("1 problem")
    # underlined from the member's start to the end of its line (in pieces: the syntax
    # highlighting splits it)
    underline = page.locator(".cm-lintRange-error")
    expect(underline.first).to_be_visible()
    underlined = "".join(underline.all_inner_texts())
    assert underlined.startswith("user: ") and "inputs.mesage" in underlined, underlined
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    shot(page, "diagnostic")
    # fixing it clears the problem
    set_program(page, source)
    expect(page.locator("#check-status")).to_have_text(re.compile(r"checks$"))
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)


GROWTH = """() => {
  window.growth = {};
  new MutationObserver(() => {
    for (const row of document.querySelectorAll('#timeline li.step')) {
      const text = [...row.querySelectorAll('pre.delta')].map(p => p.textContent).join('');
      const seen = (window.growth[row.dataset.step] ??= []);
      if (seen[seen.length - 1] !== text.length) seen.push(text.length);
    }
  }).observe(document.getElementById('timeline'),
             {subtree: true, childList: true, characterData: true});
}"""


def test_a_run_streams_its_steps_then_shows_output_and_trace(page: Page) -> None:
    open_playground(page)
    set_program(page, STREAMED)
    expect(page.locator("#check-status")).to_have_text("✓ sea-notes@1 checks")
    page.get_by_label("topic").fill("the sea")
    page.evaluate(GROWTH)
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator('#timeline li.step[data-step="note"] pre.delta')).not_to_be_empty()
    shot(page, "run-streaming")
    expect(page.locator("#run-status")).to_have_text("run succeeded")
    # the free text grew live: several deltas, each adding to what was there
    growth = page.evaluate("() => window.growth")
    assert len(growth["note"]) >= 2 and growth["note"] == sorted(growth["note"]), growth
    for step in ("note", "card"):
        expect(page.locator(f'#timeline li.step[data-step="{step}"]')).to_have_attribute(
            "data-status", "ok"
        )
    output = output_json(page, "#output")
    assert set(output) == {"note", "card"} and set(output["card"]) == {"title"}
    # the per-step trace: constraint, tokens, cached tokens, latency, attempts, prompt
    rows = page.locator("#run-trace table.trace tbody tr[data-step]")
    expect(rows).to_have_count(2)
    card = rows.nth(1).locator("td")
    expect(card.nth(1)).to_have_text("json_schema")
    assert int(card.nth(4).inner_text()) >= 1  # completion tokens
    expect(card.nth(6)).to_have_text(re.compile(r"^[1-9]$"))  # attempts
    page.locator("#run-trace details.prompt summary").first.click()
    expect(page.locator("#run-trace details.prompt pre").first).to_contain_text(
        "<|im_start|>user\nWrite three sentences about the sea."
    )
    # the run's trace id, to find its spans and log lines
    expect(page.locator("#run-trace p.note")).to_contain_text(re.compile(r"Trace [0-9a-f]{32}\."))
    assert_fits(page)
    shot(page, "run-finished")


# three items from two letters, all different: the grammar enforces the count and the
# letters, validation finds the duplicate every time
NEVER_UNIQUE = """\
program: never-unique
version: 1
steps:
  - id: picks
    user: Pick three letters.
    gen:
      max_tokens: 96
      json_schema:
        type: array
        items: {enum: [a, b]}
        minItems: 3
        maxItems: 3
        uniqueItems: true
policy: {max_attempts: 2}
"""


def test_an_invalid_step_shows_each_attempt_with_its_pointers(page: Page) -> None:
    open_playground(page)
    set_program(page, NEVER_UNIQUE)
    expect(page.locator("#check-status")).to_have_text("✓ never-unique@1 checks")
    # the keyword the grammar cannot enforce is marked as validated afterwards
    expect(page.locator(".cm-kw-validated")).to_have_attribute(
        "title", re.compile("^uniqueItems: validated")
    )
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#run-status")).to_have_text("run failed")
    step = page.locator('#timeline li.step[data-step="picks"]')
    expect(step).to_have_attribute("data-status", "failed")
    attempts = step.locator(".attempt.invalid")
    expect(attempts).to_have_count(2)
    for i in range(2):
        expect(attempts.nth(i).locator(".attempt-label")).to_have_text(f"attempt {i + 1}")
        expect(attempts.nth(i).locator("pre.delta")).not_to_be_empty()
        expect(attempts.nth(i).locator("ul.problems li code").first).to_have_text("/")
        # the duplicate, or (when SmolLM2 pads with blank lines) the cut-off at max_tokens
        expect(attempts.nth(i).locator("ul.problems")).to_contain_text(
            re.compile("non-unique|max_tokens")
        )
    expect(page.locator("#output")).to_contain_text(re.compile(r"^output\.(invalid|truncated):"))
    row = page.locator('#run-trace table.trace tbody tr[data-step="picks"] td')
    expect(row.nth(0)).to_have_text("failed")
    expect(row.nth(6)).to_have_text("2")
    assert_fits(page)
    shot(page, "run-invalid")


def test_a_broken_event_stream_is_resumed_with_last_event_id(page: Page) -> None:
    """The first connection to the run's events is cut after two events (the page is
    answered with the start of the real stream); the page must reconnect with the id of
    the last event it read and still show the whole run."""
    asked: list[str | None] = []
    kept: list[str] = []

    def cut_first(route: Route, request: Request) -> None:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) > 1:
            route.continue_()
            return
        whole = route.fetch().text()  # the real stream, to run.finished
        events = [e for e in whole.split("\r\n\r\n") if e.startswith("id:")]
        kept.extend(events[:2])
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body="\r\n\r\n".join(kept) + "\r\n\r\n",
        )

    open_playground(page)
    set_program(page, STREAMED.replace("max_tokens: 48", "max_tokens: 16"))
    expect(page.locator("#check-status")).to_have_text("✓ sea-notes@1 checks")
    page.route("**/v1/runs/*/events", cut_first)
    page.get_by_label("topic").fill("rain")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#run-status")).to_have_text("run succeeded")
    last_kept = kept[-1].split("\r\n")[0].removeprefix("id:").strip()
    assert asked[:2] == [None, last_kept], (asked, kept)
    expect(page.locator("#timeline .run-event", has_text="stream resumed")).to_have_count(1)
    for step in ("note", "card"):
        expect(page.locator(f'#timeline li.step[data-step="{step}"]')).to_have_attribute(
            "data-status", "ok"
        )
    assert set(output_json(page, "#output")) == {"note", "card"}


def test_extract_from_pasted_text_and_from_a_document(page: Page) -> None:
    open_playground(page)
    page.get_by_role("tab", name="Extract").click()
    expect(page.get_by_label("JSON Schema")).to_have_value(re.compile('"founded"'))
    page.get_by_role("button", name="Extract", exact=True).click()
    expect(page.locator("#extract-status")).to_have_text("extracted")
    extracted = output_json(page, "#extract-output")
    assert isinstance(extracted["company"], str) and isinstance(extracted["founded"], int)
    expect(page.locator("#extract-trace table.trace tbody tr[data-step]")).to_have_count(1)
    shot(page, "extract-text")

    # a document: a file read in the page, split into chunks at blank lines
    page.get_by_label("A document (chunks)").check()
    page.get_by_label("Document file").set_input_files(
        files=[
            {
                "name": "contoso.txt",
                "mimeType": "text/plain",
                "buffer": b"Contoso Ltd makes software.\n\nIt was founded in 1975.\n",
            }
        ]
    )
    expect(page.locator("#extract-chunks")).to_have_value(
        "Contoso Ltd makes software.\n---\nIt was founded in 1975."
    )
    page.get_by_role("button", name="Extract", exact=True).click()
    expect(page.locator("#extract-trace table.trace")).to_have_count(1)
    expect(page.locator("#extract-status")).to_have_text(re.compile("extracted|run failed"))
    assert_fits(page)


def test_saved_test_cases_run_as_one_batch_into_a_pass_fail_table(pages: Pages) -> None:
    page = pages.new()
    open_playground(page)
    page.get_by_label("message").fill("I was charged twice this month.")
    page.get_by_role("button", name="Save as test case").click()
    # the inputs come along; the name field has the focus
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    assert json.loads(page.get_by_label("Inputs (JSON)", exact=True).input_value()) == {
        "message": "I was charged twice this month."
    }
    page.get_by_label("Name", exact=True).fill("charged-twice")
    page.get_by_role("button", name="Add test case").click()
    # an expectation no run can meet: `topic` is one of the select's four choices
    page.get_by_label("Name", exact=True).fill("impossible-topic")
    page.get_by_label("Inputs (JSON)", exact=True).fill('{"message": "The app crashes."}')
    page.get_by_label("Expect", exact=True).select_option("contains")
    page.get_by_label("Expected (JSON)", exact=True).fill('{"topic": "weather"}')
    page.get_by_role("button", name="Add test case").click()
    expect(page.locator("#tests-body tr[data-case]")).to_have_count(2)

    page.get_by_role("button", name="Run all").click()
    expect(page.locator("#batch-status")).to_have_text(re.compile(r"^1 of 2 passed"))
    results = page.locator("#results-body tr")
    expect(results).to_have_count(2)
    expect(page.locator('#results-body tr[data-case="charged-twice"]')).to_have_attribute(
        "data-result", "pass"
    )
    impossible = page.locator('#results-body tr[data-case="impossible-topic"]')
    expect(impossible).to_have_attribute("data-result", "fail")
    expect(impossible.locator("td.why")).to_contain_text("differs at /topic")
    assert_fits(page)
    shot(page, "test-cases")

    # kept in the browser: a reload still has them
    page.reload()
    expect(page.locator("#check-status")).to_have_text(re.compile(r"checks$"))
    page.get_by_role("tab", name="Test cases").click()
    expect(page.locator("#tests-body tr[data-case]")).to_have_count(2)


def _copied(page: Page, panel: str, flavour: str) -> str:
    page.locator(f"#{panel} .copy").get_by_role("button", name=flavour, exact=True).click()
    expect(page.locator(f"#{panel} .copy [role=status]")).to_have_text(f"{flavour} copied")
    text: str = page.evaluate("() => navigator.clipboard.readText()")
    assert page.locator(f"#{panel} pre.snippet").inner_text().rstrip() == text.rstrip()
    return text


def _run(code: list[str], stack: Stack, timeout: float = 180) -> str:
    env = {**os.environ, "SGFLOW_API_KEY": stack.acme_key}
    done = subprocess.run(code, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_copied_snippets_run_as_they_are(page: Page, stack: Stack) -> None:
    open_playground(page)
    set_program(page, STREAMED.replace("max_tokens: 48", "max_tokens: 12"))
    expect(page.locator("#check-status")).to_have_text("✓ sea-notes@1 checks")
    page.get_by_label("topic").fill("rivers")

    curl = _copied(page, "panel-program", "curl")
    assert "$API/v1/runs" in curl and stack.acme_key not in curl
    final = json.loads(_run(["bash", "-c", curl], stack).strip().splitlines()[-1])
    assert final["status"] == "succeeded" and set(final["output"]) == {"note", "card"}

    python = _copied(page, "panel-program", "Python client")
    assert "from sgflow.client import Client" in python and stack.acme_key not in python
    assert "run.finished" in _run([sys.executable, "-c", python], stack)

    page.get_by_role("button", name="Save program").click()
    expect(page.locator("#check-status")).to_have_text(
        "stored sea-notes@1: the model program:sea-notes@1"
    )
    openai_code = _copied(page, "panel-program", "OpenAI SDK")
    assert 'model = "program:sea-notes@1"' in openai_code
    assert set(json.loads(_run([sys.executable, "-c", openai_code], stack))) == {"note", "card"}

    page.get_by_role("tab", name="Extract").click()
    openai_extract = _copied(page, "panel-extract", "OpenAI SDK")
    extracted = _run([sys.executable, "-c", openai_extract], stack)
    assert "company" in extracted
    python_extract = _copied(page, "panel-extract", "Python client")
    assert "api.extract(schema, text)" in python_extract
    assert "company" in _run([sys.executable, "-c", python_extract], stack)
    assert_fits(page)


def _focused(page: Page) -> dict[str, Any]:
    """The focused element: its id, tag, and whether a focus ring shows (on it, or on the
    editor around it)."""
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          const ring = el.closest('.editor') ?? el;
          const style = getComputedStyle(ring);
          return {id: el.id, tag: el.tagName, cls: el.className, name: el.textContent.slice(0, 30),
                  ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
        }"""
    )


def test_keyboard_only_key_inputs_and_run(pages: Pages, stack: Stack) -> None:
    page = pages.new(key=False)
    page.goto("/playground")
    expect(page.locator("#check-status")).to_have_text("paste an API key to check")
    page.keyboard.press("Tab")
    assert _focused(page)["cls"] == "skip"
    page.keyboard.press("Tab")
    focused = _focused(page)
    assert focused["id"] == "api-key" and focused["ring"], focused
    page.keyboard.type(stack.acme_key)
    page.keyboard.press("Enter")
    expect(page.locator("#check-status")).to_have_text(re.compile(r"checks$"))
    # the tabs: arrow keys move between them
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert _focused(page)["id"] == "tab-program"
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Extract")).to_be_focused()
    expect(page.locator("#panel-extract")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#panel-program")).to_be_visible()
    # Tab through the program panel (the editor lets Tab through) to the first input
    visited = []
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = _focused(page)
        visited.append(focused)
        assert focused["ring"], f"no visible focus on {focused}"
        if focused["id"].endswith("-message"):
            break
    else:
        raise AssertionError(f"the message field is not reachable by Tab: {visited}")
    assert any("cm-content" in str(v["cls"]) for v in visited), visited
    shot(page, "keyboard-focus")
    page.keyboard.type("Where is my invoice?")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#run-status")).to_have_text("run succeeded")
    expect(page.locator("#output")).to_have_attribute("data-kind", "ok")
    expect(page.locator("#run-trace table.trace")).to_be_visible()
    shot(page, "keyboard-run")


def test_a_laptop_screen_never_scrolls_sideways(page: Page) -> None:
    open_playground(page)
    long_word = "x" * 1500
    page.get_by_label("message").fill(long_word)
    for details in ("#explain-box", "#prefix-box"):
        page.locator(f"{details} summary").click()
    for tab in ("Program", "Extract", "Test cases"):
        page.get_by_role("tab", name=tab).click()
        assert_fits(page)
        shot(page, f"laptop-{tab.lower().replace(' ', '-')}")
    page.get_by_role("tab", name="Program").click()
    page.get_by_label("Raw JSON").check()
    expect(page.get_by_label("Raw inputs (JSON)")).to_have_value(re.compile(long_word))
    assert_fits(page)
