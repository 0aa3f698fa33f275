"""The served model: which one (registry alias → checkpoint), prompts within a token budget,
batched generation and token streaming.

Blocking code (torch); the Ray Generator deployment and the one-process baseline both call it
from a worker thread so their event loops keep accepting requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from twin_ops.config import Params
from twin_ops.registry.store import PRODUCTION, Registry, RegistryError
from twin_ops.serving.errors import InvalidRequest, ServingError, Unavailable
from twin_ops.serving.records import Generation, GenerationRequest, Passage, Sampling, StreamEnd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """What to load: a checkpoint folder, optionally a LoRA adapter on top, and its label."""

    version: str
    path: str
    adapter: str | None = None


def choose_model(
    params: Params, root: Path, models_dir: Path, cache: Path, ref: str, model_path: str | None = None
) -> ModelChoice:
    """The model behind ``ref`` (an alias or a version number) of ``serving.model_name``.

    Only a missing ``production`` falls back to ``training.base_model``: a fresh project serves the
    base model until the first promotion. An explicit version that does not exist is an error,
    never silently replaced by another model.
    """
    from twin_ops.training.base_model import resolve_base_model

    def say(message: str) -> None:
        log.info(message)

    if model_path:  # a folder named directly (tests, experiments); the registry is not consulted
        return ModelChoice(version=f"path:{model_path}", path=model_path)
    name = params.serving.model_name
    try:
        version = Registry(models_dir).get(name, ref)
    except RegistryError as exc:
        if ref != PRODUCTION:
            raise
        base = params.training.base_model
        log.warning("serving %s: %s; serving the base model %s", name, exc, base)
        return ModelChoice(version=f"base:{base}", path=resolve_base_model(base, cache, say))
    label = f"{name}:v{version.version}"

    def local(path: Path) -> Path:  # the registry may hold paths relative to the project root
        return path if path.is_absolute() else root / path

    if version.merged_path is not None and local(version.merged_path).exists():
        return ModelChoice(version=label, path=str(local(version.merged_path)))
    if version.adapter_path is not None and local(version.adapter_path).exists():
        base = resolve_base_model(version.base_model, cache, say)
        return ModelChoice(version=label, path=base, adapter=str(local(version.adapter_path)))
    raise RegistryError(f"{label}: neither its merged model nor its adapter exists on disk")


def load_choice(choice: ModelChoice, device: str):
    """Tokenizer and model in eval mode; an adapter is merged once so inference pays nothing for it."""
    from twin_ops.training.base_model import load_model, load_tokenizer

    tokenizer = load_tokenizer(choice.path)
    model = load_model(choice.path, device, log=log.info)
    if choice.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, choice.adapter).merge_and_unload()
    model.eval()
    if device == "cuda":
        model.to("cuda")
    return tokenizer, model


@dataclass(frozen=True)
class Prepared:
    """A request rendered to the model's prompt (token ids), ready to batch."""

    input_ids: tuple[int, ...]
    context_used: int
    sampling: Sampling


def context_block(passages: Sequence[Passage], count_tokens: TokenCounter, budget: int) -> tuple[str, int]:
    """Numbered passages in rank order while they fit ``budget`` tokens; how many were used.

    The passage that crosses the budget is cut to the room left (at a token boundary) and ends the
    context, so the best-ranked text always wins over a complete but lower-ranked one.
    """
    parts: list[str] = []
    used = 0
    left = budget
    for number, passage in enumerate(passages, start=1):
        header = f"[{number}] {passage.title}\n"
        cost = count_tokens(header + passage.text)
        if cost <= left:
            parts.append(header + passage.text)
            left -= cost
            used += 1
            continue
        room = left - count_tokens(header)
        if room >= 16:  # a shorter scrap is noise, not context
            parts.append(header + count_tokens.cut(passage.text, room))
            used += 1
        break
    return "\n\n".join(parts), used


class TokenCounter:
    """Token counting and cutting with one tokenizer (callable: count)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def cut(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return self.tokenizer.decode(ids)


class TextGenerator:
    """One loaded model. Thread-safe for concurrent generate calls (inference only, no state)."""

    def __init__(self, params: Params, choice: ModelChoice, device: str) -> None:
        import torch

        self.params = params
        self.choice = choice
        self.version = choice.version
        self.device = device
        self.tokenizer, self.model = load_choice(choice, device)
        self.count = TokenCounter(self.tokenizer)
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(self.tokenizer, self.model)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._torch = torch

    # --- prompts --------------------------------------------------------------------------------

    def render(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        chat = [{"role": role, "content": content} for role, content in messages]
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            return list(ids)
        text = "\n".join(f"{role}: {content}" for role, content in messages) + "\nassistant:"
        return self.tokenizer(text)["input_ids"]

    def prepare(self, request: GenerationRequest) -> Prepared:
        """The chat with the retrieved context put into the last user turn, as token ids.

        Training used user turns only (no system prompt), so the context goes where the model
        learnt to read instructions: into the user's message.
        """
        settings = self.params.serving
        messages = list(request.messages)
        if not messages or messages[-1][0] != "user":
            raise InvalidRequest("the last message must come from the user")
        context, used = context_block(request.passages, self.count, settings.retrieval.context_token_budget)
        if used:
            question = messages[-1][1]
            messages[-1] = ("user", settings.generation.prompt_template.format(context=context, question=question))
        ids = self.render(messages)
        if len(ids) + request.sampling.max_tokens > self.max_positions:
            raise InvalidRequest(
                f"the prompt is {len(ids)} tokens; with max_tokens {request.sampling.max_tokens} it exceeds "
                f"the model's context of {self.max_positions} tokens (send fewer or shorter messages)"
            )
        return Prepared(input_ids=tuple(ids), context_used=used, sampling=request.sampling)

    # --- generation -----------------------------------------------------------------------------

    def _sampling_kwargs(self, sampling: Sampling) -> dict:
        if sampling.temperature <= 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}

    def generate_batch(self, batch: Sequence[Prepared]) -> list[Generation]:
        """One forward pass per step for the whole batch (left-padded), then each row cut at its own
        end-of-sequence and max_tokens. All rows must share temperature and top_p."""
        torch = self._torch
        sampling = batch[0].sampling
        longest = max(len(item.input_ids) for item in batch)
        rows = [[self.pad_id] * (longest - len(item.input_ids)) + list(item.input_ids) for item in batch]
        mask = [[0] * (longest - len(item.input_ids)) + [1] * len(item.input_ids) for item in batch]
        input_ids = torch.tensor(rows, device=self.model.device)
        attention = torch.tensor(mask, device=self.model.device)
        max_new = max(item.sampling.max_tokens for item in batch)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
                **self._sampling_kwargs(sampling),
            )
        results = []
        for item, row in zip(batch, output[:, longest:].tolist(), strict=True):
            tokens, reason = _until_stop(row, self.eos_ids, item.sampling.max_tokens)
            results.append(
                Generation(
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                    finish_reason=reason,
                    prompt_tokens=len(item.input_ids),
                    completion_tokens=len(tokens),
                    context_used=item.context_used,
                    model_version=self.version,
                )
            )
        return results

    def stream(self, item: Prepared) -> Iterator[str | StreamEnd]:
        """Text pieces as the model writes them, then a StreamEnd. Closing the iterator early
        (the client went away) stops the generation at the next token."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        torch = self._torch
        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        timeout = self.params.serving.timeouts.generation_s
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
        outcome: dict = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    outcome["output"] = self.model.generate(
                        input_ids=torch.tensor([list(item.input_ids)], device=self.model.device),
                        attention_mask=torch.ones((1, len(item.input_ids)), dtype=torch.long, device=self.model.device),
                        max_new_tokens=item.sampling.max_tokens,
                        pad_token_id=self.pad_id,
                        eos_token_id=self.eos_ids,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        **self._sampling_kwargs(item.sampling),
                    )
            except Exception as exc:  # reported to the reader below, not lost in the thread
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="twin-stream", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
            worker.join(timeout)
        if "error" in outcome:
            raise Unavailable(f"generation failed: {outcome['error']}")
        row = outcome["output"][0, len(item.input_ids) :].tolist()
        tokens, reason = _until_stop(row, self.eos_ids, item.sampling.max_tokens)
        yield StreamEnd(finish_reason=reason, completion_tokens=len(tokens))

    def expand(self, question: str, n: int) -> list[str]:
        """``n`` rephrasings of the question (sampled), for query expansion."""
        template = self.params.serving.generation.expansion_template
        ids = self.render([("user", template.format(question=question))])
        sampling = Sampling(max_tokens=self.params.serving.generation.expansion_max_tokens, temperature=0.8, top_p=0.95)
        batch = [Prepared(input_ids=tuple(ids), context_used=0, sampling=sampling)] * n
        return [generation.text.split("\n")[0].strip() for generation in self.generate_batch(batch)]


def _eos_ids(tokenizer, model) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _until_stop(row: list[int], eos_ids: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
    for index, token in enumerate(row[:max_tokens]):
        if token in eos_ids:
            return row[:index], "stop"
    return row[:max_tokens], "length"


def group_for_batching(items: Sequence[tuple[TextGenerator, Prepared]]) -> list[list[int]]:
    """Indices of the items that can share one generate call: same model object (a swap may be
    under way: in-flight requests finish on the model they were prepared for) and same sampling
    temperature and top_p (one generate call samples all its rows alike)."""
    groups: dict[tuple, list[int]] = {}
    for index, (generator, prepared) in enumerate(items):
        key = (id(generator), prepared.sampling.temperature, prepared.sampling.top_p)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def generate_requests(items: Sequence[tuple[TextGenerator, GenerationRequest]]) -> list[Generation | ServingError]:
    """Prompts built and generated for a whole batch, results in request order.

    Building prompts here, in the batch's worker thread, keeps the replica's event loop free to
    take in the next requests (tokenising ~1k-token prompts one by one on the loop starved it).
    A request that cannot be prepared gets its error back; the others are unaffected.
    """
    results: list[Generation | ServingError | None] = [None] * len(items)
    ready: list[tuple[int, TextGenerator, Prepared]] = []
    for index, (generator, request) in enumerate(items):
        try:
            ready.append((index, generator, generator.prepare(request)))
        except ServingError as exc:
            results[index] = exc
    for group in group_for_batching([(generator, prepared) for _, generator, prepared in ready]):
        generator = ready[group[0]][1]
        generations = generator.generate_batch([ready[i][2] for i in group])
        for i, generation in zip(group, generations, strict=True):
            results[ready[i][0]] = generation
    return [result for result in results if result is not None]


def require_loaded(generator: TextGenerator | None, error: str | None) -> TextGenerator:
    if generator is None:
        raise Unavailable(f"the model is not loaded: {error or 'still loading'}")
    return generator


def pick_device(device: str) -> str:
    from twin_ops.training.base_model import pick_device as pick

    return pick(device)
