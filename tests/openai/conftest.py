"""Fixtures of the tests that drive the real service through OpenAI clients."""

from __future__ import annotations

import openai
import pytest

from tests.service.stack import Stack


@pytest.fixture(scope="module")
def engine_model(stack: Stack) -> str:
    """The engine's model, as ``GET /v1/models`` lists it (owned by ``sgflow``)."""
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.acme_key) as sdk:
        engines = [m.id for m in sdk.models.list() if m.owned_by == "sgflow"]
    assert engines, "the engine's model is listed"
    return engines[0]
