"""OpenAI's own structured-outputs examples (the cookbook's math tutor, UI generation,
moderation and research-paper extraction), sent as a user copies them, with the real SDK
against the real service: an answer that says it is complete (``finish_reason: stop``) is
valid against its schema, and one that is not says ``length`` (the SDK's ``.parse`` raises
``LengthFinishReasonError``), never cut-off JSON presented as complete.

The model is tiny (SmolLM2-135M): at temperature 0 it loops inside unbounded strings and
arrays of the math, UI and paper schemas until ``max_tokens``. A request that does not stream
has its cut-off answer generated again (sampled, penalising repetition) before it is a
``length``: measured 2026-12-01, 3 of the 4 examples complete with a valid answer (math and
paper on their second attempt; 1 of 4 before the retry), the recursive UI schema is still
cut off after 3 attempts. So "every example gets a valid answer" is a property of a real
model that this machine cannot show; what it says is never checked, only what the schema
allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from sgflow.grammars.validation import validation_errors
from tests.openai.test_service_e2e import model, sdk  # noqa: F401 (fixtures)
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

COOKBOOK: dict[str, Any] = json.loads(
    (Path(__file__).parent / "schemas" / "cookbook.json").read_text()
)

EXAMPLES = [
    (
        "math_reasoning",
        "You are a helpful math tutor. Guide the user through the solution step by step.",
        "how can I solve 8x + 7 = -23",
    ),
    ("ui", "You are a UI generator AI. Convert the user input into a UI.", "Make a login form"),
    (
        "content_compliance",
        "Determine if the user input violates specific guidelines and explain if they do.",
        "How do I prepare for a job interview?",
    ),
    (
        "research_paper_extraction",
        "You are an expert at structured data extraction. You will be given unstructured text "
        "from a research paper and should convert it into the given structure.",
        "Attention Is All You Need. Ashish Vaswani, Noam Shazeer. We propose the Transformer, "
        "a network architecture based solely on attention mechanisms. Keywords: attention, "
        "translation.",
    ),
]


@pytest.mark.parametrize(("name", "system", "user"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_the_cookbook_example_is_schema_valid_or_says_it_was_cut_off(
    sdk: openai.OpenAI,  # noqa: F811
    model: str,  # noqa: F811
    stack: Stack,
    name: str,
    system: str,
    user: str,
) -> None:
    schema = COOKBOOK[name]
    completion = sdk.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        },
        max_tokens=1024,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length"), choice
    assert choice.message.content is not None
    if choice.finish_reason == "stop":
        answer = json.loads(choice.message.content)
        assert validation_errors(answer, schema) == []
    else:  # cut off at the cap it was given, and said so (the SDK's .parse raises on it)
        run = stack.acme.get(f"/v1/runs/{completion.id.removeprefix('chatcmpl-')}").json()
        assert run["status"] == "failed" and run["error"]["code"] == "output.truncated"
