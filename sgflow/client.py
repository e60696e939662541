"""A Python client for the sgflow API: :class:`Client` (sync) and :class:`AsyncClient`.

Both have the same methods; the async ones are coroutines and ``events`` is an async
iterator. Each operation is written once, as a generator that yields the requests it needs
(and the pauses it wants) and returns its result; the two classes only drive it with their
own I/O, so the request building and error parsing live in one place.

Errors:

* :class:`ApiError` -- the API answered 4xx/5xx (``status``, ``code``, ``message``, ``field``,
  ``hint``, ``retry_after``), or an event stream kept breaking (``code`` ``client.stream``).
* :class:`TimeoutError` -- :meth:`Client.wait` ran past its ``timeout``.
* :class:`httpx.TransportError` -- the API could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from sgflow.errors import SgflowError
from sgflow.settings import DEFAULT_API_URL, Settings

__all__ = [
    "BATCH_FINAL",
    "DEFAULT_API_URL",
    "RUN_FINAL",
    "ApiError",
    "AsyncClient",
    "Client",
    "Event",
]

RUN_FINAL = ("succeeded", "failed", "cancelled")
BATCH_FINAL = ("completed", "failed", "expired", "cancelled")
_STREAM_TIMEOUT_S = 60  # the API sends a keep-alive every 15 s
_MAX_RECONNECTS = 100
_STREAM_BREAKS = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)

T = TypeVar("T")
Json = dict[str, Any]
Program = Json | str  # name@version, or an inline program


class ApiError(SgflowError):
    """An error answer of the API, from its ``{"error": {...}}`` body: the same
    :class:`sgflow.errors.SgflowError` the service raised, rebuilt.

    ``status`` is the HTTP status (0 for errors of the client itself), ``code`` the stable
    code (``run.not_found``, ``input.invalid``, ``request.invalid`` when the body has none;
    a code this version does not know is kept as it is), ``field`` the JSON pointer of the
    offending field, ``limit``, ``hint`` what to do, ``retryable``, ``retry_after`` the
    seconds a 429 asks to wait, ``body`` the whole error object."""

    registered_only = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        limit: Any = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        body: Json | None = None,
    ) -> None:
        super().__init__(code, message, field=field, limit=limit, hint=hint, retryable=retryable)
        self.status = status
        self.retry_after = retry_after
        self.body = body or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        retry_after = _float_or_none(response.headers.get("Retry-After"))
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            return cls(
                response.status_code,
                "request.invalid" if response.status_code < 500 else "internal",
                response.text[:200] or f"HTTP {response.status_code}",
                retry_after=retry_after,
            )
        return cls(
            response.status_code,
            code,
            message,
            field=error.get("field"),
            limit=error.get("limit"),
            hint=error.get("hint"),
            retryable=error.get("retryable"),
            retry_after=retry_after,
            body=error,
        )


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a run: ``id`` (for ``Last-Event-ID``), ``kind``
    (``run.queued``, ``step.delta``, ``step.finished``, …) and its ``data``."""

    id: str | None
    kind: str
    data: Json


# -- the pure core: requests, answers, operations ------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: Any = None
    params: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Op = Generator[_Call | _Sleep, httpx.Response | None, T]


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _body(response: httpx.Response | None) -> Any:
    """The JSON body of a success, else raise :class:`ApiError`."""
    assert response is not None, "a _Call is always answered"
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    return response.json()


def _one(call: _Call) -> _Op[Json]:
    body: Json = _body((yield call))
    return body


def _create_program(program: Program) -> _Op[Json]:
    body = {"source": program} if isinstance(program, str) else program
    return _one(_Call("POST", "/v1/programs", json=body))


def _submit(
    program: Program,
    inputs: Json,
    idempotency_key: str | None,
    priority: int,
    deadline_s: float | None = None,
) -> _Op[Json]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body: Json = {"program": program, "inputs": inputs, "priority": priority}
    if deadline_s is not None:
        body["deadline_s"] = deadline_s
    return _one(_Call("POST", "/v1/runs", json=body, headers=headers))


def _wait(run_id: str, timeout: float | None, poll_s: float) -> _Op[Json]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run: Json = _body((yield _Call("GET", f"/v1/runs/{run_id}")))
        if run["status"] in RUN_FINAL:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {run['status']}")
        yield _Sleep(poll_s)


def _list_runs(
    status: str | None, program: str | None, cursor: str | None, limit: int
) -> _Op[Json]:
    given = {"status": status, "program": program, "cursor": cursor, "limit": limit}
    params = {k: v for k, v in given.items() if v is not None}
    return _one(_Call("GET", "/v1/runs", params=params))


def _extract(
    schema: Json, text: str, instructions: str | None, timeout_s: float, http_s: float
) -> _Op[Json]:
    body: Json = {"schema": schema, "text": text, "timeout_s": timeout_s}
    if instructions is not None:
        body["instructions"] = instructions
    response = yield _Call("POST", "/v1/extract", json=body, timeout=timeout_s + http_s)
    answer: Json = _body(response)
    # 202: not done within timeout_s; the answer is the run, which the caller can wait on
    return answer if "object" in answer else {"object": None, "run": answer}


def _create_batch(program: Program, lines: list[Json], deadline_s: float | None) -> _Op[Json]:
    body: Json = {"program": program, "inputs": lines}
    if deadline_s is not None:
        body["deadline_s"] = deadline_s
    return _one(_Call("POST", "/v1/batches", json=body))


def _batch_results(batch_id: str) -> _Op[list[Json]]:
    response = yield _Call("GET", f"/v1/batches/{batch_id}/results")
    assert response is not None
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


class _Follow:
    """The state of following a run's events across reconnects: parses SSE lines into
    :class:`Event`\\ s and remembers the last id, so a new stream resumes after it."""

    def __init__(self, run_id: str, last_event_id: str | None) -> None:
        self.run_id = run_id
        self.last_id = last_event_id
        self.done = False
        self.connects = 0
        self._fields: dict[str, str] = {}

    def call(self) -> _Call:
        """The request for the next stream; raises when the stream broke too often."""
        self.connects += 1
        if self.connects > _MAX_RECONNECTS:
            raise ApiError(0, "client.stream", f"the event stream of {self.run_id} kept breaking")
        self._fields = {}
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        path = f"/v1/runs/{self.run_id}/events"
        return _Call("GET", path, headers=headers, timeout=_STREAM_TIMEOUT_S)

    def feed(self, line: str) -> Event | None:
        """One line of the stream; the event it completes, if any."""
        if line == "":
            fields, self._fields = self._fields, {}
            if "event" not in fields:
                return None
            self.last_id = fields.get("id", self.last_id)
            self.done = fields["event"] == "run.finished"
            return Event(self.last_id, fields["event"], json.loads(fields.get("data") or "{}"))
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            self._fields[name] = value.removeprefix(" ")
        return None

    def after_break(self, run: Json) -> None:
        """The stream ended before ``run.finished``: stop if the run is final anyway."""
        self.done = run["status"] in RUN_FINAL


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key
    if key is None:
        secret = _settings().api_key
        key = secret.get_secret_value() if secret is not None else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _url(base_url: str | None) -> str:
    return base_url or _settings().api_url


def _settings() -> Settings:
    """The settings (``SGFLOW_API_URL``, ``SGFLOW_API_KEY``), read when a default is needed."""
    return Settings()


def _kwargs(call: _Call) -> Json:
    kwargs: Json = {"json": call.json, "params": call.params, "headers": call.headers}
    if call.timeout is not None:
        kwargs["timeout"] = call.timeout
    return kwargs


# -- the two drivers -----------------------------------------------------------------------


class Client:
    """The API over a sync :class:`httpx.Client`; use it as a context manager.

    ``base_url`` defaults to ``$SGFLOW_API_URL``, else ``http://127.0.0.1:8000``;
    ``api_key`` to ``$SGFLOW_API_KEY``; ``timeout`` (seconds, default 30) applies to each
    request. ``transport`` replaces the network (e.g. :class:`httpx.MockTransport`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = _url(base_url)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(self._http.request(step.method, step.path, **_kwargs(step)))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def create_program(self, program: Program) -> Json:
        """Store a program: a dict, or its YAML text. Returns the stored program."""
        return self._run(_create_program(program))

    def submit(
        self,
        program: Program,
        inputs: Json,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        deadline_s: float | None = None,
    ) -> Json:
        """Submit a run of ``program`` (``name@version`` or an inline dict); the queued run.
        ``deadline_s``: seconds it has to finish, else it fails with
        ``run.deadline_exceeded``."""
        return self._run(_submit(program, inputs, idempotency_key, priority, deadline_s))

    def get_run(self, run_id: str) -> Json:
        return self._run(_one(_Call("GET", f"/v1/runs/{run_id}")))

    def wait(self, run_id: str, *, timeout: float | None = None, poll_s: float = 0.2) -> Json:
        """Poll until the run is final and return it; :class:`TimeoutError` past ``timeout``
        seconds (default: wait for ever)."""
        return self._run(_wait(run_id, timeout, poll_s))

    def events(self, run_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The run's events, from after ``last_event_id`` (default: the first) through
        ``run.finished``; a broken stream is resumed with ``Last-Event-ID``."""
        follow = _Follow(run_id, last_event_id)
        while not follow.done:
            call = follow.call()
            try:
                with self._http.stream(call.method, call.path, **_kwargs(call)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ApiError.from_response(response)
                    for line in response.iter_lines():
                        if event := follow.feed(line):
                            yield event
                        if follow.done:
                            return
            except _STREAM_BREAKS:
                pass
            follow.after_break(self.get_run(run_id))

    def cancel(self, run_id: str) -> Json:
        return self._run(_one(_Call("POST", f"/v1/runs/{run_id}/cancel")))

    def list_runs(
        self,
        *,
        status: str | None = None,
        program: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Json:
        """One page, newest first: ``{"data": [...], "next_cursor": ...}``."""
        return self._run(_list_runs(status, program, cursor, limit))

    def extract(
        self,
        schema: Json,
        text: str,
        *,
        instructions: str | None = None,
        timeout_s: float = 30,
    ) -> Json:
        """``{"object": ..., "run": ...}``; ``object`` is None when the run was not done
        within ``timeout_s`` (wait on ``run["id"]``)."""
        return self._run(_extract(schema, text, instructions, timeout_s, self.timeout))

    def create_batch(
        self,
        program: Program,
        lines: list[Json],
        *,
        deadline_s: float | None = None,
    ) -> Json:
        """One run per line ``{"custom_id", "inputs"}``; returns the batch."""
        return self._run(_create_batch(program, lines, deadline_s))

    def get_batch(self, batch_id: str) -> Json:
        return self._run(_one(_Call("GET", f"/v1/batches/{batch_id}")))

    def batch_results(self, batch_id: str) -> list[Json]:
        """One row per line, in input order (``in_progress`` for lines not final yet)."""
        return self._run(_batch_results(batch_id))

    def cancel_batch(self, batch_id: str) -> Json:
        return self._run(_one(_Call("POST", f"/v1/batches/{batch_id}/cancel")))


class AsyncClient:
    """:class:`Client`'s API over :class:`httpx.AsyncClient`: the same methods, as
    coroutines; :meth:`events` is an async iterator. Use it with ``async with``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = _url(base_url)
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                else:
                    answer = await self._http.request(step.method, step.path, **_kwargs(step))
                    step = op.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def create_program(self, program: Program) -> Json:
        return await self._run(_create_program(program))

    async def submit(
        self,
        program: Program,
        inputs: Json,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        deadline_s: float | None = None,
    ) -> Json:
        return await self._run(_submit(program, inputs, idempotency_key, priority, deadline_s))

    async def get_run(self, run_id: str) -> Json:
        return await self._run(_one(_Call("GET", f"/v1/runs/{run_id}")))

    async def wait(self, run_id: str, *, timeout: float | None = None, poll_s: float = 0.2) -> Json:
        return await self._run(_wait(run_id, timeout, poll_s))

    async def events(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        follow = _Follow(run_id, last_event_id)
        while not follow.done:
            call = follow.call()
            try:
                async with self._http.stream(call.method, call.path, **_kwargs(call)) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise ApiError.from_response(response)
                    async for line in response.aiter_lines():
                        if event := follow.feed(line):
                            yield event
                        if follow.done:
                            return
            except _STREAM_BREAKS:
                pass
            follow.after_break(await self.get_run(run_id))

    async def cancel(self, run_id: str) -> Json:
        return await self._run(_one(_Call("POST", f"/v1/runs/{run_id}/cancel")))

    async def list_runs(
        self,
        *,
        status: str | None = None,
        program: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Json:
        return await self._run(_list_runs(status, program, cursor, limit))

    async def extract(
        self,
        schema: Json,
        text: str,
        *,
        instructions: str | None = None,
        timeout_s: float = 30,
    ) -> Json:
        return await self._run(_extract(schema, text, instructions, timeout_s, self.timeout))

    async def create_batch(
        self,
        program: Program,
        lines: list[Json],
        *,
        deadline_s: float | None = None,
    ) -> Json:
        return await self._run(_create_batch(program, lines, deadline_s))

    async def get_batch(self, batch_id: str) -> Json:
        return await self._run(_one(_Call("GET", f"/v1/batches/{batch_id}")))

    async def batch_results(self, batch_id: str) -> list[Json]:
        return await self._run(_batch_results(batch_id))

    async def cancel_batch(self, batch_id: str) -> Json:
        return await self._run(_one(_Call("POST", f"/v1/batches/{batch_id}/cancel")))
