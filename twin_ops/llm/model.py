"""A loaded model: chats rendered to token ids, batched and streamed generation.

One set of sampling defaults (``params.llm``) applies to every stage: the dataset builder, the
evaluation and the served twin generate with the same repetition controls, so the gate scores
answers the way production writes them.

Blocking code (torch): the Ray Generator and the one-process server call it from a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twin_ops.llm.resolve import ModelSource

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float  # 0 = greedy
    top_p: float


GREEDY_TOP_P = 1.0


@dataclass(frozen=True)
class GenerationDefaults:
    """Repetition controls every generation gets (``params.llm``)."""

    repetition_penalty: float = 1.0  # > 1 discourages tokens the row already holds (never its padding)
    no_repeat_ngram_size: int = 0  # > 0: an n-gram of this size never repeats within a row

    @classmethod
    def from_params(cls, llm) -> GenerationDefaults:
        return cls(repetition_penalty=llm.repetition_penalty, no_repeat_ngram_size=llm.no_repeat_ngram_size)


@dataclass(frozen=True)
class Completion:
    tokens: tuple[int, ...]
    text: str
    finish_reason: str  # "stop" (an end-of-sequence token) or "length" (max_tokens reached)


@dataclass
class DecodeRow:
    """One prompt being generated: its tokens so far, and when (and why) it ended."""

    prompt: tuple[int, ...]
    sampling: Sampling
    on_token: Callable[[int], None] | None = None  # called with each new token (streaming)
    should_stop: Callable[[], bool] | None = None  # True: leave the batch now (cancelled, deadline)
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" (end-of-sequence), "length" (max_tokens), "cancelled"
    # Where its time went (a trace records it): waiting for a batch (set by the serving scheduler),
    # its batch's prefill, and the decode steps it took part in (set by generate_rows).
    queued_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def take(self, token: int, eos_ids: Sequence[int]) -> None:
        if token in eos_ids:
            self.finish_reason = "stop"
            return
        self.tokens.append(token)
        if self.on_token is not None:
            self.on_token(token)
        if len(self.tokens) >= self.sampling.max_tokens:
            self.finish_reason = "length"
        elif self.should_stop is not None and self.should_stop():
            self.finish_reason = "cancelled"

    def completion(self, model: LoadedModel) -> Completion:
        return Completion(tuple(self.tokens), model.decode(self.tokens), self.finish_reason or "length")


@dataclass
class DecodeTiming:
    """Where a decode call spent its time: the scheduler's service-rate estimate reads it."""

    prefill_s: float = 0.0
    prefill_tokens: int = 0
    decode_s: float = 0.0
    steps: int = 0  # forward passes after the prefill
    row_steps: int = 0  # tokens decoded, all rows together

    def scaled(self, wall_s: float) -> DecodeTiming:
        """The same split of prefill and decode, stretched to ``wall_s`` seconds in all."""
        inside = self.prefill_s + self.decode_s
        factor = wall_s / inside if inside > 0 and wall_s > inside else 1.0
        return DecodeTiming(
            self.prefill_s * factor, self.prefill_tokens, self.decode_s * factor, self.steps, self.row_steps
        )


def _step_time(rows: Sequence[DecodeRow], timing: DecodeTiming, seconds: float) -> None:
    timing.decode_s += seconds
    for row in rows:
        row.decode_s += seconds


class LoadedModel:
    """Tokenizer + model in eval mode. Thread-safe for concurrent calls (inference only)."""

    def __init__(self, source: ModelSource, tokenizer, model, defaults: GenerationDefaults) -> None:
        self.source = source
        self.label = source.label
        self.tokenizer = tokenizer
        self.model = model
        self.defaults = defaults
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    # --- text and tokens ------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], *, generation_prompt: bool = True) -> list[int]:
        """The chat as token ids, with the model's chat template (every model has one: see load)."""
        chat = [{"role": role, "content": content} for role, content in messages]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def cut(self, text: str, tokens: int) -> str:
        """The first ``tokens`` tokens of ``text``, as text (cut at a token boundary)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return self.tokenizer.decode(ids)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip()

    # --- generation -----------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sequence[Sampling]) -> list[Completion]:
        """One batched generation (see ``generate_rows``); each row is cut at its own end-of-sequence and
        max_tokens. Rows may differ in temperature and top_p."""
        rows = [DecodeRow(tuple(ids), rule) for ids, rule in zip(prompts, sampling, strict=True)]
        self.generate_rows(rows)
        return [row.completion(self) for row in rows]

    def generate_rows(self, rows: Sequence[DecodeRow], timing: DecodeTiming | None = None) -> None:
        """Generate every row to its end, one forward pass per step for the rows still running.

        The project's own loop over the KV cache rather than ``model.generate``: a row leaves the
        batch the moment it ends (end-of-sequence, max_tokens, or ``row.should_stop()`` — its
        client went away or its deadline passed), so the others stop paying for it, and each row
        hands its tokens to ``row.on_token`` as they come (streaming). Left padding, per-row
        positions and a per-row repetition penalty make a padded row generate what it does alone.
        """
        import torch

        active = [row for row in rows if row.finish_reason is None]
        if not active:
            return
        timing = timing if timing is not None else DecodeTiming()
        device = self.model.device
        longest = max(len(row.prompt) for row in active)
        pads = [longest - len(row.prompt) for row in active]
        ids = torch.tensor(
            [[self.pad_id] * pad + list(row.prompt) for pad, row in zip(pads, active, strict=True)], device=device
        )
        mask = torch.tensor(
            [[0] * pad + [1] * len(row.prompt) for pad, row in zip(pads, active, strict=True)], device=device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # What the repetition penalty looks at: each row's own tokens, its padding replaced by a token
        # the row holds anyway (so padding never penalises anything).
        first_real = ids.gather(1, torch.tensor(pads, device=device)[:, None])
        seen = torch.where(mask.bool(), ids, first_real)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
            )
            prefill_s = time.perf_counter() - started
            timing.prefill_s += prefill_s
            timing.prefill_tokens += sum(len(row.prompt) for row in active)
            for row in active:
                row.prefill_s += prefill_s
            cache, logits = out.cache, out.logits[:, -1, :].float()
            last_position = positions[:, -1]
            while True:
                step = time.perf_counter()
                tokens = self._pick(self._penalise(logits, seen, active), [row.sampling for row in active])
                for row, token in zip(active, tokens.tolist(), strict=True):
                    row.take(token, self.eos_ids)
                keep = [index for index, row in enumerate(active) if row.finish_reason is None]
                timing.steps += 1
                timing.row_steps += len(active)
                if not keep:
                    _step_time(active, timing, time.perf_counter() - step)
                    break
                if len(keep) < len(active):  # finished rows leave the batch and its KV cache
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    mask, seen, tokens, last_position = mask[index], seen[index], tokens[index], last_position[index]
                    active = [active[i] for i in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                seen = torch.cat([seen, tokens[:, None]], dim=1)
                last_position = last_position + 1
                out = self.model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=last_position[:, None],
                    cache=cache,
                    use_cache=True,
                )
                cache, logits = out.cache, out.logits[:, -1, :].float()
                _step_time(active, timing, time.perf_counter() - step)

    def _penalise(self, logits, seen, rows: Sequence[DecodeRow]):
        """transformers' repetition penalty and no-repeat n-grams, over each row's own tokens."""
        import torch

        penalty = self.defaults.repetition_penalty
        if penalty != 1.0:
            picked = logits.gather(1, seen)
            picked = torch.where(picked < 0, picked * penalty, picked / penalty)
            logits = logits.scatter(1, seen, picked)
        size = self.defaults.no_repeat_ngram_size
        if size > 0:
            for index, row in enumerate(rows):
                banned = _banned_by_ngrams(list(row.prompt) + row.tokens, size)
                if banned:
                    logits[index, banned] = -float("inf")
        return logits

    @staticmethod
    def _pick(logits, sampling: Sequence[Sampling]):
        """The next token of each row: argmax for greedy rows (temperature 0), else sampled with the
        row's own temperature and top-p (nucleus), as transformers' warpers do."""
        import torch

        greedy = logits.argmax(dim=-1)
        if all(rule.temperature <= 0 for rule in sampling):
            return greedy
        temperature = torch.tensor([rule.temperature if rule.temperature > 0 else 1.0 for rule in sampling])
        top_p = torch.tensor([rule.top_p for rule in sampling])
        scaled = logits / temperature.to(logits.device)[:, None]
        ordered, order = scaled.sort(dim=-1, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - top_p.to(logits.device))[:, None]
        drop[:, -1] = False  # the most likely token always stays
        scaled = scaled.scatter(1, order, ordered.masked_fill(drop, -float("inf")))
        sampled = torch.multinomial(scaled.softmax(dim=-1), num_samples=1)[:, 0]
        is_greedy = torch.tensor([rule.temperature <= 0 for rule in sampling], device=logits.device)
        return torch.where(is_greedy, greedy, sampled)

    def complete(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        batch_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy answers to prompts given as token ids (reruns are identical on the same machine),
        in the input order. Prompts are sorted by length before batching so each batch pads little."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        greedy = Sampling(max_tokens=max_new_tokens, temperature=0.0, top_p=GREEDY_TOP_P)
        answers = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            completions = self.generate([prompts[i] for i in indices], [greedy] * len(indices))
            for i, completion in zip(indices, completions, strict=True):
                answers[i] = completion.text
            if on_batch:
                on_batch(len(indices))
        return answers

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_new_tokens: int,
        batch_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy answers to whole conversations (see ``complete``)."""
        prompts = [self.render(conversation) for conversation in conversations]
        return self.complete(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, on_batch=on_batch)


def _eos_ids(tokenizer, model) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = list(ids) if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _banned_by_ngrams(tokens: list[int], size: int) -> list[int]:
    """Tokens that would complete an n-gram of ``size`` the row already holds (transformers'
    no_repeat_ngram_size rule)."""
    if len(tokens) < size:
        return []
    prefix = tuple(tokens[len(tokens) - size + 1 :])
    return [
        tokens[start + size - 1]
        for start in range(len(tokens) - size + 1)
        if tuple(tokens[start : start + size - 1]) == prefix
    ]
