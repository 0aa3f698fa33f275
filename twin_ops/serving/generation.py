"""The served model: which one (registry alias → checkpoint), the request's prompt through the
shared RAG prompt builder, batched generation and token streaming.

The model itself is a ``twin_ops.llm.LoadedModel`` and the prompt is ``twin_ops.rag.build_prompt``:
the evaluation gate builds its prompts and generates with the very same code.

Blocking code (torch); the Ray Generator deployment and the one-process baseline both call it
from a worker thread so their event loops keep accepting requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from twin_ops.config import Params
from twin_ops.errors import RequestError, Unavailable
from twin_ops.llm import Completion, GenerationDefaults, LoadedModel, ModelMissing, ModelSource, Sampling, load
from twin_ops.llm.resolve import base_source, resolve_version
from twin_ops.rag import build_prompt
from twin_ops.rag.retrieve import expand_query
from twin_ops.registry.store import PRODUCTION, Registry, RegistryError
from twin_ops.serving.records import Generation, GenerationRequest, ServedPrompt, StreamEnd, StreamEvent, StreamStart

log = logging.getLogger(__name__)


def choose_model(
    params: Params, root: Path, models_dir: Path, cache: Path, ref: str, model_path: str | None = None
) -> ModelSource:
    """The model behind ``ref`` (an alias or a version number) of ``serving.model_name``.

    Only a missing ``production`` falls back to ``training.base_model``: a fresh project serves the
    base model until the first promotion. An explicit version that does not exist is an error,
    never silently replaced by another model.
    """
    if model_path:  # a folder named directly (tests, experiments); the registry is not consulted
        return ModelSource(label=f"path:{model_path}", path=model_path)
    name = params.serving.model_name
    try:
        version = Registry(models_dir).get(name, ref)
    except RegistryError as exc:
        if ref != PRODUCTION:
            raise
        base = params.training.base_model
        log.warning("serving %s: %s; serving the base model %s", name, exc, base)
        return base_source(base, cache)
    try:
        return resolve_version(version, root, cache)
    except ModelMissing as exc:
        raise RegistryError(str(exc)) from exc


@dataclass(frozen=True)
class Prepared:
    """A request rendered to the model's prompt (token ids), ready to batch."""

    input_ids: tuple[int, ...]
    context_used: int
    sampling: Sampling


class TextGenerator:
    """One loaded model, served. Thread-safe for concurrent calls (inference only, no state)."""

    def __init__(self, params: Params, source: ModelSource, device: str) -> None:
        self.params = params
        self.source = source
        self.version = source.label
        self.device = device
        self.llm: LoadedModel = load(source, device, GenerationDefaults.from_params(params.llm))
        self.tokenizer = self.llm.tokenizer
        self.model = self.llm.model
        self.max_positions = self.llm.max_positions

    def prepare(self, request: GenerationRequest) -> Prepared:
        """The chat with the retrieved context in its last user turn, as token ids (twin_ops.rag)."""
        prompt = build_prompt(
            self.llm, request.messages, request.passages, self.params.rag, request.sampling.max_tokens
        )
        return Prepared(input_ids=prompt.input_ids, context_used=prompt.context_used, sampling=request.sampling)

    def served_prompt(self, request: GenerationRequest) -> ServedPrompt:
        prepared = self.prepare(request)
        return ServedPrompt(self.version, prepared.input_ids, prepared.context_used)

    def _generation(self, item: Prepared, completion: Completion) -> Generation:
        return Generation(
            text=completion.text,
            finish_reason=completion.finish_reason,
            prompt_tokens=len(item.input_ids),
            completion_tokens=len(completion.tokens),
            context_used=item.context_used,
            model_version=self.version,
        )

    def generate_batch(self, batch: Sequence[Prepared]) -> list[Generation]:
        """One batched generation (all rows share temperature and top_p)."""
        completions = self.llm.generate([item.input_ids for item in batch], [item.sampling for item in batch])
        return [self._generation(item, completion) for item, completion in zip(batch, completions, strict=True)]

    def stream(self, item: Prepared) -> Iterator[str | StreamEnd]:
        """Text pieces as the model writes them, then a StreamEnd. Closing the iterator early
        (the client went away) stops the generation at the next token."""
        pieces = self.llm.stream(item.input_ids, item.sampling, self.params.serving.timeouts.generation_s)
        try:
            for piece in pieces:
                if isinstance(piece, Completion):
                    yield StreamEnd(finish_reason=piece.finish_reason, completion_tokens=len(piece.tokens))
                else:
                    yield piece
        except RequestError:
            raise
        except Exception as exc:
            raise Unavailable(f"generation failed: {exc}") from exc
        finally:
            pieces.close()

    def expand(self, question: str, n: int) -> list[str]:
        """``n`` rephrasings of the question, for query expansion (twin_ops.rag)."""
        return expand_query(self.llm, question, n, self.params)


def group_for_batching(items: Sequence[tuple[TextGenerator, Prepared]]) -> list[list[int]]:
    """Indices of the items that can share one generate call: same model object (a swap may be
    under way: in-flight requests finish on the model they were prepared for) and same sampling
    temperature and top_p (one generate call samples all its rows alike)."""
    groups: dict[tuple, list[int]] = {}
    for index, (generator, prepared) in enumerate(items):
        key = (id(generator), prepared.sampling.temperature, prepared.sampling.top_p)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def generate_requests(items: Sequence[tuple[TextGenerator, GenerationRequest]]) -> list[Generation | RequestError]:
    """Prompts built and generated for a whole batch, results in request order.

    Building prompts here, in the batch's worker thread, keeps the replica's event loop free to
    take in the next requests (tokenising ~1k-token prompts one by one on the loop starved it).
    A request that cannot be prepared gets its error back; the others are unaffected.
    """
    results: list[Generation | RequestError | None] = [None] * len(items)
    ready: list[tuple[int, TextGenerator, Prepared]] = []
    for index, (generator, request) in enumerate(items):
        try:
            ready.append((index, generator, generator.prepare(request)))
        except RequestError as exc:
            results[index] = exc
    for group in group_for_batching([(generator, prepared) for _, generator, prepared in ready]):
        generator = ready[group[0]][1]
        generations = generator.generate_batch([ready[i][2] for i in group])
        for i, generation in zip(group, generations, strict=True):
            results[ready[i][0]] = generation
    return [result for result in results if result is not None]


async def stream_events(generator: TextGenerator, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
    """A request's stream for an event loop: StreamStart, the text pieces, StreamEnd. The blocking
    steps run in threads; closing this iterator (the client went away) stops the generation."""
    prepared = await asyncio.to_thread(generator.prepare, request)
    yield StreamStart(prepared.context_used, generator.version, len(prepared.input_ids))
    pieces = generator.stream(prepared)
    try:
        while (event := await asyncio.to_thread(next, pieces, None)) is not None:
            yield event
    finally:
        await asyncio.to_thread(pieces.close)


def require_loaded(generator: TextGenerator | None, error: str | None) -> TextGenerator:
    if generator is None:
        raise Unavailable(f"the model is not loaded: {error or 'still loading'}")
    return generator
