"""The Ray Serve app on 127.0.0.1, end to end: the official OpenAI client, plain HTTP, errors,
concurrency, a model swap under load and a replica killed under load.

One app per module (Ray start-up is slow on 2 cores), one replica per deployment, a tiny
randomly initialised model (generation mechanics, not quality) and the demo authors' posts indexed
into this module's own Weaviate aliases. The swap and kill tests run last, in this order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.services import free_port, local_app
from twin_ops.config import Params
from twin_ops.demo.content import juno_posts, read_post, wren_posts

WREN, JUNO = "wren-halvorsen", "juno-marsh"
API_KEY = "test-key-" + uuid.uuid4().hex[:8]
MAX_TOKENS = 8


def tiny_registry(params: Params, tiny_model: Path, folder: Path) -> Path:
    """A registry whose production model is the run's tiny Llama (v1); v2 (another seed) is registered too."""
    from tests.support.tiny import build_tiny_model
    from twin_ops.registry.store import Registry

    registry = Registry(folder / "models")
    name = twin(WREN)
    registry.register(name, params.training.base_model, merged_path=tiny_model)
    registry.promote(name, 1)
    other = build_tiny_model(folder / "tiny-1", str(tiny_model), seed=1)
    registry.register(name, params.training.base_model, merged_path=other)
    # Juno's twin: v1 in production, v2 registered (the per-author swap and rollback test).
    registry.register(twin(JUNO), params.training.base_model, merged_path=other)
    registry.promote(twin(JUNO), 1)
    registry.register(twin(JUNO), params.training.base_model, merged_path=tiny_model)
    return registry.root


def twin(author: str) -> str:
    return f"{author}-twin"


@pytest.fixture(scope="module")
def app(params, paths, demo_index, tiny_model):
    """The app running on a free loopback port over the run's demo index; yields (url, params as the
    replicas see them, the registry folder)."""
    from twin_ops.config import load_params

    index_overrides, _ = demo_index
    folder = Path(tempfile.mkdtemp(prefix="twin-serving-"))
    overrides = {
        **index_overrides,
        "serving": {
            # expose_prompt_ids: the prompt-identity test reads the served token ids (off in production).
            "generation": {"default_max_tokens": MAX_TOKENS, "expose_prompt_ids": True},
            "traces": {"path": str(folder / "traces" / "traces.sqlite")},  # this module's own trace store
        },
    }
    served = load_params(paths.root / "params.yaml", overrides)
    models = tiny_registry(served, tiny_model, folder)
    with local_app(served, paths, overrides, models, API_KEY) as url:
        yield url, served, models


@pytest.fixture(scope="module")
def url(app):
    return app[0]


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def openai_client(url: str, key: str = API_KEY):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def signature(post: Path) -> tuple[str, str]:
    meta, _ = read_post(post)
    return meta["title"], meta["signature"]


# --- the API --------------------------------------------------------------------------------------


def test_openai_client_chat_answers_with_the_authors_sources(app):
    url, _, _ = app
    client = openai_client(url)
    assert {model.id for model in client.models.list().data} == {twin(WREN), twin(JUNO)}
    title, line = signature(wren_posts()[5])
    response = client.chat.completions.create(
        model=twin(WREN), messages=[{"role": "user", "content": line}], max_tokens=MAX_TOKENS
    )
    choice = response.choices[0]
    assert isinstance(choice.message.content, str) and choice.finish_reason in {"stop", "length"}
    assert 0 < response.usage.completion_tokens <= MAX_TOKENS
    sources = response.model_extra["sources"]
    assert title in [source["title"] for source in sources]
    assert all(source["url"].startswith("http://127.0.0.1:8000/posts/") for source in sources)
    assert response.model_extra["model_version"] == f"{twin(WREN)}:v1"
    # Its trace: what was retrieved (chunk ids, in the prompt or not) and where the time went.
    trace = httpx.get(f"{url}/v1/traces/{response.id}", headers=auth(), timeout=30).json()
    assert trace["id"] == response.id and trace["model_version"] == f"{twin(WREN)}:v1"
    assert trace["passages"] and all(p["chunk_id"] for p in trace["passages"])
    assert title in [p["title"] for p in trace["passages"] if p["used"]]
    assert trace["completion_tokens"] == response.usage.completion_tokens and trace["answer"] == choice.message.content
    timings = trace["timings"]
    assert timings["retrieval_s"] > 0 and timings["prefill_s"] > 0 and timings["decode_s"] > 0
    assert timings["queue_s"] >= 0 and timings["total_s"] > timings["retrieval_s"]


def test_openai_client_streams_tokens_as_server_sent_events(app):
    url, _, _ = app
    title, line = signature(wren_posts()[11])
    stream = openai_client(url).chat.completions.create(
        model=twin(WREN),
        messages=[{"role": "user", "content": line}],
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    chunks = list(stream)
    assert title in [source["title"] for source in chunks[0].model_extra["sources"]]
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]
    assert 1 <= len(pieces) <= MAX_TOKENS  # one event per token (pieces of a word may merge)
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_rag_over_plain_http_returns_answer_sources_and_model_version(app):
    url, _, _ = app
    title, line = signature(wren_posts()[20])
    response = httpx.post(f"{url}/rag", json={"query": line, "author": WREN, "k": 3}, headers=auth(), timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"answer", "sources", "model_version"}
    assert isinstance(body["answer"], str)
    assert body["sources"][0]["title"] == title
    assert all(set(source) == {"title", "url", "score"} for source in body["sources"])
    assert body["model_version"] == f"{twin(WREN)}:v1"


def test_self_query_takes_the_author_from_the_question(url):
    title, line = signature(juno_posts()[0])
    response = httpx.post(f"{url}/rag", json={"query": f"Juno Marsh wrote: {line}"}, headers=auth(), timeout=120)
    body = response.json()
    assert body["author"] == JUNO
    assert body["sources"][0]["title"] == title
    juno_titles = {read_post(post)[0]["title"] for post in juno_posts()}
    assert {source["title"] for source in body["sources"]} <= juno_titles


def test_bad_requests_get_the_right_4xx_with_a_clear_message(app):
    import openai

    url, params, _ = app
    limits = params.serving.limits
    cases = {
        "malformed JSON": httpx.post(
            f"{url}/rag", content=b"{not json", headers={**auth(), "Content-Type": "application/json"}
        ),
        "missing query": httpx.post(f"{url}/rag", json={"question": "bilge"}, headers=auth()),
        "oversized query": httpx.post(f"{url}/rag", json={"query": "b" * (limits.max_query_chars + 1)}, headers=auth()),
        "k over the limit": httpx.post(f"{url}/rag", json={"query": "bilge", "k": 10_000}, headers=auth()),
        "unknown author": httpx.post(f"{url}/rag", json={"query": "bilge", "author": "nobody"}, headers=auth()),
        "no API key": httpx.post(f"{url}/rag", json={"query": "bilge"}),
    }
    expected = {
        "malformed JSON": (400, "not valid JSON"),
        "missing query": (422, "query: Field required"),
        "oversized query": (413, f"the limit is {limits.max_query_chars}"),
        "k over the limit": (422, "k must be between 1 and"),
        "unknown author": (404, "unknown author 'nobody'"),
        "no API key": (401, "API key"),
    }
    for name, response in cases.items():
        status, message = expected[name]
        assert response.status_code == status, (name, response.text)
        assert message in response.json()["error"]["message"], (name, response.text)

    with pytest.raises(openai.AuthenticationError):
        openai_client(url, key="wrong").models.list()
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens must be at most"):
        openai_client(url).chat.completions.create(
            model=twin(WREN),
            messages=[{"role": "user", "content": "bilge"}],
            max_tokens=params.serving.generation.max_tokens_limit + 1,
        )
    with pytest.raises(openai.NotFoundError):
        openai_client(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "bilge"}])


def test_openapi_schema_and_health_are_published(url):
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/rag", "/health"} <= set(schema["paths"])
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["status"] == "ok" and health["weaviate"] == "ok" and health["model_version"]


def test_the_gate_scores_exactly_the_prompt_the_app_serves(app, paths):
    """Evaluation's grounded prompt (retrieval + prompt builder + chat template, as the gate runs it)
    equals, token for token, what the running app feeds its model for the same question."""
    from twin_ops import llm
    from twin_ops.config import Settings
    from twin_ops.evaluation import grounding, lm
    from twin_ops.evaluation.samples import Sample
    from twin_ops.features.embed import Embedder
    from twin_ops.registry.store import PRODUCTION, Registry

    url, served, models = app
    question = "How do you decide when a system is healthy?"
    production = Registry(models).alias(twin(WREN), PRODUCTION)
    contender = lm.from_version("candidate", production, paths.root, paths.cache)
    model = llm.load(contender.source, "cpu", llm.GenerationDefaults.from_params(served.llm))
    embedder = Embedder(served.features.embedding_model, "cpu", served.features.embedding_batch_size)
    # A held-out sample whose own document is not in the index: exclusion changes nothing here.
    sample = Sample("s1", question, "", source_document_id="not-indexed")
    found, note = grounding.retrieve(served, Settings(), WREN, [sample], embedder)
    assert found is not None, note
    evaluated = grounding.grounded_prompt(model, served, sample, found["s1"])

    response = httpx.post(
        f"{url}/v1/debug/prompt", json={"query": question, "author": WREN}, headers=auth(), timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == contender.label
    assert body["context_used"] == evaluated.context_used > 0
    assert body["input_ids"] == list(evaluated.input_ids)
    assert [source["title"] for source in body["sources"]] == [p.title for p in found["s1"][: evaluated.context_used]]
    # Behind the API key like every other route; /rag itself never returns a prompt.
    assert httpx.post(f"{url}/v1/debug/prompt", json={"query": question}, timeout=30).status_code == 401
    answer = httpx.post(f"{url}/rag", json={"query": question, "author": WREN}, headers=auth(), timeout=120).json()
    assert "input_ids" not in answer and "prompt" not in answer


def test_query_command_prints_the_answer_and_its_sources(url, monkeypatch):
    from typer.testing import CliRunner

    from twin_ops.cli import app as cli

    monkeypatch.setenv("TWIN_OPS_API_KEY", API_KEY)
    monkeypatch.setenv("COLUMNS", "240")  # rich tables: keep titles on one line
    title, line = signature(wren_posts()[3])
    result = CliRunner().invoke(cli, ["query", line, "--author", WREN, "--url", url, "--max-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert title in result.output and "model wren-halvorsen-twin:v1" in result.output
    monkeypatch.setenv("TWIN_OPS_API_KEY", "wrong")
    denied = CliRunner().invoke(cli, ["query", line, "--url", url])
    assert denied.exit_code == 1 and "401" in denied.output


# --- every author's twin in one app -----------------------------------------------------------


def _answer(url: str, author: str) -> dict:
    line = signature((wren_posts() if author == WREN else juno_posts())[2])[1]
    body = {"query": line, "author": author, "max_tokens": MAX_TOKENS, "temperature": 0}
    response = httpx.post(f"{url}/rag", json=body, headers=auth(), timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    answer.pop("id")  # every answer has its own id (traces); the rest is what the twin said
    return answer


def test_two_authors_twins_one_swapped_and_rolled_back_the_other_untouched(app, paths):
    """One app, two twins: each answers with its own version and sources; promoting Juno's v2
    (what twin_training and twin_deploy call) swaps only Juno's, and a rollback restores exactly
    Juno's previous version."""
    from twin_ops.evaluation.promote import promote_and_serve, rollback_and_serve
    from twin_ops.registry.store import Registry

    url, params, models = app
    wren, juno = _answer(url, WREN), _answer(url, JUNO)
    assert (wren["model_version"], juno["model_version"]) == (f"{twin(WREN)}:v1", f"{twin(JUNO)}:v1")
    juno_titles = {read_post(post)[0]["title"] for post in juno_posts()}
    assert juno["author"] == JUNO and {s["title"] for s in juno["sources"]} <= juno_titles
    assert wren["author"] == WREN and not {s["title"] for s in wren["sources"]} & juno_titles

    registry = Registry(models)
    serving = {"serve": True, "url": url, "api_key": API_KEY, "registry": registry}
    promote_and_serve(twin(JUNO), params, paths, version=2, reason="test", **serving)
    assert _answer(url, JUNO)["model_version"] == f"{twin(JUNO)}:v2"
    assert _answer(url, WREN) == wren  # greedy: the very same answer, from the very same model

    rollback_and_serve(twin(JUNO), params, paths, reason="test rollback", **serving)
    assert registry.alias(twin(JUNO), "production").version == 1
    assert _answer(url, JUNO)["model_version"] == f"{twin(JUNO)}:v1"
    assert _answer(url, WREN) == wren


def _generator_stats() -> dict:
    from ray import serve

    return serve.get_deployment_handle("Generator", "twin").stats.remote().result()


def test_a_client_that_disconnects_stops_its_generation(url):
    """Streaming and plain: a client that hangs up is dropped from the Generator's queue, or its
    row leaves the running batch; the Generator's own counters show it. Other clients keep the
    Generator busy meanwhile, so the two hang up while their rows wait or run."""
    question = "Tell me everything about the yard."
    before = _generator_stats()

    async def scenario():
        async with httpx.AsyncClient(timeout=120) as http:
            body = {"query": question, "max_tokens": 120, "temperature": 0}
            busy = [asyncio.create_task(http.post(f"{url}/rag", json=body, headers=auth())) for _ in range(6)]
            await asyncio.sleep(0.5)
            chat = {
                "model": twin(WREN),
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 120,
                "temperature": 0,
                "stream": True,
            }
            async with http.stream("POST", f"{url}/v1/chat/completions", json=chat, headers=auth()) as response:
                assert response.status_code == 200
                await anext(response.aiter_lines())  # admitted and started; then hang up
            with contextlib.suppress(httpx.TimeoutException):  # a plain request, abandoned after 0.3 s
                await http.post(f"{url}/rag", json=body, headers=auth(), timeout=0.3)
            return [response.status_code for response in await asyncio.gather(*busy)]

    assert asyncio.run(scenario()) == [200] * 6  # the others were served
    deadline = time.monotonic() + 30
    after = _generator_stats()
    while after["cancelled"] - before["cancelled"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        after = _generator_stats()
    assert after["cancelled"] - before["cancelled"] >= 2, (before, after)
    assert after["completed"] - before["completed"] == 6, (before, after)


def test_prometheus_metrics_show_the_counters_moving(app):
    """The app's metrics on Ray's metrics export port (serving.ray.metrics_export_port)."""
    import re

    url, params, _ = app
    metrics_url = f"http://127.0.0.1:{params.serving.ray.metrics_export_port}/metrics"

    def requests_answered() -> float:
        text = httpx.get(metrics_url, timeout=10).text
        found = re.findall(
            r'^ray_twin_requests_total\{[^}]*route="/rag"[^}]*status="200"[^}]*\} ([0-9.e+]+)$', text, re.M
        )
        return sum(float(value) for value in found)

    before = requests_answered()
    for _ in range(3):
        _answer(url, WREN)
    deadline = time.monotonic() + 60  # Ray exports custom metrics every few seconds
    while requests_answered() < before + 3 and time.monotonic() < deadline:
        time.sleep(2)
    assert requests_answered() >= before + 3
    text = httpx.get(metrics_url, timeout=10).text
    for name in ("ray_twin_tokens_total", "ray_twin_queue_wait_seconds_bucket", "ray_twin_batch_rows_bucket"):
        assert name in text, name


# --- dependencies down: 503 with the reason ------------------------------------------------------


class CuttableProxy:
    """A TCP forwarder to one port that can be cut (refusing and resetting connections) and
    restored: Weaviate goes "down" for the replicas behind it only, while the real server keeps
    serving the rest of the module (and other users of the machine)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)  # the accept loop polls, so cut() can end it
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            connections, self.connections = self.connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


DOWN_APP = "twin-down"


@pytest.fixture(scope="class")
def down(app, paths):
    """A second app in the same Serve instance (route /down): its Weaviate is reached through a
    proxy the test cuts, and its registry's production model cannot be loaded. Removed again at
    the end of the class, so the load tests below see only the main app."""
    from twin_ops.config import load_params
    from twin_ops.registry.store import Registry
    from twin_ops.serving import ops

    url, served, models = app
    http, grpc = CuttableProxy(served.weaviate.http_port), CuttableProxy(served.weaviate.grpc_port)
    http.open()
    grpc.open()
    overrides = {
        "features": {
            "documents_alias": served.features.documents_alias,
            "chunks_alias": served.features.chunks_alias,
        },
        "weaviate": {"http_port": http.port, "grpc_port": grpc.port},
    }
    down_params = load_params(paths.root / "params.yaml", overrides)
    registry = Registry(models.parent / "down-models")
    broken = registry.register(twin(WREN), "base", merged_path=models.parent / "missing")
    registry.promote(twin(WREN), broken.version)
    entry = ops.serve_config(
        down_params,
        paths,
        app_args={"overrides": overrides, "models_dir": str(registry.root)},
        single_replica=True,
    )["applications"][0]
    entry["name"], entry["route_prefix"] = DOWN_APP, "/down"
    for deployment in entry["deployments"]:  # the main app holds the local Ray's CPUs; these idle
        deployment["ray_actor_options"] = {**deployment.get("ray_actor_options", {}), "num_cpus": 0}
    running = ops.deployed_config(served)
    ops.deploy(served, {**running, "applications": [*running["applications"], entry]})
    try:
        ops.wait_running(DOWN_APP, 240, log=lambda line: None)
        yield f"{url}/down", http, grpc
    finally:
        http.cut()
        grpc.cut()
        ops.deploy(served, running)  # the main app alone again (its config unchanged: nothing restarts)
        from ray import serve

        deadline = time.monotonic() + 120
        while DOWN_APP in serve.status().applications and time.monotonic() < deadline:
            time.sleep(1)


class TestUnavailableDependencies:
    def test_an_unloadable_model_is_503_with_the_reason(self, down):
        url = down[0]
        started = time.monotonic()
        response = httpx.post(f"{url}/rag", json={"query": "bilge pump"}, headers=auth(), timeout=60)
        assert response.status_code == 503, response.text
        message = response.json()["error"]["message"]
        assert "model is not loaded" in message and "neither its merged model nor its adapter" in message
        health = httpx.get(f"{url}/health", timeout=60)
        assert health.status_code == 503
        body = health.json()
        assert body["weaviate"] == "ok" and body["model_version"] is None
        assert any(reason.startswith("model: not loaded") for reason in body["reasons"]), body
        assert time.monotonic() - started < 30

    def test_weaviate_down_is_503_with_the_reason_and_recovers(self, down):
        url, http, grpc = down
        http.cut()
        grpc.cut()
        started = time.monotonic()
        response = httpx.post(f"{url}/rag", json={"query": "bilge pump"}, headers=auth(), timeout=60)
        assert response.status_code == 503, response.text
        assert "weaviate" in response.json()["error"]["message"]
        health = httpx.get(f"{url}/health", timeout=60)
        assert health.status_code == 503
        reasons = health.json()["reasons"]
        assert any(f"weaviate is not reachable at http://127.0.0.1:{http.port}" in r for r in reasons), reasons
        assert time.monotonic() - started < 30  # a reason, never a hang
        http.open()
        grpc.open()
        assert httpx.get(f"{url}/health", timeout=60).json()["weaviate"] == "ok"


# --- load ---------------------------------------------------------------------------------------


async def _rag(http: httpx.AsyncClient, url: str, query: str) -> httpx.Response | Exception:
    try:
        return await http.post(f"{url}/rag", json={"query": query, "max_tokens": 4}, headers=auth())
    except httpx.HTTPError as exc:
        return exc


def _queries(n: int) -> list[str]:
    lines = [signature(post)[1] for post in wren_posts()]
    return [lines[i % len(lines)] for i in range(n)]


def test_32_concurrent_requests_all_succeed(url):
    async def burst():
        async with httpx.AsyncClient(timeout=180) as http:
            return await asyncio.gather(*(_rag(http, url, query) for query in _queries(32)))

    responses = asyncio.run(burst())
    failures = [r for r in responses if isinstance(r, Exception) or r.status_code != 200]
    assert not failures, failures[:3]
    assert all(r.json()["sources"] for r in responses)


async def _load(url: str, stop: asyncio.Event, workers: int) -> list[httpx.Response | Exception]:
    """``workers`` clients sending requests back to back until ``stop`` is set."""
    results: list[httpx.Response | Exception] = []
    queries = _queries(1000)

    async def worker(offset: int) -> None:
        async with httpx.AsyncClient(timeout=240) as http:
            n = offset
            while not stop.is_set():
                results.append(await _rag(http, url, queries[n % len(queries)]))
                n += workers

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return results


def _failed(results) -> list:
    return [r if isinstance(r, Exception) else (r.status_code, r.text[:200]) for r in results if _bad(r)]


def _bad(result) -> bool:
    return isinstance(result, Exception) or result.status_code != 200


def test_model_swap_under_load_drops_no_request(app, paths):
    from twin_ops.serving import ops

    url, params, models = app

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, stop, workers=4))
        await asyncio.sleep(3)
        swap = await asyncio.to_thread(
            ops.swap_model,
            params,
            paths,
            twin(WREN),
            2,
            url=url,
            api_key=API_KEY,
            models_dir=models,
            log=lambda line: None,
        )
        await asyncio.sleep(3)
        stop.set()
        return swap, await load

    swap, results = asyncio.run(scenario())
    assert swap.model_version == f"{twin(WREN)}:v2"
    assert not _failed(results), _failed(results)[:3]
    served = Counter(r.json()["model_version"] for r in results)
    assert set(served) == {f"{twin(WREN)}:v1", f"{twin(WREN)}:v2"}, served
    assert httpx.get(f"{url}/health", timeout=30).json()["model_version"] == swap.model_version


def test_a_swap_to_a_broken_version_is_undone_and_serving_goes_on(app, paths):
    from twin_ops.registry.store import Registry
    from twin_ops.serving import ops

    url, params, models = app
    broken = Registry(models).register(twin(WREN), "base", merged_path=models / "missing")

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, stop, workers=2))
        try:
            with pytest.raises(ops.ServeFailed, match="neither its merged model nor its adapter"):
                await asyncio.to_thread(
                    ops.swap_model,
                    params,
                    paths,
                    twin(WREN),
                    broken.version,
                    url=url,
                    api_key=API_KEY,
                    models_dir=models,
                    timeout_s=120,
                    log=lambda line: None,
                )
        finally:
            stop.set()
        return await load

    results = asyncio.run(scenario())
    assert results and not _failed(results)
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["model_version"] == f"{twin(WREN)}:v2" and health["model_requested"] == "2"


def test_killing_the_generator_replica_under_load_loses_under_one_percent(url):
    import ray

    def generator_replica() -> tuple[str, object]:
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if "Generator" in actor["name"] and actor["name"].startswith("SERVE_REPLICA"):
                return actor["name"], ray.get_actor(actor["name"], namespace=actor["namespace"])
        raise AssertionError("no Generator replica running")

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, stop, workers=8))
        await asyncio.sleep(5)
        name, replica = generator_replica()
        ray.kill(replica, no_restart=True)  # Serve's controller notices and starts a new replica
        deadline = time.monotonic() + 300
        replacement = None
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            try:
                replacement = (await asyncio.to_thread(generator_replica))[0]
            except AssertionError:
                continue
            if replacement != name and httpx.get(f"{url}/health", timeout=30).status_code == 200:
                break
        await asyncio.sleep(5)  # and some more load on the new replica
        stop.set()
        return name, replacement, await load

    killed, replacement, results = asyncio.run(scenario())
    assert replacement and replacement != killed
    failed = _failed(results)
    assert len(results) >= 50
    assert len(failed) / len(results) < 0.01, (len(failed), len(results), failed[:3])
