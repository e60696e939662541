"""``sgflow.client`` and ``sgflow batch`` against the real API, a real worker process, real
Redis and the real engine (the ``stack`` fixture: tests/service/stack.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sgflow.cli import main
from sgflow.client import ApiError, AsyncClient, Client
from tests.service.stack import Stack
from tests.service.test_runs_e2e import LIBRARY, sample

pytestmark = pytest.mark.engine

SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": "string", "maxLength": 60}},
    "required": ["company"],
}


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    return stack.acme_key


@pytest.fixture(scope="module")
def client(stack: Stack, key: str) -> Iterator[Client]:
    with Client(stack.url, key, timeout=120) as c:
        c.create_program((LIBRARY / "sql-generate.yaml").read_text())
        yield c


def test_submit_wait_and_events_with_reconnect(client: Client) -> None:
    run = client.submit("sql-generate@1", sample("sql-generate"), idempotency_key="k-1")
    assert run["status"] == "queued"
    assert (
        client.submit("sql-generate@1", sample("sql-generate"), idempotency_key="k-1")["id"]
        == (run["id"])
    )
    done = client.wait(run["id"], timeout=120)
    assert done["status"] == "succeeded" and done["output"]["sql"].startswith("SELECT ")

    events = list(client.events(run["id"]))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run.queued" and kinds[-1] == "run.finished"
    assert kinds.index("step.started") < kinds.index("step.finished")
    rest = list(client.events(run["id"], last_event_id=events[1].id))
    assert rest == events[2:]
    assert run["id"] in [r["id"] for r in client.list_runs(status="succeeded")["data"]]


def test_events_resume_after_a_broken_stream() -> None:
    """A stream that ends before ``run.finished`` is reopened with ``Last-Event-ID``."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/runs/r1":
            return httpx.Response(200, json={"id": "r1", "status": "running"})
        seen.append(request.headers.get("Last-Event-ID"))
        if len(seen) == 1:
            body = "id: 1-0\nevent: run.queued\ndata: {}\n\n: keep-alive\n\n"
        else:
            body = 'id: 2-0\nevent: run.finished\ndata: {"status": "succeeded"}\n\n'
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with Client("http://api", "k", transport=httpx.MockTransport(handler)) as c:
        events = list(c.events("r1"))
    assert [(e.id, e.kind) for e in events] == [("1-0", "run.queued"), ("2-0", "run.finished")]
    assert events[1].data == {"status": "succeeded"} and seen == [None, "1-0"]


def test_api_errors_carry_code_field_and_hint(client: Client) -> None:
    with pytest.raises(ApiError, match=r"run\.not_found: there is no run nope") as missing:
        client.get_run("nope")
    assert missing.value.status == 404 and missing.value.hint == "GET /v1/runs lists yours"
    with pytest.raises(ApiError) as invalid:
        client.submit("sql-generate@1", {"table": "t(a int)", "question": 5})
    err = invalid.value
    assert err.status == 422 and err.code == "input.invalid"
    assert err.field == "/inputs/question" and "question" in err.message


def test_async_client_submit_wait_extract(stack: Stack, key: str) -> None:
    async def go() -> tuple[dict[str, object], dict[str, object]]:
        async with AsyncClient(stack.url, key, timeout=120) as c:
            run = await c.submit("sql-generate@1", sample("sql-generate"))
            done = await c.wait(run["id"], timeout=120)
            got = await c.extract(SCHEMA, "Northwind Analytics was founded in 2009.", timeout_s=90)
            return done, got

    done, got = asyncio.run(go())
    assert done["status"] == "succeeded"
    assert isinstance(got["object"], dict) and isinstance(got["object"]["company"], str)


def test_batch_command_writes_results_in_order(
    stack: Stack, key: str, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = ["names of users", "users older than 30", "cities", "ages", "users in Paris"]
    table = sample("sql-generate")["table"]
    lines = [{"inputs": {"table": table, "question": q}} for q in questions]
    lines[2]["custom_id"] = "cities"
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    argv = ["batch", "sql-generate@1", "--inputs-jsonl", str(tmp_path / "in.jsonl")]
    code = main([*argv, "--out", str(out), "--api", stack.url, "--key", key])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["line-1", "line-2", "cities", "line-4", "line-5"]
    assert all(r["status"] == "succeeded" and r["output"]["sql"] for r in rows)

    assert main(["batch", "sql-generate@1", "--inputs-jsonl", str(out), "--key", key]) == 2
    assert "cli.inputs" in capsys.readouterr().err
