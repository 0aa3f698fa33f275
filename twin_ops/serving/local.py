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
from twin_ops.serving.generation import TextGenerator, choose_model, stream_events
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
        source = choose_model(params, root, models_dir, cache, serving.model_ref, model_path)
        self.generator = TextGenerator(params, source, device)

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        return vectors.tolist()

    async def _expand(self, query: str, n: int) -> list[str]:
        return await asyncio.to_thread(self.generator.expand, query, n)

    async def retrieve(self, query: str, author: str | None, k: int | None) -> Retrieval:
        return await self.retriever.retrieve(query, author, k, self._embed, self._expand)

    async def generate(self, request: GenerationRequest) -> Generation:
        def run() -> Generation:
            prepared = self.generator.prepare(request)
            return self.generator.generate_batch([prepared])[0]

        return await asyncio.to_thread(run)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        async for event in stream_events(self.generator, request):
            yield event

    async def prompt(self, request: GenerationRequest) -> ServedPrompt:
        return await asyncio.to_thread(self.generator.served_prompt, request)

    async def health(self) -> Health:
        weaviate = await asyncio.to_thread(self.retriever.ping)
        model = ModelInfo(model_version=self.generator.version, loaded=True, device=self.generator.device)
        reasons = () if weaviate == "ok" else (weaviate,)
        return Health(ok=not reasons, model=model, weaviate=weaviate, reasons=reasons)
