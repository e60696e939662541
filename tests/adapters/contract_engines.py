"""Contract fakes of engines that cannot run here (Ollama v0.32.15, TGI v3.3.7, LMDeploy
v0.16.0, TensorRT-LLM trtllm-serve, MLC-LLM v0.20.0), built from /work/notes/engine_facts.md.

A :class:`FakeEngine` answers like ONE kind of engine on the wire: its detection endpoints,
its generation endpoints with the request checks the real server makes (its own error body
and status), its response and stream shapes, its finish reasons and usage fields. Behind the
wire format it generates for real, on sgflow's embedded engine (SGLang's native
``/generate``). Every POST body is recorded in ``requests`` so tests can assert on the exact
wire format sgflow sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from sgflow.execution.deltas import response_lines

MODELS = {
    "ollama": "smollm2:135m",
    "tgi": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "lmdeploy": "smollm2-135m",
    "trtllm": "SmolLM2-135M-Instruct",
    "mlc": "SmolLM2-135M-Instruct-q0f16-MLC",
}
GENERATION_PATHS = {
    "ollama": ("/api/generate",),
    "tgi": ("/generate", "/generate_stream"),
    "lmdeploy": ("/v1/completions", "/v1/chat/completions"),
    "trtllm": ("/v1/completions",),
    "mlc": ("/v1/completions",),
}
# trtllm-serve CompletionRequest (extra="forbid"): every field it declares
_TRT_FIELDS = (
    "model prompt best_of echo frequency_penalty logit_bias logprobs max_tokens n "
    "presence_penalty seed stop stream stream_options suffix temperature top_p user "
    "lora_request prompt_ignore_length use_beam_search top_k top_p_min min_p repetition_penalty "
    "length_penalty early_stopping stop_token_ids include_stop_str_in_output ignore_eos "
    "min_tokens skip_special_tokens spaces_between_special_tokens truncate_prompt_tokens "
    "return_context_logits detokenize thinking_token_budget add_special_tokens response_format "
    "disaggregated_params priority conversation_params"
)
TRT_FIELDS = frozenset(_TRT_FIELDS.split())
TRT_FORMAT_FIELDS = frozenset({"type", "schema", "json_schema", "regex", "ebnf", "format"})
# the engine's finish reason for each of the embedded engine's (stop, length, abort)
FINISH = {
    "ollama": ("stop", "length", None),
    "tgi": ("eos_token", "length", None),
    "lmdeploy": ("stop", "length", "abort"),
    "trtllm": ("stop", "length", "cancelled"),
    "mlc": ("stop", "length", "preempt"),
}


class Refuse(Exception):
    """The fake answers ``status`` with the engine's own error ``body``."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def error_body(kind: str, status: int, message: str) -> Any:
    """``message`` in the error envelope of ``kind``'s server."""
    if kind == "ollama":
        return {"error": message}
    if kind == "tgi":
        return {"error": message, "error_type": "validation" if status == 422 else "generation"}
    if kind == "mlc":  # create_error_response passes model_dump_json(): encoded twice
        return json.dumps({"object": "error", "message": message, "code": status})
    typ = "invalid_request_error" if kind == "lmdeploy" else "BadRequestError"
    return {"message": message, "type": typ, "code": status, "param": None, "object": "error"}


def _model_list(model: str, owner: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": owner}]}


# fmt: off
def detection(kind: str, model: str) -> dict[str, Any]:
    """The GET endpoints of ``kind`` that detection may ask (anything else: 404)."""
    tag = {"name": model, "model": model, "size": 1, "digest": "0" * 64,
           "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"}}
    info = {"model_id": model, "model_sha": None, "max_stop_sequences": 4, "max_best_of": 2,
            "router": "text-generation-router", "version": "3.3.6-dev0", "sha": None}
    return {
        "ollama": {"/": "Ollama is running", "/api/version": {"version": "0.32.15"},
                   "/api/tags": {"models": [tag]}, "/v1/models": _model_list(model, "library")},
        "tgi": {"/info": info, "/health": "", "/v1/models": _model_list(model, model)},
        "lmdeploy": {"/v1/models": _model_list(model, "lmdeploy"),
                     "/health": {"status": "healthy", "message": None}},
        "trtllm": {"/version": {"version": "1.2.1"}, "/health": "",
                   "/v1/models": _model_list(model, "tensorrt_llm")},
        "mlc": {"/v1/models": _model_list(model, "MLC-LLM")},  # no /health, no /version
    }[kind]
# fmt: on


class FakeEngine:
    """A threaded HTTP server impersonating ``kind`` over the embedded engine at ``engine_url``.

    ``fail_next(status, message)`` makes the next generation request answer that error;
    ``finish_as`` replaces every finish reason with one of the engine's own words."""

    def __init__(self, kind: str, engine_url: str) -> None:
        self.kind, self.engine_url, self.model = kind, engine_url.rstrip("/"), MODELS[kind]
        self.requests: list[tuple[str, Any]] = []
        self.finish_as: str | None = None
        self._fail: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, message: str) -> None:
        self._fail = (status, message)

    def generations(self) -> list[tuple[str, Any]]:
        return [(p, b) for p, b in self.requests if p in GENERATION_PATHS[self.kind]]

    def reset(self) -> None:
        self.requests.clear()
        self.finish_as, self._fail = None, None

    # -- the embedded engine behind the wire format -------------------------------------------

    def post(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]] | Iterator[bytes]:
        with self._lock:
            self.requests.append((path, body))
        if not isinstance(body, dict):
            raise Refuse(400, error_body(self.kind, 400, "the body is not a JSON object"))
        if path in GENERATION_PATHS[self.kind] and self._fail is not None:
            (status, message), self._fail = self._fail, None
            raise Refuse(status, error_body(self.kind, status, message))
        return HANDLERS[self.kind](self, path, body)

    def generate(
        self, prompt: str, params: dict[str, Any], *, logprobs: int | None = None
    ) -> dict[str, Any]:
        """SGLang-native ``/generate``: ``{text, meta_info}``; ``logprobs`` is the first
        prompt position to return log-probabilities for."""
        body: dict[str, Any] = {"text": prompt, "sampling_params": params}
        if logprobs is not None:
            body.update(return_logprob=True, logprob_start_len=logprobs)
            body["return_text_in_logprobs"] = True
        res = requests.post(self.engine_url + "/generate", json=body, timeout=300)
        if res.status_code != 200:
            raise Refuse(500, error_body(self.kind, 500, res.text[:300]))
        found: dict[str, Any] = res.json()
        return found

    def stream(self, prompt: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        """The new text of each chunk of a streamed generation, with its ``meta_info``."""
        body = {"text": prompt, "sampling_params": params, "stream": True}
        with requests.post(self.engine_url + "/generate", json=body, stream=True, timeout=300) as r:
            sent = ""
            for line in response_lines(r):
                data = line.strip()[5:].strip() if line.startswith(b"data:") else b""
                if not data or data == b"[DONE]":
                    continue
                chunk = json.loads(data)
                text = str(chunk["text"])
                piece = text[len(sent) :] if text.startswith(sent) else ""
                sent = text if piece or text == sent else sent
                yield piece, chunk["meta_info"]

    def finish(self, meta: dict[str, Any]) -> str | None:
        """The finish reason the engine would say, in its own vocabulary."""
        if self.finish_as is not None:
            return self.finish_as
        stop, length, abort = FINISH[self.kind]
        reason = meta.get("finish_reason") or {}
        kind = reason.get("type")
        if kind == "length":
            return length
        if kind == "stop":
            matched = reason.get("matched")
            return "stop_sequence" if self.kind == "tgi" and isinstance(matched, str) else stop
        return abort


def _handler(fake: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            text = body if isinstance(body, str) and status == 200 else json.dumps(body)
            data = text.encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(body, str) and status == 200 else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            found = detection(fake.kind, fake.model).get(self.path)
            if found is None:
                self._send(404, {"detail": "Not Found"})
            else:
                self._send(200, found)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, error_body(fake.kind, 400, "invalid JSON"))
                return
            try:
                answer = fake.post(self.path, body)
            except Refuse as exc:
                self._send(exc.status, exc.body)
                return
            if isinstance(answer, tuple):
                self._send(*answer)
                return
            self.send_response(200)
            ndjson = fake.kind == "ollama"
            self.send_header(
                "Content-Type", "application/x-ndjson" if ndjson else "text/event-stream"
            )
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for line in answer:
                self.wfile.write(line)
                self.wfile.flush()

    return Handler


# -- the generation endpoints, one function per engine kind ----------------------------------


def _token(row: list[Any], special: bool | None = False) -> dict[str, Any]:
    """A TGI token from the embedded engine's ``[logprob, id, text]``."""
    found = {"id": row[1], "text": row[2], "logprob": row[0]}
    return found if special is None else {**found, "special": special}


def _sse(event: Any, space: bool = True) -> bytes:
    return f"data:{' ' if space else ''}{json.dumps(event)}\n\n".encode()


def _sampling(max_tokens: Any, temperature: Any, top_p: Any, stop: Any, seed: Any) -> dict:
    params: dict[str, Any] = {"max_new_tokens": int(max_tokens), "temperature": float(temperature)}
    params["top_p"] = float(top_p)
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if seed is not None:
        params["sampling_seed"] = int(seed)
    return params


def ollama(fake: FakeEngine, path: str, body: dict[str, Any]) -> Any:
    if body.get("model") != fake.model:
        raise Refuse(404, {"error": f"model '{body.get('model')}' not found"})
    if body.get("raw") and any(body.get(k) for k in ("template", "system", "context")):
        raise Refuse(400, {"error": "raw mode does not support template, system, or context"})
    if not body.get("raw"):
        raise Refuse(400, {"error": "contract fake: only raw prompts are impersonated"})
    o = body.get("options") or {}
    predict = o.get("num_predict", -1)
    params = _sampling(
        512 if predict < 0 else predict,
        o.get("temperature", 0.8),
        o.get("top_p", 0.9),
        o.get("stop"),
        o.get("seed"),
    )
    fmt = body.get("format")
    if fmt == "json":  # llama_server.go: the fixed grammarJSON, any object
        params["json_schema"] = json.dumps({"type": "object"})
    elif isinstance(fmt, dict):  # sent unchanged as llama-server's json_schema
        params["json_schema"] = json.dumps(fmt)
    elif fmt not in (None, ""):
        raise Refuse(
            400,
            {"error": f'invalid format: "{fmt}"; expected "json" or a valid JSON Schema object'},
        )

    def last(meta: dict[str, Any], text: str) -> dict[str, Any]:
        reason = fake.finish(meta)
        if reason is None:
            return {"error": f"llama runner: {meta['finish_reason'].get('message', 'aborted')}"}
        return {
            "model": fake.model, "created_at": "2026-01-01T00:00:00Z", "response": text,
            "done": True, "done_reason": reason, "total_duration": 1, "eval_duration": 1,
            "prompt_eval_count": meta["prompt_tokens"], "eval_count": meta["completion_tokens"],
        }  # fmt: skip

    if not body.get("stream", True):
        out = fake.generate(body["prompt"], params)
        answer = last(out["meta_info"], out["text"])
        return (500 if "error" in answer else 200), answer, {}

    def lines() -> Iterator[bytes]:
        for piece, meta in fake.stream(body["prompt"], params):
            if meta.get("finish_reason"):
                yield (json.dumps(last(meta, piece)) + "\n").encode()
                return
            event = {"model": fake.model, "response": piece, "done": False}
            yield (json.dumps(event) + "\n").encode()

    return lines()


def tgi(fake: FakeEngine, path: str, body: dict[str, Any]) -> Any:
    if path == "/tokenize":
        out = fake.generate(body["inputs"], {"max_new_tokens": 0}, logprobs=0)
        rows = out["meta_info"]["input_token_logprobs"]
        return 200, [{"id": t[1], "text": t[2], "start": 0, "stop": 0} for t in rows], {}
    p = body.get("parameters") or {}
    stream, prefill = path == "/generate_stream", bool(p.get("decoder_input_details"))

    def invalid(message: str) -> Refuse:
        return Refuse(422, error_body("tgi", 422, f"Input validation error: {message}"))

    if p.get("temperature") is not None and p["temperature"] <= 0:
        raise invalid("`temperature` must be strictly positive")
    if p.get("top_p") is not None and not 0 < p["top_p"] < 1:
        raise invalid("`top_p` must be > 0.0 and < 1.0")
    if len(p.get("stop") or ()) > 4:
        raise invalid(f"`stop` supports up to 4 stop sequences. Given: {len(p['stop'])}")
    if p.get("max_new_tokens") is not None and p["max_new_tokens"] <= 0:
        raise invalid("`max_new_tokens` must be strictly positive")
    if stream and prefill:
        raise invalid("`decoder_input_details` == true is not supported when streaming tokens")
    sampled = p.get("do_sample") or p.get("temperature") is not None
    temperature = p.get("temperature") or (1.0 if sampled else 0.0)
    params = _sampling(p.get("max_new_tokens") or 512, temperature, p.get("top_p") or 1.0,
                       p.get("stop"), p.get("seed"))  # fmt: skip
    grammar = p.get("grammar")
    if grammar is not None:
        kind, value = grammar.get("type"), grammar.get("value")
        if kind in ("json", "json_object", "json_schema"):
            schema = json.loads(value) if isinstance(value, str) else value
            schema = schema.get("schema") if kind == "json_schema" else schema
            if not (isinstance(schema, dict) and "properties" in schema):
                raise invalid("grammar is not valid: Grammar must have a 'properties' field")
            params["json_schema"] = json.dumps(schema)
        elif kind == "regex":
            params["regex"] = value
        else:
            raise invalid(f"unknown grammar type {kind!r}")

    def details(meta: dict[str, Any]) -> dict[str, Any]:
        return {"finish_reason": fake.finish(meta), "generated_tokens": meta["completion_tokens"],
                "seed": p.get("seed")}  # fmt: skip

    failed = {"error": "Request failed during generation", "error_type": "incomplete_generation"}
    if not stream:
        out = fake.generate(body["inputs"], params, logprobs=0 if prefill else -1)
        meta = out["meta_info"]
        if fake.finish(meta) is None:
            raise Refuse(500, failed)
        answer: dict[str, Any] = {"generated_text": out["text"]}
        if p.get("details"):  # the first prompt token's logprob is null, as in TGI
            rows = meta.get("input_token_logprobs", []) if prefill else []
            toks = [_token(t) for t in meta["output_token_logprobs"]]
            answer["details"] = {**details(meta), "prefill": [_token(t, None) for t in rows],
                                 "tokens": toks}  # fmt: skip
        counts = {
            "x-prompt-tokens": meta["prompt_tokens"],
            "x-generated-tokens": meta["completion_tokens"],
        }
        return 200, answer, {k: str(v) for k, v in counts.items()}

    def events() -> Iterator[bytes]:
        text = ""
        for index, (piece, meta) in enumerate(fake.stream(body["inputs"], params)):
            text += piece
            token = _token([-0.1, index, piece])
            event = {"index": index, "token": token, "generated_text": None, "details": None}
            if meta.get("finish_reason") and fake.finish(meta) is None:
                yield _sse(failed, space=False)
                return
            if meta.get("finish_reason"):
                event["generated_text"] = text
                if p.get("details"):
                    event["details"] = {**details(meta), "input_length": meta["prompt_tokens"]}
            yield b": keep-alive\n\n"
            yield _sse(event, space=False)  # axum Event::json_data: no space, no [DONE]

    return events()


def _lmdeploy_format(fake: FakeEngine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    def bad(message: str, status: int = 400) -> Refuse:
        return Refuse(status, error_body("lmdeploy", status, message))

    if body.get("model") != fake.model:
        raise bad(f"The model '{body.get('model')}' does not exist.", 404)
    if not 0 <= body.get("temperature", 0.7) <= 2 or not 0 < body.get("top_p", 1.0) <= 1:
        raise bad("temperature must be in [0, 2] and top_p in (0, 1]")
    if path == "/v1/completions":
        return {}  # CompletionRequest has no response_format: pydantic drops it silently
    if not isinstance(body.get("messages"), str):
        raise bad("contract fake: only string messages (no chat template) are impersonated")
    rf = body.get("response_format") or {"type": "text"}
    kind = rf.get("type")
    if kind == "json_schema" and isinstance((rf.get("json_schema") or {}).get("schema"), dict):
        return {"json_schema": json.dumps(rf["json_schema"]["schema"])}
    if kind == "json_object":
        return {"json_schema": json.dumps({"type": "object", "additionalProperties": True})}
    if kind == "regex_schema" and isinstance(rf.get("regex_schema"), str):
        return {"regex": rf["regex_schema"]}
    if kind == "text":
        return {}
    raise bad(f"invalid response_format: {json.dumps(rf)[:200]}")


def _trtllm_format(fake: FakeEngine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    def invalid(message: str) -> Refuse:  # validation_exception_handler: {"error": str(exc)}
        return Refuse(400, {"error": f"1 validation error for CompletionRequest\n{message}"})

    rf = body.get("response_format") or {"type": "text"}
    for name, allowed in (("", TRT_FIELDS), ("response_format.", TRT_FORMAT_FIELDS)):
        extra = sorted(set(body if not name else rf) - allowed)
        if extra:
            raise invalid(f"{name}{extra[0]}\n  Extra inputs are not permitted")
    if body.get("stream_options") and not body.get("stream"):
        raise invalid("Value error, Stream options can only be defined when stream is true.")
    if body.get("suffix"):
        raise invalid("Value error, suffix is not supported")
    kind = rf.get("type")
    if kind not in ("text", "json", "json_schema", "json_object", "regex", "ebnf"):
        raise invalid(f"response_format.type\n  Input should be 'text', 'json', ... (got {kind!r})")
    field = {"json": "schema", "json_schema": "json_schema", "regex": "regex", "ebnf": "ebnf"}
    if kind in field and rf.get(field[kind]) is None:
        message = f"response_format.{field[kind]} is required for response_format.type == {kind!r}, but got None."
        raise Refuse(400, error_body("trtllm", 400, message))
    if kind in ("json", "json_schema"):
        schema = rf.get("schema") or rf["json_schema"]
        return {
            "json_schema": json.dumps(
                schema.get("schema", schema) if kind == "json_schema" else schema
            )
        }
    if kind == "json_object":
        return {"json_schema": json.dumps({"type": "object"})}
    return {kind: rf[kind]} if kind in ("regex", "ebnf") else {}


def _mlc_format(fake: FakeEngine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    def bad(message: str) -> Refuse:
        return Refuse(400, error_body("mlc", 400, message))

    def pydantic(loc: str, msg: str) -> Refuse:  # FastAPI's default 422
        return Refuse(422, {"detail": [{"loc": ["body", *loc.split(".")], "msg": msg}]})

    if body.get("model") not in (None, fake.model):
        raise bad(f'The requested model "{body.get("model")}" is not served.')
    if body.get("logprobs") is not None and not 0 <= body["logprobs"] <= 5:
        raise pydantic("logprobs", "Input should be less than or equal to 5")
    if body.get("best_of", 1) != 1:
        raise bad('Request fields "best_of" are not supported right now.')
    rf = body.get("response_format") or {"type": "text"}
    if rf.get("schema") is not None and not isinstance(rf["schema"], str):
        raise pydantic("response_format.schema", "Input should be a valid string")
    if rf.get("type") not in ("text", "json_object"):
        raise bad(f"Uknonwn response_format type {rf.get('type')}")
    if rf["type"] == "json_object":
        return {"json_schema": rf.get("schema") or json.dumps({"type": "object"})}
    return {}


def openai_style(fake: FakeEngine, path: str, body: dict[str, Any]) -> Any:
    """LMDeploy, TensorRT-LLM and MLC-LLM: OpenAI's completions (and LMDeploy's chat)."""
    constraint = {"lmdeploy": _lmdeploy_format, "trtllm": _trtllm_format, "mlc": _mlc_format}[
        fake.kind
    ](fake, path, body)
    chat = path == "/v1/chat/completions"
    prompt = body["messages"] if chat else body["prompt"]
    most = body.get("max_completion_tokens") or body.get("max_tokens") or 512
    params = _sampling(most, body.get("temperature", 1.0), body.get("top_p", 1.0),
                       body.get("stop"), body.get("seed"))  # fmt: skip
    params.update(constraint)
    head = {"id": "cmpl-1", "created": 0, "model": fake.model}
    head["object"] = "chat.completion" if chat else "text_completion"

    def usage(meta: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {"prompt_tokens": meta["prompt_tokens"],
                                 "completion_tokens": meta["completion_tokens"],
                                 "total_tokens": meta["prompt_tokens"] + meta["completion_tokens"]}  # fmt: skip
        if fake.kind == "trtllm" or (fake.kind == "lmdeploy" and chat):
            found["prompt_tokens_details"] = {"cached_tokens": meta["cached_tokens"]}
        elif fake.kind == "lmdeploy":
            found["prompt_tokens_details"] = None  # /v1/completions builds a plain UsageInfo()
        else:
            found["extra"] = None
        return found

    def choice(text: str, meta: dict[str, Any] | None, delta: bool = False) -> dict[str, Any]:
        reason = fake.finish(meta) if meta else None
        words: dict[str, Any] = {"text": text}
        if chat:
            words = (
                {"delta": {"content": text}}
                if delta
                else {"message": {"role": "assistant", "content": text}}
            )
        found = {"index": 0, **words, "logprobs": None, "finish_reason": reason}
        if fake.kind == "trtllm":
            matched = (meta or {}).get("finish_reason", {}).get("matched")
            found["stop_reason"] = matched if isinstance(matched, str) else None
        return found

    if not body.get("stream"):
        out = fake.generate(prompt, params)
        meta = out["meta_info"]
        return 200, {**head, "choices": [choice(out["text"], meta)], "usage": usage(meta)}, {}
    include_usage = (body.get("stream_options") or {}).get("include_usage", fake.kind == "trtllm")

    def events() -> Iterator[bytes]:
        for piece, meta in fake.stream(prompt, params):
            done = bool(meta.get("finish_reason"))
            yield _sse({**head, "choices": [choice(piece, meta if done else None, True)]})
            if done and include_usage:
                yield _sse({**head, "choices": [], "usage": usage(meta)})
        yield b"data: [DONE]\n\n"

    return events()


HANDLERS = {"ollama": ollama, "tgi": tgi, "lmdeploy": openai_style, "trtllm": openai_style}
HANDLERS["mlc"] = openai_style
