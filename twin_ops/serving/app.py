"""The Ray Serve application: four deployments, one request path.

    HTTP → Ingress (FastAPI, api.py) → Retriever → Embedder        (query vectors, @serve.batch)
                                               → Weaviate         (hybrid search, author filter)
                                               → Generator        (query expansion, when on)
                    → Generator (prompt in the token budget; batched generation, or a token stream)

Each deployment scales on its own (include/serve/twin.yaml): the Generator is the expensive one.
The model is chosen by the Generator's ``user_config`` (``{"model_ref": "production" | "<N>"}``):
changing it calls ``reconfigure()`` on the running replicas, which load the new model beside the
old one and switch atomically — in-flight requests finish on the model they started with.

Build it with ``build_app(args)`` (the import path in twin.yaml); ``ops.start_local`` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from twin_ops.config import Params, Settings, load_params, resolve_paths
from twin_ops.errors import NotFound, RequestError, Unavailable
from twin_ops.llm import pick_device
from twin_ops.llm.model import DecodeRow, Message
from twin_ops.rag import Retrieval
from twin_ops.serving.api import create_api
from twin_ops.serving.errors import as_serving_error
from twin_ops.serving.generation import (
    Catalog,
    TextGenerator,
    choose_model,
    default_twin,
    generate_with,
    require_loaded,
    stream_with,
    twin_names,
)
from twin_ops.serving.records import Generation, GenerationRequest, Health, ModelInfo, ServedPrompt, StreamEvent
from twin_ops.serving.scheduler import Scheduler

log = logging.getLogger("ray.serve")
T = TypeVar("T")


def _replica_gone_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "no replica could take the call now" — a dead, restarting or overloaded one."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

    return (RayActorError, BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError)


async def call(make: Callable[[], Awaitable[T]], what: str, backoff_s: float) -> T:
    """Await a handle call; retry it while the replica is gone (Ray restarts it), and turn an
    error from the other side into its RequestError (4xx/503) instead of a bare 500.

    Every request is read-only (retrieval, generation), so a retry is always safe. The caller's
    deadline (api.py's timeouts) ends the retries: this loop never waits forever by itself.
    """
    from tenacity import AsyncRetrying, retry_if_exception_type, wait_fixed

    def warn(state) -> None:
        error = state.outcome.exception()
        log.warning("%s: replica unavailable (%s); retrying in %.1fs", what, type(error).__name__, backoff_s)

    gone = _replica_gone_errors()
    retrying = AsyncRetrying(retry=retry_if_exception_type(gone), wait=wait_fixed(backoff_s), before_sleep=warn)
    async for attempt in retrying:
        with attempt:
            response = make()
            try:
                return await response
            except asyncio.CancelledError:
                cancel = getattr(response, "cancel", None)
                if cancel is not None:
                    cancel()
                raise
            except (RequestError, *gone):
                raise
            except Exception as exc:
                error = as_serving_error(exc)
                if error is not None:
                    raise error from None
                raise Unavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable: AsyncRetrying retries until a result or an error")


def _threads(params: Params) -> None:
    import torch

    # One replica per process shares the machine with the others: cap torch's intra-op pool.
    torch.set_num_threads(params.serving.torch_threads)


@serve.deployment(name="Embedder", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
class Embedder:
    """Query embeddings: concurrent requests share one sentence-transformers forward pass."""

    def __init__(self, params: Params) -> None:
        from twin_ops.features.embed import Embedder as SentenceEmbedder

        _threads(params)
        features, batching = params.features, params.serving.batching
        self.model = SentenceEmbedder(features.embedding_model, pick_device(params.serving.device))
        self.embed.set_max_batch_size(batching.embed_max_batch_size)
        self.embed.set_batch_wait_timeout_s(batching.embed_wait_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self.model.encode, texts)
        return vectors.tolist()


class Twin:
    """One author's twin on this replica: the model its user_config asks for, swapped atomically."""

    def __init__(self, model_id: str, on_unload: Callable[[str], None]) -> None:
        self.model_id = model_id
        self.on_unload = on_unload
        self.current: TextGenerator | None = None
        self.error: str | None = None
        self.requested: str | None = None
        self.loading = asyncio.Lock()

    def __del__(self) -> None:
        """What the multiplexer calls when it evicts this twin (least recently used): let go of it."""
        self.current = None
        self.on_unload(self.model_id)

    def info(self, device: str) -> ModelInfo:
        current = self.current
        return ModelInfo(
            model_version=current.version if current else "none",
            loaded=current is not None,
            device=device,
            error=self.error,
            requested=self.requested,
            model_id=self.model_id,
        )


@serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
class Generator:
    """Every author's twin, multiplexed: the model id of a call (``serve.get_multiplexed_model_id``)
    is the registry name ``<author>-twin``; each twin is one merged model in memory, loaded on
    first use (LRU-evicted past ``serving.max_twins_per_replica``). Which version each serves comes
    from the user_config: ``{"model_ref": <default ref>, "models": {"<author>-twin": "<ref>"}}``;
    changing it reloads only the twins whose ref changed. One scheduler (serving/scheduler.py) runs
    every twin's batches, one at a time: they share the replica's CPU or GPU."""

    def __init__(self, params: Params, root: str, models_dir: str, cache: str) -> None:
        from twin_ops.serving.metrics import GeneratorMetrics

        _threads(params)
        self.params = params
        self.root, self.models_dir, self.cache = Path(root), Path(models_dir), Path(cache)
        self.device = pick_device(params.serving.device)
        self.names = twin_names(params, self.root)
        self.default_id = default_twin(params)
        self.default_ref = params.serving.model_ref
        self.refs: dict[str, str] = {}
        self.twins: dict[str, Twin] = {}
        batching = params.serving.batching
        self.scheduler = Scheduler(
            token_budget=batching.generate_token_budget,
            max_rows=batching.generate_max_batch_size,
            max_queued=params.serving.admission.max_queued,
            gather_s=batching.generate_wait_s,
            observer=GeneratorMetrics(),
            headroom=params.serving.admission.headroom,
        )

        # Decorated here, on a plain function (Serve keeps its cache as an attribute of the
        # function), so that the cache size comes from params.yaml.
        async def load_twin(model_id: str) -> Twin:
            return await self._load(model_id)

        self.twin = serve.multiplexed(max_num_models_per_replica=params.serving.max_twins_per_replica)(load_twin)

    def _forget(self, model_id: str) -> None:
        self.twins.pop(model_id, None)

    def _ref(self, model_id: str) -> str:
        return str(self.refs.get(model_id) or self.default_ref)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Take a new user_config: every loaded twin whose ref changed loads its new model beside
        the current one and switches when it is ready (in-flight requests finish on the old one).
        A load that fails keeps the current model and is reported by info()/health (the swap
        check then restores the previous user_config): never a twin without a model because of a
        bad promotion."""
        self.default_ref = str(config.get("model_ref") or self.params.serving.model_ref)
        self.refs = {str(name): str(ref) for name, ref in (config.get("models") or {}).items()}
        for twin in list(self.twins.values()):
            await self._switch(twin, self._ref(twin.model_id))

    async def _switch(self, twin: Twin, ref: str) -> None:
        async with twin.loading:
            twin.requested = ref
            try:
                source = await asyncio.to_thread(
                    choose_model, self.params, twin.model_id, self.root, self.models_dir, self.cache, ref
                )
                if twin.current is not None and twin.current.source == source:
                    twin.error = None
                    return
                loaded = await asyncio.to_thread(TextGenerator, self.params, source, self.device)
                self.scheduler.seed(await asyncio.to_thread(loaded.warm_up))
            except Exception as exc:
                twin.error = f"loading model {twin.model_id!r} at {ref!r} failed: {type(exc).__name__}: {exc}"
                log.exception("Generator: %s", twin.error)
                return
            previous, twin.current, twin.error = twin.current, loaded, None
            log.info(
                "Generator: %s now serves %s (was %s)",
                twin.model_id,
                loaded.version,
                previous.version if previous else "nothing",
            )

    async def _load(self, model_id: str) -> Twin:
        """What ``@serve.multiplexed`` calls for a model id this replica has not loaded."""
        if model_id not in self.names:
            raise NotFound(f"model {model_id!r} not found; this app serves {', '.join(sorted(self.names))}")
        twin = self.twins.get(model_id) or self.twins.setdefault(model_id, Twin(model_id, self._forget))
        await self._switch(twin, self._ref(model_id))
        if twin.current is None:
            # Not cached by the multiplexer: the next call tries to load it again.
            raise Unavailable(f"the model is not loaded ({model_id}): {twin.error}")
        return twin

    async def _model(self, request_model: str = "") -> tuple[str, TextGenerator]:
        model_id = serve.get_multiplexed_model_id() or request_model or self.default_id
        twin = await self.twin(model_id)
        return model_id, require_loaded(twin.current, twin.error)

    def _submit(self, model_id: str):
        def submit(generator: TextGenerator, row: DecodeRow, request: GenerationRequest):
            left = (request.deadline - time.time()) if request.deadline else self.params.serving.timeouts.generation_s
            ticket = self.scheduler.admit(generator, row, time.monotonic() + left, model_id)
            return ticket.done, ticket.cancel

        return submit

    async def check_admission(self, prompt_tokens: int, max_tokens: int, deadline: float) -> None:
        """429 now when a request of about this size could not finish by ``deadline`` (time.time());
        the Ingress asks before retrieval, so a refusal costs no embedding or search."""
        model_id = serve.get_multiplexed_model_id() or self.default_id
        self.scheduler.check(prompt_tokens, max_tokens, time.monotonic() + (deadline - time.time()), model_id)

    async def generate(self, request: GenerationRequest) -> Generation:
        model_id, generator = await self._model(request.model)
        return await generate_with(self._submit(model_id), generator, request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        model_id, generator = await self._model(request.model)
        async for event in stream_with(self._submit(model_id), generator, request):
            yield event

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        _, generator = await self._model(request.model)
        return await asyncio.to_thread(generator.served_prompt, request)

    async def expand(self, query: str, n: int) -> list[str]:
        _, generator = await self._model()
        return await asyncio.to_thread(generator.expand, query, n)

    async def condense(self, earlier: list[str], question: str) -> str:
        """A follow-up as a standalone question, written by the twin of the call's model id."""
        _, generator = await self._model()
        return await asyncio.to_thread(generator.condense, earlier, question)

    async def info(self) -> ModelInfo:
        """The twin named by the call's model id (loading it if needed: a health check that works)."""
        model_id = serve.get_multiplexed_model_id() or self.default_id
        try:
            twin = await self.twin(model_id)
        except RequestError:
            twin = self.twins.get(model_id)
            if twin is None:
                raise
        return twin.info(self.device)

    async def stats(self) -> dict[str, Any]:
        """The scheduler's counters and rates (tests, debugging)."""
        return {**self.scheduler.stats(), "twins": sorted(self.twins)}


@serve.deployment(name="Retriever", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
class Retriever:
    def __init__(self, params: Params, root: str, embedder: DeploymentHandle, generator: DeploymentHandle) -> None:
        from twin_ops.rag.retrieve import Retriever as Core
        from twin_ops.rag.retrieve import known_authors

        self.params = params
        self.core = Core(params, known_authors(Path(root) / params.collect.authors_dir))
        self.embedder, self.generator = embedder, generator
        self.backoff = params.serving.timeouts.retry_backoff_s

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        # One call per text: the Embedder batches them with other requests' queries.
        calls = [call(lambda text=text: self.embedder.embed.remote(text), "embedding", self.backoff) for text in texts]
        return list(await asyncio.gather(*calls))

    async def _expand(self, query: str, n: int) -> list[str]:
        return await call(lambda: self.generator.expand.remote(query, n), "query expansion", self.backoff)

    async def _condense(self, earlier: list[str], question: str, author: str) -> str:
        from twin_ops.evaluation.candidate import model_name

        # The author's own twin condenses (routed like an answer: to a replica that has it loaded).
        twin = self.generator.options(multiplexed_model_id=model_name(self.params, author))
        return await call(lambda: twin.condense.remote(earlier, question), "condensing the question", self.backoff)

    async def retrieve(
        self, query: str, author: str | None, k: int | None, history: tuple[Message, ...] = ()
    ) -> Retrieval:
        return await self.core.retrieve(
            query, author, k, self._embed, self._expand, history=history, condense=self._condense
        )

    async def ping(self) -> str:
        return await asyncio.to_thread(self.core.ping)


class RayBackend:
    """api.Backend over deployment handles."""

    def __init__(
        self, params: Params, catalog: Catalog, retriever: DeploymentHandle, generator: DeploymentHandle
    ) -> None:
        self.catalog = catalog
        self.retriever, self.generator = retriever, generator
        self.backoff = params.serving.timeouts.retry_backoff_s

    async def retrieve(
        self, query: str, author: str | None, k: int | None, history: tuple[Message, ...] = ()
    ) -> Retrieval:
        return await call(lambda: self.retriever.retrieve.remote(query, author, k, history), "retrieval", self.backoff)

    def _twin(self, model_id: str) -> DeploymentHandle:
        # Serve routes a call to a replica that has this twin loaded, when one has.
        return self.generator.options(multiplexed_model_id=model_id)

    async def models(self) -> dict[str, str]:
        return await asyncio.to_thread(self.catalog.versions)

    async def check_admission(self, model_id: str, prompt_tokens: int, max_tokens: int, deadline: float) -> None:
        twin = self._twin(model_id)
        await call(lambda: twin.check_admission.remote(prompt_tokens, max_tokens, deadline), "admission", self.backoff)

    async def generate(self, request: GenerationRequest) -> Generation:
        twin = self._twin(request.model)
        return await call(lambda: twin.generate.remote(request), "generation", self.backoff)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        handle = self.generator.options(stream=True, multiplexed_model_id=request.model)
        started: dict[str, Any] = {}

        def start():  # a fresh stream per attempt: a retry must not reuse a dead replica's stream
            started["events"] = handle.stream.remote(request)
            return anext(started["events"])

        # Retried only until the first event: after that the client has seen output.
        yield await call(start, "generation", self.backoff)
        try:
            async for event in started["events"]:
                yield event
        except RequestError:
            raise
        except Exception as exc:
            raise as_serving_error(exc) or Unavailable(f"generation stream broke: {type(exc).__name__}: {exc}") from exc
        finally:
            # Closed early (the client went away): the Generator's stream is cancelled too, and
            # its row leaves the running batch.
            started["events"].cancel()

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        twin = self._twin(request.model)
        return await call(lambda: twin.prompt.remote(request), "prompt", self.backoff)

    async def health(self, model_id: str) -> Health:
        model: ModelInfo | None = None
        reasons: list[str] = []
        twin = self._twin(model_id)
        try:
            model = await call(lambda: twin.info.remote(), "model info", self.backoff)
        except RequestError as exc:
            reasons.append(f"model: {exc.message}")
        if model is not None and not model.loaded:
            reasons.append(f"model: not loaded ({model.error or 'loading'})")
        try:
            weaviate = await call(lambda: self.retriever.ping.remote(), "weaviate check", self.backoff)
        except RequestError as exc:
            weaviate = exc.message
        if weaviate != "ok":
            reasons.append(weaviate)
        return Health(ok=not reasons, model=model, weaviate=weaviate, reasons=tuple(reasons))


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """The FastAPI app of api.py over the other deployments (built in the replica, so the API key
    is read from this replica's environment and never travels in the Serve config)."""

    def __init__(
        self,
        params: Params,
        catalog: Catalog,
        retriever: DeploymentHandle,
        generator: DeploymentHandle,
        traces_path: str | None = None,
    ) -> None:
        from twin_ops.serving.metrics import RequestMetrics
        from twin_ops.traces.store import TraceStore

        backend = RayBackend(params, catalog, retriever, generator)
        limits = params.serving.traces
        # Every Ingress replica writes the same SQLite file (WAL; twin_ops/traces/store.py).
        traces = TraceStore(Path(traces_path), limits.max_records, limits.max_age_days) if traces_path else None
        self.api = create_api(backend, params, Settings().twin_ops_api_key, RequestMetrics().answered, traces)

    def __serve_build_asgi_app__(self):
        return self.api


class AppArgs(BaseModel):
    """The ``args`` of the app in twin.yaml (all optional)."""

    model_config = ConfigDict(extra="forbid")

    params_file: str | None = Field(default=None, description="params.yaml to read; default: the project's.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Nested params overrides.")
    models_dir: str | None = Field(default=None, description="The model registry folder; default: <root>/models.")


def build_app(args: dict[str, Any]):
    """The application builder ``serve deploy``/``serve run`` call with the config's ``args``."""
    parsed = AppArgs.model_validate(args or {})
    params = load_params(Path(parsed.params_file) if parsed.params_file else None, parsed.overrides)
    paths = resolve_paths(params)
    root = str(paths.root)
    models_dir = parsed.models_dir or str(paths.models)
    embedder = Embedder.bind(params)
    generator = Generator.options(user_config={"model_ref": params.serving.model_ref}).bind(
        params, root, models_dir, str(paths.cache)
    )
    retriever = Retriever.bind(params, root, embedder, generator)
    catalog = Catalog(params, paths.root, Path(models_dir), paths.cache)
    traces = str(paths.traces) if params.serving.traces.enabled else None
    return Ingress.bind(params, catalog, retriever, generator, traces)
