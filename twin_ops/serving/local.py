"""A Backend in one process: the same retrieval and model code, called directly, one request at a
time per worker thread — the single-process FastAPI architecture of the LLM Engineer's Handbook.

It is the benchmark's baseline (benchmarks/serve.py) and a way to run the API without Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from twin_ops.config import Params, Settings
from twin_ops.features.embed import Embedder
from twin_ops.llm import pick_device
from twin_ops.rag import Retrieval
from twin_ops.rag.retrieve import Retriever, known_authors
from twin_ops.serving.generation import TextGenerator, alone, choose_model, default_twin, stream_with
from twin_ops.serving.records import Generation, GenerationRequest, Health, ModelInfo, ServedPrompt, StreamEvent


class LocalBackend:
    def __init__(
        self,
        params: Params,
        root: Path,
        models_dir: Path,
        cache: Path,
        *,
        model_path: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        # torch keeps its default thread pool (all cores): this process is the whole server.
        serving = params.serving
        device = pick_device(serving.device)
        self.params = params
        self.embedder = Embedder(params.features.embedding_model, device, params.features.embedding_batch_size)
        self.retriever = Retriever(params, known_authors(root / params.collect.authors_dir), settings)
        # One twin (serving.author's): the naive baseline the Ray app is measured against.
        self.model_id = default_twin(params)
        source = choose_model(params, self.model_id, root, models_dir, cache, serving.model_ref, model_path)
        self.generator = TextGenerator(params, source, device)

    async def models(self) -> dict[str, str]:
        return {self.model_id: self.generator.version}

    async def check_admission(self, model_id: str, prompt_tokens: int, max_tokens: int, deadline: float) -> None:
        """The baseline admits everything (that is what it is measured for)."""

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        return vectors.tolist()

    async def _expand(self, query: str, n: int) -> list[str]:
        return await asyncio.to_thread(self.generator.expand, query, n)

    async def retrieve(self, query: str, author: str | None, k: int | None) -> Retrieval:
        return await self.retriever.retrieve(query, author, k, self._embed, self._expand)

    async def generate(self, request: GenerationRequest) -> Generation:
        # Each request alone in its own thread, no admission, no batching: the naive server.
        return await asyncio.to_thread(self.generator.generate_alone, request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        async for event in stream_with(alone, self.generator, request):
            yield event

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        return await asyncio.to_thread(self.generator.served_prompt, request)

    async def health(self, model_id: str) -> Health:
        weaviate = await asyncio.to_thread(self.retriever.ping)
        model = ModelInfo(model_version=self.generator.version, loaded=True, device=self.generator.device)
        reasons = () if weaviate == "ok" else (weaviate,)
        return Health(ok=not reasons, model=model, weaviate=weaviate, reasons=reasons)
