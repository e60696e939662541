"""Helpers that run the real ``openai`` SDK against an ``httpx2.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest


def client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    """The SDK as users build it, pointed at ``handler``: strict response validation (a
    reply the SDK's types reject fails the test) and no retries."""
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://sgflow.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )


def sent_body(call: Callable[[openai.OpenAI], Any]) -> dict[str, Any]:
    """The JSON body the SDK sends for ``call(client)`` (answered with a 400 to stop it)."""
    captured: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        captured.append(json.loads(request.content))
        return httpx2.Response(
            400,
            json={"error": {"message": "captured", "type": "x", "param": None, "code": None}},
        )

    with pytest.raises(openai.BadRequestError):
        call(client(handler))
    return captured[0]


def sdk_response_format(model: type) -> dict[str, Any]:
    """The ``response_format`` ``chat.completions.parse(response_format=model)`` sends."""
    body = sent_body(
        lambda c: c.chat.completions.parse(
            model="m", messages=[{"role": "user", "content": "x"}], response_format=model
        )
    )
    return dict(body["response_format"])
