"""The contenders (candidate, production, base) and the loss of each on the author's answers.

Loading and generation are twin_ops.llm's (the same code the served twin runs). The loss is
computed exactly as SFT trains: the instruction and the answer rendered with the chat template,
the loss on the answer's tokens only, truncated at ``training.max_length``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin_ops.domain import ModelVersion
from twin_ops.errors import InputError
from twin_ops.llm import LoadedModel, ModelSource, resolve_version
from twin_ops.llm.resolve import base_source


class NothingToScore(InputError, ValueError):
    """No answer token fits ``training.max_length``."""


@dataclass(frozen=True)
class Contender:
    role: str  # candidate | production | base
    source: ModelSource

    @property
    def label(self) -> str:
        return self.source.label


def from_version(role: str, version: ModelVersion, root: Path, cache: Path) -> Contender:
    return Contender(role, resolve_version(version, root, cache))


def base_contender(base_model: str, cache: Path) -> Contender:
    return Contender("base", base_source(base_model, cache))


def answer_ids(model: LoadedModel, instruction: str, answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of instruction + answer and where the answer starts (as trl's completion-only loss)."""
    user = [("user", instruction)]
    prompt = model.render(user, generation_prompt=True)
    full = model.render([*user, ("assistant", answer)], generation_prompt=False)
    if full[: len(prompt)] != prompt:  # a template that rewrites the prompt: append the answer instead
        eos = model.tokenizer.eos_token_id
        full = prompt + list(model.tokenizer(answer, add_special_tokens=False)["input_ids"]) + [eos]
    return full[:max_length], len(prompt)


def answer_nll(model: LoadedModel, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the summed negative log-likelihood of the answer's tokens, and how many tokens it
    covers (0 when the prompt alone fills ``max_length``)."""
    import torch

    totals, counts = np.zeros(len(pairs)), np.zeros(len(pairs))
    device = model.model.device
    for row, (instruction, answer) in enumerate(pairs):
        ids, start = answer_ids(model, instruction, answer, max_length)
        if start >= len(ids):
            continue  # the prompt alone fills max_length: no answer token left to score
        input_ids = torch.tensor([ids], device=device)
        with torch.no_grad():
            logits = model.model(input_ids=input_ids).logits[0, :-1].float()
        targets = input_ids[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[start - 1 :]
        totals[row], counts[row] = float(nll.sum()), nll.numel()
    return totals, counts


@dataclass(frozen=True)
class TokenLoss:
    """Loss and perplexity from per-sample NLL sums and token counts: the mean NLL per answer token
    over the samples picked (a ratio of sums, as training computes it, not a mean of per-sample
    losses), so long answers weigh by their tokens in every bootstrap resample too."""

    nll: np.ndarray
    tokens: np.ndarray

    def metrics(self, index: np.ndarray) -> dict[str, float]:
        count = self.tokens[index].sum()
        if count == 0:
            return {"loss": math.nan, "perplexity": math.nan}
        loss = float(self.nll[index].sum() / count)
        # A broken model can reach NLLs whose exp overflows; inf is the honest perplexity then.
        return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}


def token_loss(model: LoadedModel, pairs: Sequence[tuple[str, str]], max_length: int) -> TokenLoss:
    nll, tokens = answer_nll(model, pairs, max_length)
    if tokens.sum() == 0:
        raise NothingToScore(f"no answer token fits training.max_length={max_length}: nothing to score")
    return TokenLoss(nll, tokens)
