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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from twin_ops.config import Params, Settings, load_params, resolve_paths
from twin_ops.errors import RequestError, Unavailable
from twin_ops.llm import pick_device
from twin_ops.rag import Retrieval
from twin_ops.serving.api import create_api
from twin_ops.serving.batching import AdaptiveBatcher
from twin_ops.serving.errors import as_serving_error
from twin_ops.serving.generation import (
    TextGenerator,
    choose_model,
    generate_requests,
    require_loaded,
    stream_events,
)
from twin_ops.serving.records import Generation, GenerationRequest, Health, ModelInfo, ServedPrompt, StreamEvent

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


@serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
class Generator:
    """The served model; which one is set by user_config and changed by reconfigure()."""

    def __init__(self, params: Params, root: str, models_dir: str, cache: str) -> None:
        _threads(params)
        self.params = params
        self.root, self.models_dir, self.cache = Path(root), Path(models_dir), Path(cache)
        self.device = pick_device(params.serving.device)
        self.current: TextGenerator | None = None
        self.error: str | None = None
        self.requested: str | None = None
        self._loading = asyncio.Lock()
        batching = params.serving.batching
        # Not @serve.batch: see serving/batching.py for why the Generator forms its own batches.
        self.batcher = AdaptiveBatcher(generate_requests, batching.generate_max_batch_size, batching.generate_wait_s)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Load the model named by ``config["model_ref"]`` and switch to it.

        Loading runs in a thread, so this replica keeps answering with the current model while the
        new one loads. A load that fails keeps the current model and is reported by info()/health
        (the swap check then restores the previous user_config): never a replica without a model
        because of a bad promotion.
        """
        ref = str(config.get("model_ref") or self.params.serving.model_ref)
        async with self._loading:
            self.requested = ref
            try:
                source = await asyncio.to_thread(choose_model, self.params, self.root, self.models_dir, self.cache, ref)
                if self.current is not None and self.current.source == source:
                    self.error = None
                    return
                loaded = await asyncio.to_thread(TextGenerator, self.params, source, self.device)
            except Exception as exc:
                self.error = f"loading model {ref!r} failed: {type(exc).__name__}: {exc}"
                log.exception("Generator: %s", self.error)
                return
            previous, self.current, self.error = self.current, loaded, None
            log.info("Generator: now serving %s (was %s)", loaded.version, previous.version if previous else "nothing")

    def _model(self) -> TextGenerator:
        return require_loaded(self.current, self.error)

    async def generate(self, request: GenerationRequest) -> Generation:
        result = await self.batcher.submit((self._model(), request))
        if isinstance(result, RequestError):
            raise result
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        async for event in stream_events(self._model(), request):
            yield event

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        return await asyncio.to_thread(self._model().served_prompt, request)

    async def expand(self, query: str, n: int) -> list[str]:
        return await asyncio.to_thread(self._model().expand, query, n)

    async def info(self) -> ModelInfo:
        current = self.current
        return ModelInfo(
            model_version=current.version if current else "none",
            loaded=current is not None,
            device=self.device,
            error=self.error,
            requested=self.requested,
        )


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

    async def retrieve(self, query: str, author: str | None, k: int | None) -> Retrieval:
        return await self.core.retrieve(query, author, k, self._embed, self._expand)

    async def ping(self) -> str:
        return await asyncio.to_thread(self.core.ping)


class RayBackend:
    """api.Backend over deployment handles."""

    def __init__(self, params: Params, retriever: DeploymentHandle, generator: DeploymentHandle) -> None:
        self.retriever, self.generator = retriever, generator
        self.backoff = params.serving.timeouts.retry_backoff_s

    async def retrieve(self, query: str, author: str | None, k: int | None) -> Retrieval:
        return await call(lambda: self.retriever.retrieve.remote(query, author, k), "retrieval", self.backoff)

    async def generate(self, request: GenerationRequest) -> Generation:
        return await call(lambda: self.generator.generate.remote(request), "generation", self.backoff)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        handle = self.generator.options(stream=True)
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

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        return await call(lambda: self.generator.prompt.remote(request), "prompt", self.backoff)

    async def health(self) -> Health:
        model: ModelInfo | None = None
        reasons: list[str] = []
        try:
            model = await call(lambda: self.generator.info.remote(), "model info", self.backoff)
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

    def __init__(self, params: Params, retriever: DeploymentHandle, generator: DeploymentHandle) -> None:
        self.api = create_api(RayBackend(params, retriever, generator), params, Settings().twin_ops_api_key)

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
    return Ingress.bind(params, retriever, generator)
