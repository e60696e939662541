"""OpenAI's own structured-outputs examples (the cookbook's math tutor, UI generation,
moderation and research-paper extraction), sent as a user copies them, with the real SDK
against the real service: each answer is complete and valid against its schema. The model is
tiny (SmolLM2-135M): what it says is not checked, only that it is what the schema allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from sgflow.programs.executor import validation_errors
from tests.openai.test_service_e2e import model, sdk  # noqa: F401 (fixtures)

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
def test_the_cookbook_example_gets_a_schema_valid_answer(
    sdk: openai.OpenAI,  # noqa: F811
    model: str,  # noqa: F811
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
    assert choice.finish_reason == "stop", choice
    assert choice.message.content is not None
    answer = json.loads(choice.message.content)
    assert validation_errors(answer, schema) == []
