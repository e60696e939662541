"""Workers pass ``chat_template_name="chatml"`` to ``RuntimeEndpoint``: the prompt the SGLang
frontend renders must be exactly what SmolLM2's own chat template (in its GGUF) renders."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
import sglang as sgl
from llama_cpp import Llama
from sglang.lang.chat_template import get_chat_template

from sgflow.engine.model import default_model_path

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def gguf_template() -> str:
    llm = Llama(default_model_path(), vocab_only=True, verbose=False)
    return str(llm.metadata["tokenizer.chat_template"])


def render_gguf(template: str, messages: list[dict[str, str]]) -> str:
    env = jinja2.Environment()
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def test_frontend_prompt_matches_the_models_template(engine_url: str, gguf_template: str) -> None:
    backend = sgl.RuntimeEndpoint(engine_url, chat_template_name="chatml")
    assert backend.get_chat_template() is get_chat_template("chatml")

    @sgl.function
    def convo(s: Any) -> None:
        s += sgl.system("You are terse.")
        s += sgl.user("Hi there")
        s += sgl.assistant("Hello.")
        s += sgl.user("Bye")
        s += sgl.assistant_begin()

    state = convo.run(backend=backend)
    expected = render_gguf(
        gguf_template,
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
    )
    assert state.text() == expected


def test_without_a_name_the_frontend_would_pick_a_wrong_template(engine_url: str) -> None:
    # The model path is a .gguf file name SGLang does not recognise, hence the explicit name.
    backend = sgl.RuntimeEndpoint(engine_url)
    assert backend.get_chat_template().name != "chatml"
