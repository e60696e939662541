"""Libraries built on the OpenAI SDK, unchanged, against the real service (API + Celery
worker + embedded engine with SmolLM2-135M): LangChain's ``ChatOpenAI(...)
.with_structured_output(...)``. Structure and validity only, never what the tiny model knows.

Instructor runs in a venv of its own: tests/openai/test_instructor_e2e.py."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.openai.test_service_e2e import MAX_JSON
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

REVIEW = "Rate this review: 'Great product, fast delivery!'"


class Verdict(BaseModel):
    """A review's verdict."""

    sentiment: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=0, le=10)
    urgent: bool


@pytest.fixture(scope="module")
def model(engine_model: str) -> str:
    return engine_model


def chat_model(stack: Stack, model: str) -> ChatOpenAI:
    """ChatOpenAI as a user builds it: only the base URL and the key differ from OpenAI."""
    return ChatOpenAI(
        base_url=f"{stack.url}/v1",
        api_key=stack.acme_key,  # type: ignore[arg-type]
        model=model,
        temperature=0,
        max_tokens=MAX_JSON,  # type: ignore[call-arg]
        max_retries=0,
        timeout=300,
    )


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output_gives_a_validated_instance(
    stack: Stack, model: str, method: Literal["json_schema", "function_calling"]
) -> None:
    structured = chat_model(stack, model).with_structured_output(
        Verdict, method=method, include_raw=True
    )
    result = structured.invoke(REVIEW)
    assert isinstance(result, dict)
    assert result["parsing_error"] is None, result["parsing_error"]
    assert isinstance(result["parsed"], Verdict)
    raw = result["raw"]
    if method == "function_calling":
        calls = raw.tool_calls
        assert [c["name"] for c in calls] == ["Verdict"]
        assert Verdict.model_validate(calls[0]["args"]) == result["parsed"]
    else:
        assert Verdict.model_validate_json(raw.content) == result["parsed"]
    assert raw.response_metadata["finish_reason"] in ("stop", "tool_calls")
