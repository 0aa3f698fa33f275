"""Batched, greedy chat generation with a local causal LM (instructions and rejected answers).

Greedy decoding keeps reruns identical on the same machine. Conversations are sorted by length
before batching so each batch pads little, then answers are returned in the input order.
"""

from __future__ import annotations

from collections.abc import Callable

Messages = list[dict[str, str]]


def generate_chat(
    model,
    tokenizer,
    conversations: list[Messages],
    *,
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    import torch

    # Decoder-only models continue from the last token: pad on the left so every prompt ends there.
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    model.eval()
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        for i, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            answers[i] = text.strip()
        if on_batch:
            on_batch(len(indices))
    return answers
