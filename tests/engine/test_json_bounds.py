"""The engine bounds the JSON it is sent: its request bodies (``server.py``) and the
``json_schema`` sampling parameter (``constraints.py``), before xgrammar sees a schema.
No model is needed: a toy vocabulary is enough to compile against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sgflow.engine.constraints import GrammarBackend
from sgflow.engine.errors import ConstraintError
from sgflow.engine.protocol import ConstraintSpec

VOCAB = [b"<eos>", b"{", b"}", b'"', b"a", b":", b",", b" ", b"1"]


@pytest.fixture(scope="module")
def backend() -> Iterator[GrammarBackend]:
    grammars = GrammarBackend(VOCAB, stop_ids=[0])
    yield grammars
    grammars.close()


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ('{"items": ' * 200 + "{}" + "}" * 200, "limit.json_depth"),  # under the size limit
        ('{"type": "number", "maximum": NaN}', "json.non_finite"),
        ('{"type": "integer", "minimum": ' + "9" * 5000 + "}", "limit.json_number"),
        ('{"type": "string", "type": "number"}', "json.duplicate_key"),
        ('{"type": "string"', "grammar.invalid_schema"),
    ],
)
def test_json_schema_parameter_is_bounded(backend: GrammarBackend, source: str, code: str) -> None:
    with pytest.raises(ConstraintError) as info:
        backend.compile(ConstraintSpec(kind="json_schema", source=source))
    assert info.value.code == code
    assert info.value.field == "/sampling_params/json_schema"


def test_a_bounded_schema_compiles(backend: GrammarBackend) -> None:
    spec = ConstraintSpec(kind="json_schema", source='{"type": "object"}')
    assert backend.compile(spec) is not None


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"[" * 20_000 + b"]" * 20_000, "limit.json_depth", "/0" * 128),
        (b'{"text": "hi", "sampling_params": {"temperature": NaN}}', "json.non_finite",
         "/sampling_params/temperature"),
        (b'{"text": "\\udc00"}', "json.lone_surrogate", "/text"),
        (b'{"text": "a", "text": "b"}', "json.duplicate_key", "/text"),
        (b'{"text": ', "request.malformed_json", ""),
    ],
)  # fmt: skip
def test_generate_body_is_bounded(body: bytes, code: str, field: str) -> None:
    # refused before the engine is touched, so a placeholder stands in for it
    from fastapi.testclient import TestClient

    from sgflow.engine.server import create_app

    with TestClient(create_app(object())) as client:  # type: ignore[arg-type]
        r = client.post("/generate", content=body)
    assert r.status_code == 400
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)
