"""Instructor as its users call it, run in its own venv (instructor 1.17.0 with the openai
release it pins): ``python instructor_driver.py BASE_URL KEY MODEL CASE`` prints one JSON
line ``{"ok": true, "value": …}`` or ``{"ok": false, "error": …}``. Imports nothing of sgflow
or its tests: it is a user's program."""

from __future__ import annotations

import json
import sys
from typing import Literal

import instructor
from openai import OpenAI
from pydantic import BaseModel, Field


class Verdict(BaseModel):
    """A review's verdict."""

    sentiment: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=0, le=10)
    urgent: bool


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=130)


REVIEW = "Rate this review: 'Great product, fast delivery!'"
PEOPLE = "Alice is 30 years old. Bob is 25 years old."

MODES = {
    "tools": instructor.Mode.TOOLS,
    "tools_strict": instructor.Mode.TOOLS_STRICT,
    "json_schema": instructor.Mode.JSON_SCHEMA,
}


def main(base_url: str, key: str, model: str, case: str) -> object:
    openai_client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300)
    messages = [{"role": "user", "content": REVIEW}]
    if case in MODES:
        client = instructor.from_openai(openai_client, mode=MODES[case])
        verdict = client.chat.completions.create(
            model=model,
            response_model=Verdict,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=200,
            temperature=0,
            max_retries=2,
        )
        return verdict.model_dump()
    client = instructor.from_openai(openai_client, mode=instructor.Mode.TOOLS)
    if case == "partial":
        seen = []
        for partial in client.chat.completions.create_partial(
            model=model,
            response_model=Verdict,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=200,
            temperature=0,
        ):
            seen.append(partial.model_dump())
        return {"partials": seen}
    if case == "iterable":
        people = client.chat.completions.create_iterable(
            model=model,
            response_model=Person,
            messages=[{"role": "user", "content": f"Extract every person: {PEOPLE}"}],
            max_tokens=300,
            temperature=0,
        )
        return [p.model_dump() for p in people]
    if case == "with_completion":
        verdict, completion = client.chat.completions.create_with_completion(
            model=model,
            response_model=Verdict,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=200,
            temperature=0,
        )
        return {
            "verdict": verdict.model_dump(),
            "finish_reason": completion.choices[0].finish_reason,
            "usage": completion.usage.model_dump() if completion.usage else None,
        }
    raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    try:
        out = {"ok": True, "value": main(*sys.argv[1:5])}
    except Exception as exc:  # the test reads the failure, not a traceback
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
