"""A contender (candidate, production or base model): loading it, its loss on the author's answers,
and greedy generation.

The loss is computed exactly as SFT trains: the instruction and the answer rendered with the chat
template, the loss on the answer's tokens only, truncated at ``training.max_length``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twin_ops.domain import ModelVersion

Log = Callable[[str], None]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Contender:
    role: str  # candidate | production | base
    label: str  # "<name>:v<N>" or "base:<base model>"
    path: str  # a folder from_pretrained loads
    adapter: str | None = None  # a LoRA adapter on top (a version stored without a merged model)


class ModelMissing(FileNotFoundError):
    """A registry version whose merged model and adapter are both gone from disk."""


def from_version(role: str, version: ModelVersion, root: Path, cache: Path, log: Log = print) -> Contender:
    from twin_ops.training.base_model import resolve_base_model

    label = f"{version.name}:v{version.version}"

    def local(path: Path) -> Path:  # registry paths may be relative to the project root
        return path if path.is_absolute() else root / path

    if version.merged_path is not None and (local(version.merged_path) / "config.json").exists():
        return Contender(role, label, str(local(version.merged_path)))
    if version.adapter_path is not None and local(version.adapter_path).exists():
        base = resolve_base_model(version.base_model, cache, log)
        return Contender(role, label, base, adapter=str(local(version.adapter_path)))
    raise ModelMissing(f"{label}: neither its merged model ({version.merged_path}) nor its adapter exists on disk")


def base_contender(base_model: str, cache: Path, log: Log = print) -> Contender:
    from twin_ops.training.base_model import resolve_base_model

    return Contender("base", f"base:{base_model}", resolve_base_model(base_model, cache, log))


def load(contender: Contender, device: str, log: Log = print):
    """(tokenizer, model) in eval mode; an adapter is merged so inference costs nothing extra."""
    from twin_ops.training.base_model import load_model, load_tokenizer

    tokenizer = load_tokenizer(contender.path)
    model = load_model(contender.path, device, log=log)
    if contender.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, contender.adapter).merge_and_unload()
    if device == "cuda":
        model.to("cuda")
    model.eval()
    return tokenizer, model


def _ids(tokenizer, messages: Messages, *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_ids(tokenizer, instruction: str, answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of instruction + answer and where the answer starts (as trl's completion-only loss)."""
    user = [{"role": "user", "content": instruction}]
    prompt = _ids(tokenizer, user, generation_prompt=True)
    full = _ids(tokenizer, [*user, {"role": "assistant", "content": answer}], generation_prompt=False)
    if full[: len(prompt)] != prompt:  # a template that rewrites the prompt: append the answer instead
        full = prompt + list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return full[:max_length], len(prompt)


def answer_nll(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[float, int]:
    """Summed negative log-likelihood of the answers' tokens, and how many tokens it covers."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for instruction, answer in pairs:
        ids, start = answer_ids(tokenizer, instruction, answer, max_length)
        if start >= len(ids):
            continue  # the prompt alone fills max_length: no answer token left to score
        input_ids = torch.tensor([ids], device=device)
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits[0, :-1].float()
        targets = input_ids[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[start - 1 :]
        total += float(nll.sum())
        count += int(nll.numel())
    return total, count


def loss_metrics(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> dict[str, float]:
    total, count = answer_nll(model, tokenizer, pairs, max_length)
    if count == 0:
        raise ValueError(f"no answer token fits training.max_length={max_length}: nothing to score")
    loss = total / count
    # A broken model can reach NLLs whose exp overflows; inf is the honest perplexity then.
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}


def generate(
    model,
    tokenizer,
    conversations: Sequence[Messages],
    *,
    max_new_tokens: int,
    batch_size: int,
    repetition_penalty: float,
) -> list[str]:
    """Greedy generations (deterministic), batched with left padding."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        repetition_penalty=repetition_penalty,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    outputs: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(device)
        with torch.no_grad():
            generated = model.generate(**batch, generation_config=config)
        new = generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True))
    return outputs
