"""A loaded model: chats rendered to token ids, batched and streamed generation.

One set of sampling defaults (``params.llm``) applies to every stage: the dataset builder, the
evaluation and the served twin generate with the same repetition controls, so the gate scores
answers the way production writes them.

Blocking code (torch): the Ray Generator and the one-process server call it from a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

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
        self.streamed_tokens = 0  # decode steps run by stream() in this process: shows a closed stream stopped

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

    def _generate_kwargs(self, sampling: Sampling, pad_lengths: Sequence[int]) -> dict:
        from transformers import LogitsProcessorList

        kwargs: dict = {"pad_token_id": self.pad_id, "eos_token_id": self.eos_ids}
        if sampling.temperature <= 0:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        if self.defaults.no_repeat_ngram_size > 0:
            # Safe with left padding: an n-gram that contains padding never matches generated text.
            kwargs["no_repeat_ngram_size"] = self.defaults.no_repeat_ngram_size
        if self.defaults.repetition_penalty != 1.0:
            penalty = _RowRepetitionPenalty(self.defaults.repetition_penalty, list(pad_lengths))
            kwargs["logits_processor"] = LogitsProcessorList([penalty])
        return kwargs

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sequence[Sampling]) -> list[Completion]:
        """One forward pass per step for the whole batch (left-padded), then each row cut at its own
        end-of-sequence and max_tokens. All rows must share temperature and top_p."""
        import torch

        if not prompts:
            return []
        longest = max(len(ids) for ids in prompts)
        pads = [longest - len(ids) for ids in prompts]
        rows = [[self.pad_id] * pad + list(ids) for pad, ids in zip(pads, prompts, strict=True)]
        mask = [[0] * pad + [1] * len(ids) for pad, ids in zip(pads, prompts, strict=True)]
        device = self.model.device
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.tensor(rows, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=max(s.max_tokens for s in sampling),
                **self._generate_kwargs(sampling[0], pads),
            )
        completions = []
        for row, rule in zip(output[:, longest:].tolist(), sampling, strict=True):
            tokens, reason = until_stop(row, self.eos_ids, rule.max_tokens)
            completions.append(Completion(tuple(tokens), self.decode(tokens), reason))
        return completions

    def stream(self, prompt: Sequence[int], sampling: Sampling, timeout_s: float) -> Iterator[str | Completion]:
        """Text pieces as the model writes them, then the Completion. Closing the iterator early
        (the client went away) stops the generation at the next token."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()
        loaded = self

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                loaded.streamed_tokens += 1
                return stop.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
        outcome: dict = {}
        device = self.model.device

        def run() -> None:
            try:
                with torch.inference_mode():
                    outcome["output"] = self.model.generate(
                        input_ids=torch.tensor([list(prompt)], device=device),
                        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long, device=device),
                        max_new_tokens=sampling.max_tokens,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        **self._generate_kwargs(sampling, [0]),
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
            worker.join(timeout_s)
        if "error" in outcome:
            raise outcome["error"]
        row = outcome["output"][0, len(prompt) :].tolist()
        tokens, reason = until_stop(row, self.eos_ids, sampling.max_tokens)
        yield Completion(tuple(tokens), self.decode(tokens), reason)

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


class _RowRepetitionPenalty:
    """transformers' repetition penalty over each row's own tokens (prompt and answer), never its
    left padding: a padded row in a batch must generate what it generates alone."""

    def __init__(self, penalty: float, pad_lengths: list[int]) -> None:
        self.penalty = penalty
        self.pad_lengths = pad_lengths

    def __call__(self, input_ids, scores):
        import torch

        pads = torch.tensor(self.pad_lengths, device=input_ids.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        first_real = input_ids.gather(1, pads[:, None])  # a token each row holds anyway
        ids = torch.where(positions[None, :] < pads[:, None], first_real, input_ids)
        picked = scores.gather(1, ids)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, ids, picked)


def _eos_ids(tokenizer, model) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = list(ids) if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def until_stop(row: list[int], eos_ids: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
    """A generated row cut at its first end-of-sequence token, or at ``max_tokens``."""
    for index, token in enumerate(row[:max_tokens]):
        if token in eos_ids:
            return row[:index], "stop"
    return row[:max_tokens], "length"
