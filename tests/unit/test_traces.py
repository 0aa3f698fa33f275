"""Traces and feedback over the real API (create_api) with a real trace store on tmp_path and a
small in-test backend: ids, X-Request-ID, what a trace holds, that nothing secret is recorded,
feedback's contract and bad input; the store across a restart and within its bounds; the CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from twin_ops.config import load_params
from twin_ops.rag import Passage, Retrieval
from twin_ops.serving.api import create_api
from twin_ops.serving.records import Generation, GenerationRequest, Health, ModelInfo, StreamEnd, StreamStart
from twin_ops.traces.store import Trace, TraceStore

ROOT = Path(__file__).resolve().parents[2]
KEY = "trace-test-key-5f1c"
WREN = "wren-halvorsen"
ANSWER = "Keep the bilge dry and the kettle on."
RETRIEVAL_S = 0.02


class Backend:
    """Three passages (two fit the prompt), a fixed answer, and the scheduler's timings."""

    async def models(self) -> dict[str, str]:
        return {f"{WREN}-twin": f"{WREN}-twin:v3"}

    async def retrieve(self, query: str, author: str | None, k: int | None, history=()) -> Retrieval:
        await asyncio.sleep(RETRIEVAL_S)
        passages = tuple(
            Passage(f"chunk-{n}", WREN, f"Post {n}", f"http://127.0.0.1:8000/posts/{n}/", f"text {n}", 1.0 - n / 10)
            for n in range(3)
        )
        return Retrieval(author or WREN, "request" if author else "default", (query,), passages)

    async def generate(self, request: GenerationRequest) -> Generation:
        return Generation(ANSWER, "stop", 120, 9, 2, f"{WREN}-twin:v3", queue_s=0.25, prefill_s=0.5, decode_s=1.5)

    async def stream(self, request: GenerationRequest) -> AsyncIterator:
        yield StreamStart(2, f"{WREN}-twin:v3", 120)
        for piece in ("Keep the bilge dry", " and the kettle on."):
            yield piece
        yield StreamEnd("stop", 9, queue_s=0.25, prefill_s=0.5, decode_s=1.5)

    async def health(self, model_id: str) -> Health:
        return Health(True, ModelInfo(f"{WREN}-twin:v3", True, "cpu", model_id=model_id), "ok")

    async def check_admission(self, model_id: str, prompt_tokens: int, max_tokens: int, deadline: float) -> None:
        return None  # never too busy


def store_at(tmp_path: Path, **bounds) -> TraceStore:
    limits = {"max_records": 1000, "max_age_days": 30.0, **bounds}
    return TraceStore(tmp_path / "traces" / "traces.sqlite", **limits)


def api(tmp_path: Path, key: str | None = KEY, overrides: dict | None = None) -> tuple[TestClient, TraceStore]:
    params = load_params(ROOT / "params.yaml", overrides, use_env=False)
    store = store_at(tmp_path)
    return TestClient(create_api(Backend(), params, key, traces=store)), store


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def ask(client: TestClient, question: str = "How do I keep the bilge dry?", **extra):
    body = {"model": f"{WREN}-twin", "messages": [{"role": "user", "content": question}], **extra}
    return client.post("/v1/chat/completions", json=body, headers={**auth(), **extra.pop("headers", {})})


# --- ids and traces -------------------------------------------------------------------------------


def test_an_answer_has_an_id_and_a_trace_with_everything_that_happened(tmp_path):
    client, _ = api(tmp_path)
    conversation = [
        {"role": "user", "content": "What is the first rule of the yard?"},
        {"role": "assistant", "content": "Tools go back where they came from."},
        {"role": "user", "content": "Why does it matter?"},
    ]
    response = client.post(
        "/v1/chat/completions", json={"model": f"{WREN}-twin", "messages": conversation}, headers=auth()
    )
    assert response.status_code == 200, response.text
    answer_id = response.json()["id"]
    assert answer_id.startswith("chatcmpl-") and response.headers["X-Request-ID"] == answer_id

    trace = client.get(f"/v1/traces/{answer_id}", headers=auth())
    assert trace.status_code == 200, trace.text
    record = trace.json()
    assert record["id"] == answer_id and record["status"] == 200 and record["route"] == "/v1/chat/completions"
    assert record["author"] == WREN and record["model"] == f"{WREN}-twin"
    assert record["model_version"] == f"{WREN}-twin:v3"
    assert record["messages"] == conversation
    assert [(p["chunk_id"], p["title"], p["score"], p["used"]) for p in record["passages"]] == [
        ("chunk-0", "Post 0", 1.0, True),
        ("chunk-1", "Post 1", 0.9, True),
        ("chunk-2", "Post 2", 0.8, False),  # retrieved, cut by the context budget
    ]
    assert record["answer"] == ANSWER and record["finish_reason"] == "stop"
    assert (record["prompt_tokens"], record["completion_tokens"]) == (120, 9)
    timings = record["timings"]
    assert timings["retrieval_s"] >= RETRIEVAL_S
    assert (timings["queue_s"], timings["prefill_s"], timings["decode_s"]) == (0.25, 0.5, 1.5)
    assert timings["total_s"] >= timings["retrieval_s"]
    assert record["feedback"] is None
    # Other routes get an id too (the header), but no trace.
    health = client.get("/health")
    assert health.headers["X-Request-ID"].startswith("req-")
    assert client.get(f"/v1/traces/{health.headers['X-Request-ID']}", headers=auth()).status_code == 404


def test_a_clients_own_request_id_is_kept_and_finds_the_trace(tmp_path):
    client, _ = api(tmp_path)
    response = ask(client, headers={"X-Request-ID": "client-7.a:b"})
    assert response.headers["X-Request-ID"] == "client-7.a:b"
    answer_id = response.json()["id"]
    assert answer_id != "client-7.a:b"  # ids stay unique even when clients reuse theirs
    by_client_id = client.get("/v1/traces/client-7.a:b", headers=auth()).json()
    assert by_client_id["id"] == answer_id and by_client_id["request_id"] == "client-7.a:b"
    # A header that is not an id (spaces, too long) is replaced, never echoed or stored.
    for bad in ("two words", "x" * 300):
        response = ask(client, headers={"X-Request-ID": bad})
        assert response.headers["X-Request-ID"] == response.json()["id"]
        assert client.get(f"/v1/traces/{response.json()['id']}", headers=auth()).json()["request_id"] is None


def test_rag_answers_carry_an_id_and_streams_are_traced_before_done(tmp_path):
    client, store = api(tmp_path)
    rag = client.post("/rag", json={"query": "Who keeps the kettle on?"}, headers=auth())
    assert rag.status_code == 200
    assert rag.json()["id"].startswith("rag-") and rag.headers["X-Request-ID"] == rag.json()["id"]
    traced = store.get(rag.json()["id"])
    assert traced.route == "/rag" and traced.answer == ANSWER and traced.author == WREN
    assert traced.messages[0].content == "Who keeps the kettle on?"

    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": f"{WREN}-twin", "messages": [{"role": "user", "content": "Bilge?"}], "stream": True},
        headers=auth(),
    ) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        header_id = response.headers["X-Request-ID"]
    assert events[-1] == "[DONE]"
    stream_id = json.loads(events[0])["id"]
    assert stream_id == header_id
    streamed = store.get(stream_id)
    assert streamed.stream and streamed.answer == ANSWER and streamed.finish_reason == "stop"
    assert streamed.completion_tokens == 9 and streamed.timings.decode_s == 1.5
    assert [p.used for p in streamed.passages] == [True, True, False]


def test_refused_requests_are_traced_with_their_status_and_reason(tmp_path):
    client, store = api(tmp_path)
    unknown = ask(client, model="nobody-twin")
    bad = client.post("/rag", json={"query": "x", "k": "five"}, headers=auth())
    huge = client.post(
        "/rag", content=b'{"query": "' + b"x" * 300_000 + b'"}', headers={**auth(), "Content-Type": "application/json"}
    )
    unauthorized = client.post("/rag", json={"query": "Who keeps the kettle on?"})
    statuses = {}
    for response in (unknown, bad, huge, unauthorized):
        trace = store.get(response.headers["X-Request-ID"])
        statuses[response.status_code] = (trace.status, trace.error)
    assert statuses[404][0] == 404 and "nobody-twin" in statuses[404][1]
    assert statuses[422][0] == 422 and "k" in statuses[422][1]
    assert statuses[413][0] == 413 and "request body is" in statuses[413][1]
    assert statuses[401][0] == 401 and "API key" in statuses[401][1]
    assert store.count() == 4


def test_nothing_secret_is_ever_recorded(tmp_path):
    client, store = api(tmp_path)
    ask(client)
    client.post("/rag", json={"query": "Who keeps the kettle on?"}, headers=auth())
    refused = client.post("/rag", json={"query": "x"}, headers={"Authorization": f"Bearer {KEY}-wrong"})
    answer_id = ask(client).json()["id"]
    client.post("/v1/feedback", json={"id": answer_id, "rating": "up"}, headers=auth())
    stored = b"".join(path.read_bytes() for path in store.path.parent.iterdir())
    assert store.count() == 4 and b"bilge" in stored  # the conversation is there...
    # ...and neither the key (right or wrong) nor a header: only the 401's own advice names the header.
    assert KEY.encode() not in stored and b"Bearer trace" not in stored
    assert "'Authorization: Bearer <key>'" in store.get(refused.headers["X-Request-ID"]).error


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_is_stored_with_its_trace_and_the_latest_wins(tmp_path):
    client, store = api(tmp_path)
    answer_id = ask(client).json()["id"]
    first = client.post("/v1/feedback", json={"id": answer_id, "rating": "up"}, headers=auth())
    assert first.status_code == 200, first.text
    assert first.json() == {"id": answer_id, "rating": "up", "correction": None, "trusted": True}
    correction = "  Open the seacock, pump until the float drops, then close it again.  "
    again = client.post(
        "/v1/feedback", json={"id": answer_id, "rating": "down", "correction": correction}, headers=auth()
    )
    assert again.status_code == 200
    trace = client.get(f"/v1/traces/{answer_id}", headers=auth()).json()
    assert trace["feedback"]["rating"] == "down" and trace["feedback"]["correction"] == correction.strip()
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "chatcmpl-nope", "rating": "up"}, 404, "no answer with id 'chatcmpl-nope'"),
        ({"rating": "up"}, 422, "id: Field required"),
        ({"id": "{answer}", "rating": "meh"}, 422, "rating: Input should be 'up' or 'down'"),
        ({"id": "{answer}", "rating": True}, 422, "rating"),
        ({"id": "{answer}", "rating": "down", "correction": "x" * 4001}, 413, "the limit is 4000"),
        ({"id": "{answer}", "rating": "down", "correction": "word " * 601}, 413, "601 words; the limit is 600"),
        ({"id": "{answer}", "rating": "down", "correction": "   "}, 422, "correction is empty"),
        ({"id": "{answer}", "rating": "down", "corection": "typo"}, 422, "corection: Extra inputs"),
        ({"id": "{failed}", "rating": "down"}, 422, "has no answer to rate"),
    ],
)
def test_bad_feedback_is_a_clear_4xx_and_stores_nothing(tmp_path, body, status, message):
    client, store = api(tmp_path)
    answer_id = ask(client).json()["id"]
    failed_id = ask(client, model="nobody-twin").headers["X-Request-ID"]
    body = {name: value.format(answer=answer_id, failed=failed_id) if isinstance(value, str) else value
            for name, value in body.items()}  # fmt: skip
    response = client.post("/v1/feedback", json=body, headers=auth())
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert store.get(answer_id).feedback is None and store.get(failed_id).feedback is None


def test_feedback_needs_the_key_and_is_untrusted_without_one(tmp_path):
    client, _ = api(tmp_path)
    answer_id = ask(client).json()["id"]
    assert client.post("/v1/feedback", json={"id": answer_id, "rating": "up"}).status_code == 401
    assert client.get(f"/v1/traces/{answer_id}").status_code == 401

    open_client, _ = api(tmp_path / "open", key=None)
    open_id = ask(open_client).json()["id"]
    assert open_client.post("/v1/feedback", json={"id": open_id, "rating": "up"}).json()["trusted"] is False
    trusting, _ = api(tmp_path / "trusting", key=None, overrides={"serving": {"traces": {"trust_without_key": True}}})
    trusting_id = ask(trusting).json()["id"]
    assert trusting.post("/v1/feedback", json={"id": trusting_id, "rating": "up"}).json()["trusted"] is True


def test_without_a_store_the_trace_routes_say_traces_are_off(tmp_path):
    params = load_params(ROOT / "params.yaml", use_env=False)
    client = TestClient(create_api(Backend(), params, KEY))
    answer = ask(client)
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == answer.json()["id"]
    off = client.get(f"/v1/traces/{answer.json()['id']}", headers=auth())
    assert off.status_code == 503 and "serving.traces.enabled" in off.json()["error"]["message"]


def test_the_schema_documents_the_new_routes(tmp_path):
    client, _ = api(tmp_path)
    schema = client.get("/openapi.json").json()["paths"]
    assert set(schema["/v1/feedback"]["post"]["responses"]) >= {"200", "401", "404", "413", "422"}
    assert set(schema["/v1/traces/{trace_id}"]["get"]["responses"]) >= {"200", "401", "404"}
    assert "id" in client.get("/openapi.json").json()["components"]["schemas"]["RagResponse"]["required"]


# --- the store ------------------------------------------------------------------------------------


def trace(n: int, created_at: datetime | None = None, author: str = WREN) -> Trace:
    return Trace(
        id=f"chatcmpl-{n}",
        created_at=created_at or datetime.now(UTC),
        route="/v1/chat/completions",
        author=author,
        model=f"{author}-twin",
        model_version=f"{author}-twin:v1",
        messages=[{"role": "user", "content": f"question {n}"}],
        answer=f"answer {n}",
    )


def test_records_survive_a_restart(tmp_path):
    store = store_at(tmp_path)
    store.write(trace(1))
    store.rate("chatcmpl-1", "down", "what the author would have said", trusted=True)
    del store  # the process that wrote them is gone; a new one opens the same file
    reopened = store_at(tmp_path)
    found = reopened.get("chatcmpl-1")
    assert found.answer == "answer 1" and found.question == "question 1"
    assert found.feedback.rating == "down" and found.feedback.trusted
    with sqlite3.connect(reopened.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_store_keeps_within_its_bounds(tmp_path):
    store = store_at(tmp_path, max_records=3, max_age_days=1.0)
    store.write(trace(0, datetime.now(UTC) - timedelta(days=2)))  # older than max_age_days: gone at once
    assert store.get("chatcmpl-0") is None
    for n in range(1, 6):
        store.write(trace(n))
    store.rate("chatcmpl-5", "up", None, trusted=True)
    assert store.count() == 3
    assert [t.id for t in store.list()] == ["chatcmpl-5", "chatcmpl-4", "chatcmpl-3"]
    store.write(trace(6, author="juno-marsh"))
    assert [t.id for t in store.list(author="juno-marsh")] == ["chatcmpl-6"]
    assert store.rated(WREN)[0].id == "chatcmpl-5"


def test_two_writers_share_the_file(tmp_path):
    """Two stores (as two Ingress replicas) writing the same file at once lose nothing."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = store_at(tmp_path), store_at(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: (first if n % 2 else second).write(trace(n)), range(40)))
    assert first.count() == 40


# --- the CLI --------------------------------------------------------------------------------------


def test_traces_cli_lists_and_shows(tmp_path, monkeypatch):
    from twin_ops.cli import app

    monkeypatch.setenv("TWIN_OPS_PARAM__serving__traces__path", str(tmp_path / "traces" / "traces.sqlite"))
    store = store_at(tmp_path)
    store.write(trace(1, datetime.now(UTC) - timedelta(hours=3)))
    store.write(trace(2, author="juno-marsh"))
    store.rate("chatcmpl-2", "down", "A better answer, in Juno's words.", trusted=True)
    runner = CliRunner()
    listed = runner.invoke(app, ["traces", "list", "--since", "1h"])
    assert listed.exit_code == 0, listed.output
    assert "chatcmpl-2" in listed.output and "chatcmpl-1" not in listed.output
    by_author = runner.invoke(app, ["traces", "list", "--author", WREN])
    assert "chatcmpl-1" in by_author.output and "chatcmpl-2" not in by_author.output
    shown = runner.invoke(app, ["traces", "show", "chatcmpl-2"])
    assert shown.exit_code == 0
    assert json.loads(shown.output)["feedback"]["correction"] == "A better answer, in Juno's words."
    missing = runner.invoke(app, ["traces", "show", "chatcmpl-404"])
    assert missing.exit_code != 0 and "no trace 'chatcmpl-404'" in missing.output
    assert runner.invoke(app, ["traces", "list", "--since", "yesterday"]).exit_code != 0
