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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from twin_ops.config import Params
from twin_ops.errors import Unavailable
from twin_ops.llm import GenerationDefaults, LoadedModel, ModelMissing, ModelSource, Sampling, load
from twin_ops.llm.model import DecodeRow, DecodeTiming
from twin_ops.llm.resolve import base_source, resolve_version
from twin_ops.rag import build_prompt
from twin_ops.rag.retrieve import condense_question, expand_query
from twin_ops.registry.store import PRODUCTION, Registry, RegistryError
from twin_ops.serving.records import Generation, GenerationRequest, ServedPrompt, StreamEnd, StreamEvent, StreamStart

log = logging.getLogger(__name__)


def twin_names(params: Params, root: Path) -> dict[str, str]:
    """Every known author's twin: registry model name (the served model id) → author id."""
    from twin_ops.evaluation.candidate import model_name
    from twin_ops.rag.retrieve import known_authors

    authors = [author.id for author in known_authors(root / params.collect.authors_dir)]
    if params.serving.author not in authors:
        authors.insert(0, params.serving.author)
    return {model_name(params, author): author for author in authors}


def default_twin(params: Params) -> str:
    """The model id of ``serving.author``'s twin: what answers a request that names no author."""
    from twin_ops.evaluation.candidate import model_name

    return model_name(params, params.serving.author)


def choose_model(
    params: Params, name: str, root: Path, models_dir: Path, cache: Path, ref: str, model_path: str | None = None
) -> ModelSource:
    """The model behind ``ref`` (an alias or a version number) of registry model ``name``.

    Only a missing ``production`` falls back to ``training.base_model``: an author without a
    promoted twin is served by the base model until the first promotion. An explicit version that
    does not exist is an error, never silently replaced by another model.
    """
    if model_path:  # a folder named directly (tests, experiments); the registry is not consulted
        return ModelSource(label=f"path:{model_path}", path=model_path)
    try:
        version = Registry(models_dir).get(name, ref)
    except RegistryError as exc:
        if ref != PRODUCTION:
            raise
        base = params.training.base_model
        log.info("serving %s: %s; serving the base model %s", name, exc, base)
        return base_source(base, cache)
    try:
        return resolve_version(version, root, cache)
    except ModelMissing as exc:
        raise RegistryError(str(exc)) from exc


class Catalog:
    """The twins an app serves — every known author's — and the version each serves by the registry
    (``serving.model_ref``, usually production; the base model until an author has one)."""

    def __init__(self, params: Params, root: Path, models_dir: Path, cache: Path) -> None:
        self.params, self.root, self.models_dir, self.cache = params, root, models_dir, cache
        self.names = twin_names(params, root)

    def versions(self) -> dict[str, str]:
        labels = {}
        for name in self.names:
            try:
                source = choose_model(
                    self.params, name, self.root, self.models_dir, self.cache, self.params.serving.model_ref
                )
                labels[name] = source.label
            except (RegistryError, ModelMissing) as exc:
                labels[name] = f"unavailable: {exc}"
        return labels


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

    def row(self, prepared: Prepared) -> DecodeRow:
        return DecodeRow(prepared.input_ids, prepared.sampling)

    def generation(self, prepared: Prepared, row: DecodeRow) -> Generation:
        return Generation(
            text=self.llm.decode(row.tokens),
            finish_reason=row.finish_reason or "length",
            prompt_tokens=len(prepared.input_ids),
            completion_tokens=len(row.tokens),
            context_used=prepared.context_used,
            model_version=self.version,
            queue_s=row.queued_s,
            prefill_s=row.prefill_s,
            decode_s=row.decode_s,
        )

    def generate_alone(self, request: GenerationRequest) -> Generation:
        """One request, unbatched (the one-process baseline; tests)."""
        prepared = self.prepare(request)
        row = self.row(prepared)
        self.llm.generate_rows([row])
        return self.generation(prepared, row)

    def warm_up(self) -> DecodeTiming:
        """A short generation right after loading: the first forward passes are slow (allocation),
        and the scheduler's rate estimate starts from what this one measured."""
        prompt = self.llm.render([("user", "Say something about your work in a few sentences.")])
        timing = DecodeTiming()
        self.llm.generate_rows([DecodeRow(tuple(prompt), Sampling(max_tokens=8, temperature=0.0, top_p=1.0))], timing)
        return timing

    def expand(self, question: str, n: int) -> list[str]:
        """``n`` rephrasings of the question, for query expansion (twin_ops.rag)."""
        return expand_query(self.llm, question, n, self.params)

    def condense(self, earlier: list[str], question: str) -> str:
        """A chat's follow-up as a standalone question (rag.conversation.method: condense)."""
        return condense_question(self.llm, earlier, question, self.params)


Submit = Callable[["TextGenerator", DecodeRow, GenerationRequest], tuple[asyncio.Future, Callable[[], None]]]


async def generate_with(submit: Submit, generator: TextGenerator, request: GenerationRequest) -> Generation:
    """A request's answer: its prompt built in a worker thread (tokenising ~1k-token prompts on the
    event loop would starve it), then its row handed to ``submit`` (the scheduler: admission and
    batching). If the caller goes away, the row is cancelled (it leaves the queue or the batch)."""
    prepared = await asyncio.to_thread(generator.prepare, request)
    row = generator.row(prepared)
    done, cancel = submit(generator, row, request)
    try:
        finished = await done
    except asyncio.CancelledError:
        cancel()
        raise
    if finished is None:  # cancelled underneath us: nobody is waiting for an answer
        raise asyncio.CancelledError
    return generator.generation(prepared, finished)


async def stream_with(
    submit: Submit, generator: TextGenerator, request: GenerationRequest
) -> AsyncIterator[StreamEvent]:
    """A request's stream: StreamStart once admitted, text pieces as tokens come, StreamEnd.
    Closing this iterator (the client went away) cancels the row."""
    prepared = await asyncio.to_thread(generator.prepare, request)
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[int | None] = asyncio.Queue()
    row = generator.row(prepared)
    row.on_token = lambda token: loop.call_soon_threadsafe(tokens.put_nowait, token)  # from the decode thread
    done, cancel = submit(generator, row, request)
    done.add_done_callback(lambda _: tokens.put_nowait(None))
    try:
        yield StreamStart(prepared.context_used, generator.version, len(prepared.input_ids))
        text = IncrementalText(generator.llm)
        while (token := await tokens.get()) is not None:
            if piece := text.add(token):
                yield piece
        finished = done.result()  # raises the row's error (a deadline passed, a failed batch)
        if finished is None:
            raise Unavailable("the generation was cancelled")
        yield StreamEnd(
            finish_reason=finished.finish_reason or "length",
            completion_tokens=len(finished.tokens),
            queue_s=finished.queued_s,
            prefill_s=finished.prefill_s,
            decode_s=finished.decode_s,
        )
    finally:
        if not done.done():
            cancel()


class IncrementalText:
    """Tokens → the text they add, decoding the whole answer each time (a token can end in the
    middle of a multi-byte character or merge with the next one)."""

    def __init__(self, llm: LoadedModel) -> None:
        self.llm = llm
        self.tokens: list[int] = []
        self.sent = ""

    def add(self, token: int) -> str:
        self.tokens.append(token)
        text = self.llm.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent) :], text
        return piece


def alone(
    generator: TextGenerator, row: DecodeRow, request: GenerationRequest
) -> tuple[asyncio.Future, Callable[[], None]]:
    """A ``Submit`` without a scheduler: the row runs by itself in a worker thread (the baseline)."""
    stop = {"now": False}
    row.should_stop = lambda: stop["now"]

    async def run() -> DecodeRow | None:
        await asyncio.to_thread(generator.llm.generate_rows, [row])
        return None if stop["now"] else row

    return asyncio.ensure_future(run()), lambda: stop.update(now=True)


def require_loaded(generator: TextGenerator | None, error: str | None) -> TextGenerator:
    if generator is None:
        raise Unavailable(f"the model is not loaded: {error or 'still loading'}")
    return generator
