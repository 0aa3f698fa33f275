"""Serving without Ray or services: the API's contract over a fake backend, retrieval's pure parts,
the batcher and the Serve config."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import time
from collections.abc import AsyncIterator

import pytest
import yaml
from fastapi.testclient import TestClient

from twin_ops.errors import InvalidRequest, RequestError, RequestTooLarge, TooManyRequests, Unavailable
from twin_ops.features.search import SearchHit
from twin_ops.llm import Sampling
from twin_ops.llm.model import DecodeRow
from twin_ops.rag import Passage, Retrieval, context_block
from twin_ops.rag.retrieve import KnownAuthor, SearchPlan, detect_author, fuse
from twin_ops.serving.api import create_api, sources_of
from twin_ops.serving.errors import as_serving_error
from twin_ops.serving.records import (
    Generation,
    GenerationRequest,
    Health,
    ModelInfo,
    ServedPrompt,
    StreamEnd,
    StreamStart,
)

KEY = "unit-key"
AUTHORS = [KnownAuthor("wren-halvorsen", "Wren Halvorsen"), KnownAuthor("juno-marsh", "Juno Marsh")]


def passage(n: int, url: str | None = None, score: float = 1.0) -> Passage:
    url = url or f"http://127.0.0.1:8000/posts/{n}/"
    return Passage(f"c{n}", "wren-halvorsen", f"Post {n}", url, f"text {n}", score)


class FakeBackend:
    """Answers instantly; ``fail`` makes a step raise, ``slow_s`` makes retrieval hang that long."""

    def __init__(self, fail: RequestError | None = None, slow_s: float = 0.0) -> None:
        self.fail, self.slow_s = fail, slow_s
        self.requests: list[GenerationRequest] = []
        self.admissions: list[tuple[str, int, int]] = []
        self.histories: list[tuple[tuple[str, str], ...]] = []  # what each retrieval was given

    async def retrieve(self, query: str, author: str | None, k: int | None, history=()) -> Retrieval:
        self.histories.append(history)
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if self.fail:
            raise self.fail
        passages = (passage(1), passage(2), passage(3, url="http://127.0.0.1:8000/posts/1/", score=0.5))
        return Retrieval(author or "wren-halvorsen", "request" if author else "default", (query,), passages[: k or 3])

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        return Generation("an answer", "stop", 10, 2, min(2, len(request.passages)), "twin:v1")

    async def stream(self, request: GenerationRequest) -> AsyncIterator:
        yield StreamStart(len(request.passages), "twin:v1", 10)
        for piece in ("an", " answer"):
            yield piece
        if self.fail:
            raise self.fail
        yield StreamEnd("stop", 2)

    async def check_admission(self, model_id: str, prompt_tokens: int, max_tokens: int, deadline: float) -> None:
        self.admissions.append((model_id, prompt_tokens, max_tokens))
        if isinstance(self.fail, TooManyRequests):
            raise self.fail

    async def models(self) -> dict[str, str]:
        return {"wren-halvorsen-twin": "twin:v1", "juno-marsh-twin": "base:tiny"}

    async def health(self, model_id: str) -> Health:
        model = ModelInfo("twin:v1", True, "cpu", model_id=model_id)
        if self.fail:
            return Health(False, model, self.fail.message, (self.fail.message,))
        return Health(True, model, "ok")


def client_for(params, backend=None, key: str | None = KEY) -> TestClient:
    return TestClient(create_api(backend or FakeBackend(), params, key))


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def chat(params, **extra) -> dict:
    return {"model": "wren-halvorsen-twin", "messages": [{"role": "user", "content": "bilge?"}], **extra}


# --- the API ------------------------------------------------------------------------------------


def test_rag_returns_answer_sources_of_the_used_passages_and_version(params):
    response = client_for(params).post("/rag", json={"query": "bilge?", "k": 3}, headers=auth())
    assert response.status_code == 200
    body = response.json()
    assert body["answer"] == "an answer" and body["model_version"] == "twin:v1"
    # Two passages fitted the context; one source per article.
    assert [s["title"] for s in body["sources"]] == ["Post 1", "Post 2"]


def test_chat_completion_is_openai_shaped(params):
    body = client_for(params).post("/v1/chat/completions", json=chat(params), headers=auth()).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "an answer"}
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def test_chat_uses_the_last_user_message_and_keeps_the_history(params):
    backend = FakeBackend()
    messages = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "what about "}, {"type": "text", "text": "tides?"}]},
    ]
    client_for(params, backend).post("/v1/chat/completions", json=chat(params, messages=messages), headers=auth())
    assert backend.requests[0].messages == (("user", "hello"), ("assistant", "hi"), ("user", "what about tides?"))


def test_streaming_sends_server_sent_events_ending_with_done(params):
    response = client_for(params).post("/v1/chat/completions", json=chat(params, stream=True), headers=auth())
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[0]["sources"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "an answer"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_an_error_mid_stream_is_reported_in_the_stream(params):
    backend = FakeBackend(fail=Unavailable("replica died"))
    backend.retrieve = FakeBackend().retrieve  # retrieval works; generation breaks after two pieces
    response = client_for(params, backend).post("/v1/chat/completions", json=chat(params, stream=True), headers=auth())
    assert response.status_code == 200
    assert '"message":"replica died"' in response.text and response.text.rstrip().endswith("[DONE]")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"question": "x"}, 422, "query: Field required"),
        ({"query": ""}, 422, "query: String should have at least 1 character"),
        ({"query": "x", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ({"query": "x", "k": 10_000}, 422, "k must be between 1 and"),
        ({"query": "x", "max_tokens": 100_000}, 422, "max_tokens must be at most"),
        ({"query": "x" * 100_000}, 413, "the limit is"),
        ({"query": "x", "temperature": False}, 422, "temperature: Input should be a valid number"),
        ({"query": "x", "k": "3"}, 422, "k: Input should be a valid integer"),
        ({"query": "x", "author": "nobody"}, 404, "model 'nobody-twin' not found"),
    ],
    ids=[
        "missing",
        "empty",
        "k-zero",
        "k-too-big",
        "max-tokens",
        "oversized",
        "bool-temperature",
        "string-k",
        "unknown-author",
    ],
)
def test_invalid_rag_requests_get_a_4xx_with_a_clear_message(params, body, status, message):
    response = client_for(params).post("/rag", json=body, headers=auth())
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_malformed_json_and_an_oversized_body_are_rejected(params):
    client = client_for(params)
    bad = client.post("/rag", content=b"{oops", headers={**auth(), "Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    huge = b'{"query": "' + b"x" * (params.serving.limits.max_body_bytes + 1) + b'"}'
    too_big = client.post("/rag", content=huge, headers={**auth(), "Content-Type": "application/json"})
    assert too_big.status_code == 413


def test_chat_limits_unknown_model_and_roles(params):
    client = client_for(params)
    many = [{"role": "user", "content": "x"}] * (params.serving.limits.max_messages + 1)
    assert client.post("/v1/chat/completions", json=chat(params, messages=many), headers=auth()).status_code == 413
    assert client.post("/v1/chat/completions", json=chat(params, model="gpt-4o"), headers=auth()).status_code == 404
    last_assistant = chat(params, messages=[{"role": "assistant", "content": "x"}])
    response = client.post("/v1/chat/completions", json=last_assistant, headers=auth())
    assert response.status_code == 422 and "role 'user'" in response.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=chat(params, n=2), headers=auth()).status_code == 422


def test_api_key_is_required_when_configured_and_never_for_health(params):
    client = client_for(params)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    listed = client.get("/v1/models", headers=auth()).json()["data"]
    assert [(m["id"], m["model_version"]) for m in listed] == [
        ("wren-halvorsen-twin", "twin:v1"),
        ("juno-marsh-twin", "base:tiny"),
    ]
    assert client.get("/health").status_code == 200
    assert client_for(params, key=None).get("/v1/models").status_code == 200  # no key configured: open


def test_unavailable_dependencies_are_503_with_the_reason(params):
    down = Unavailable("weaviate is not reachable at http://127.0.0.1:1")
    client = client_for(params, FakeBackend(fail=down))
    response = client.post("/rag", json={"query": "bilge"}, headers=auth())
    assert response.status_code == 503 and "not reachable" in response.json()["error"]["message"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["reasons"] == [down.message]


def test_a_hanging_dependency_times_out_with_504(params):
    timeouts = params.serving.timeouts.model_copy(update={"retrieval_s": 0.2})
    fast = params.model_copy(update={"serving": params.serving.model_copy(update={"timeouts": timeouts})})
    started = time.monotonic()
    response = client_for(fast, FakeBackend(slow_s=30)).post("/rag", json={"query": "bilge"}, headers=auth())
    assert response.status_code == 504 and "retrieval took longer than 0.2s" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_openapi_schema_lists_the_routes_and_every_status_they_return(params):
    schema = client_for(params).get("/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/rag", "/health"} <= set(schema["paths"])
    for path in ("/rag", "/v1/chat/completions"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "404", "413", "422", "429", "503", "504"} <= set(responses), path
        assert responses["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert "Retry-After" in responses["429"]["headers"]


def test_a_refused_admission_is_429_with_retry_after(params):
    busy = TooManyRequests("wren-halvorsen-twin is busy", retry_after=7)
    response = client_for(params, FakeBackend(fail=busy)).post("/rag", json={"query": "bilge"}, headers=auth())
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json()["error"] == {"message": busy.message, "type": "rate_limit_exceeded", "code": 429}
    assert pickle.loads(pickle.dumps(busy)).retry_after == 7  # crosses Ray processes intact


def test_after_a_refusal_the_ingress_refuses_as_large_requests_by_itself_until_retry_after(params):
    backend = FakeBackend(fail=TooManyRequests("wren-halvorsen-twin is busy", retry_after=7))
    client = client_for(params, backend)
    first = client.post("/rag", json={"query": "bilge", "max_tokens": 64}, headers=auth())
    again = client.post("/rag", json={"query": "bilge", "max_tokens": 64}, headers=auth())
    assert first.status_code == again.status_code == 429 and 1 <= int(again.headers["retry-after"]) <= 7
    assert len(backend.admissions) == 1  # the second never reached the Generator
    smaller = client.post("/rag", json={"query": "bilge", "max_tokens": 8}, headers=auth())
    assert smaller.status_code == 429 and len(backend.admissions) == 2  # a smaller one still asks


def test_a_request_is_routed_to_its_authors_twin(params):
    backend = FakeBackend()
    client = client_for(params, backend)
    assert (
        client.post("/v1/chat/completions", json=chat(params, model="juno-marsh-twin"), headers=auth()).status_code
        == 200
    )
    assert client.post("/rag", json={"query": "x", "author": "juno-marsh"}, headers=auth()).status_code == 200
    assert client.post("/rag", json={"query": "x"}, headers=auth()).status_code == 200
    assert [r.model for r in backend.requests] == ["juno-marsh-twin", "juno-marsh-twin", "wren-halvorsen-twin"]
    assert all(r.deadline > time.time() for r in backend.requests)


def test_sources_keep_the_best_chunk_per_article():
    second_chunk_of_1 = Passage("c3", "wren-halvorsen", "Post 1", "http://127.0.0.1:8000/posts/1/", "more", 0.9)
    passages = (passage(1, score=0.4), passage(2), second_chunk_of_1)
    assert [(s.title, s.score) for s in sources_of(passages, 3)] == [("Post 1", 0.9), ("Post 2", 1.0)]
    assert sources_of(passages, 0) == []


# --- retrieval, prompts, generation helpers -----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "author"),
    [
        ("What does Juno Marsh think about compost?", "juno-marsh"),
        ("juno marsh's chutney", "juno-marsh"),
        ("posts by wren-halvorsen on retries", "wren-halvorsen"),
        ("How do I reef a sail?", None),
        ("Junomarsh compost", None),  # no whole-word mention, no guess
    ],
)
def test_self_query_finds_a_named_author_only(query, author):
    assert detect_author(query, AUTHORS) == author


def hit(chunk: str, score: float) -> SearchHit:
    return SearchHit(chunk, "d", "wren-halvorsen", f"T{chunk}", f"u{chunk}", "text", 0, score)


def test_fusion_keeps_one_list_in_order_and_rewards_agreement():
    single = fuse([[hit("a", 0.8), hit("b", 0.4)]])
    assert [p.chunk_id for p in single] == ["a", "b"] and single[0].score == 1.0
    fused = fuse([[hit("a", 0.9), hit("b", 0.8)], [hit("b", 0.5), hit("c", 0.4)]])
    assert [p.chunk_id for p in fused] == ["b", "a", "c"]  # b is near the top of both lists


class WordCounter:
    """Stands in for a LoadedModel's token counting: one word, one token."""

    def __call__(self, text: str) -> int:
        return len(text.split())

    count_tokens = __call__

    def cut(self, text: str, tokens: int) -> str:
        return " ".join(text.split()[:tokens])


def test_context_keeps_ranked_passages_within_the_token_budget():
    passages = [Passage(str(n), "a", f"T{n}", "u", " ".join(["word"] * 30), 1.0) for n in range(5)]
    text, used = context_block(passages, WordCounter(), budget=90)  # 32 words each with its header
    assert used == 3 and WordCounter()(text) <= 90  # two whole passages, the third cut to fit
    assert text.startswith("[1] T0") and "[3] T2" in text and "[4]" not in text
    assert context_block(passages, WordCounter(), budget=10) == ("", 0)  # no room for a useful scrap


def test_a_row_ends_at_eos_max_tokens_or_when_told_to_stop():
    stop = DecodeRow((1,), Sampling(max_tokens=10, temperature=0, top_p=1))
    for token in (5, 6, 2, 7):
        if stop.finish_reason is None:
            stop.take(token, [2])
    assert (stop.tokens, stop.finish_reason) == ([5, 6], "stop")
    length = DecodeRow((1,), Sampling(max_tokens=3, temperature=0, top_p=1))
    for token in (5, 6, 7):
        length.take(token, [2])
    assert (length.tokens, length.finish_reason) == ([5, 6, 7], "length")
    seen: list[int] = []
    told = DecodeRow(
        (1,), Sampling(max_tokens=10, temperature=0, top_p=1), on_token=seen.append, should_stop=lambda: bool(seen)
    )
    told.take(9, [2])
    assert (seen, told.finish_reason) == ([9], "cancelled")


# --- errors and the Serve config ---------------------------------------------------------------


def test_serving_errors_survive_pickling_and_unwrapping():
    error = pickle.loads(pickle.dumps(RequestTooLarge("query is too long")))
    assert isinstance(error, RequestTooLarge) and error.status == 413 and error.message == "query is too long"

    class Wrapped(Exception):  # the shape of ray.exceptions.RayTaskError: the original in .cause
        cause = InvalidRequest("bad k")

    assert isinstance(as_serving_error(Wrapped()), InvalidRequest)
    assert as_serving_error(RuntimeError("boom")) is None


def test_serve_config_is_valid_and_tests_get_one_replica_each(params, paths):
    from ray.serve.schema import ServeDeploySchema

    from twin_ops.serving.ops import serve_config

    config = serve_config(params, paths, port=8123, app_args={"models_dir": "/tmp/m"}, single_replica=True, gpus=1)
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "twin_ops.serving.app:build_app" and app.args == {"models_dir": "/tmp/m"}
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8123
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress", "Retriever", "Embedder", "Generator"}
    assert all(d.num_replicas == 1 and "autoscaling_config" not in d.model_fields_set for d in deployments.values())
    assert deployments["Generator"].ray_actor_options.num_gpus == 1
    as_written = yaml.safe_load((paths.root / params.serving.config_file).read_text())
    ServeDeploySchema.model_validate(as_written)  # what `serve deploy` reads, unchanged
    production = ServeDeploySchema.model_validate(serve_config(params, paths))
    generator = next(d for d in production.applications[0].deployments if d.name == "Generator")
    assert generator.autoscaling_config["max_replicas"] > 1


def test_weaviate_down_is_unavailable_quickly(params):
    from twin_ops.config import Settings
    from twin_ops.rag.retrieve import Retriever

    retriever = Retriever(params, AUTHORS, Settings(weaviate_url="http://127.0.0.1:1"))
    started = time.monotonic()
    assert "not reachable" in retriever.ping()
    with pytest.raises(Unavailable, match="not reachable"):
        retriever.search_all(SearchPlan(("bilge",), ([0.0],), None, 3))
    assert time.monotonic() - started < 10


def test_a_search_stuck_on_a_vanished_weaviate_is_unavailable_after_one_probe(params):
    from twin_ops.config import Settings
    from twin_ops.rag.retrieve import Retriever

    timeouts = params.serving.timeouts.model_copy(update={"health_s": 0.5})
    fast = params.model_copy(update={"serving": params.serving.model_copy(update={"timeouts": timeouts})})
    retriever = Retriever(fast, AUTHORS, Settings(weaviate_url="http://127.0.0.1:1"))
    retriever.search_all = lambda *args: time.sleep(3) or []  # the client retrying a server that is gone

    async def attempt() -> float:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=re.escape("not reachable at http://127.0.0.1:1 ")):
            await retriever.search_watched(SearchPlan(("bilge",), ([0.0],), None, 3))
        return time.monotonic() - started

    assert asyncio.run(attempt()) < 2.5


def test_serve_url_is_the_configured_remote_app_unless_a_local_port_is_named(params):
    from twin_ops.config import Settings
    from twin_ops.serving.ops import serve_url

    local = f"http://{params.serving.host}:{params.serving.port}"
    assert serve_url(params, settings=Settings(twin_ops_serve_url=None)) == local
    remote = Settings(twin_ops_serve_url="http://ray-head:8000/")
    assert serve_url(params, settings=remote) == "http://ray-head:8000"
    assert serve_url(params, 8123, settings=remote) == f"http://{params.serving.host}:8123"


def test_the_prompt_route_exists_only_when_exposed(params):
    # Off by default: ordinary API callers never see a prompt.
    assert client_for(params).post("/v1/debug/prompt", json={"query": "Why?"}, headers=auth()).status_code == 404
    generation = params.serving.generation.model_copy(update={"expose_prompt_ids": True})
    exposed = params.model_copy(update={"serving": params.serving.model_copy(update={"generation": generation})})
    client = client_for(exposed, PromptBackend())
    assert client.post("/v1/debug/prompt", json={"query": "Why?"}).status_code == 401
    body = client.post("/v1/debug/prompt", json={"query": "Why?"}, headers=auth()).json()
    assert body["input_ids"] == [1, 2, 3] and body["context_used"] == 2 and len(body["sources"]) == 2


class PromptBackend(FakeBackend):
    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        return ServedPrompt("twin:v1", (1, 2, 3), min(2, len(request.passages)))
