"""A tiny, randomly initialised Llama with a real tokenizer, for tests and smoke runs.

Training mechanics (checkpoints, resume, containers, artifacts) do not need a good model, only a
real one: this is a 2-layer Llama with the base model's tokenizer and chat template, built locally
in a second (no download). With the base tokenizer's 49k-token vocabulary the embedding and LM
head are most of its ~3M parameters and most of a training step's time; ``vocab_size`` retrains
the same byte-level BPE tokenizer (same special tokens, same chat template) on a small corpus down
to a few hundred tokens, which makes a CPU step several times cheaper. Any text still encodes:
byte-level BPE falls back to single bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Enough text for the retrained tokenizer to learn common English merges; callers add their own.
CORPUS = (
    "The tide turns at noon, so we launch an hour before and come back on the flood.",
    "What does the table say about the weather, the wind and the water today?",
    "I wrote this post because the question kept coming up: how do you know when a system is healthy?",
    "A retry budget caps how much extra load the clients may add when the service is already struggling.",
    "Write the opening of your post. In your own words, explain the topic, as you did before.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)


def small_tokenizer(tokenizer, vocab_size: int, corpus: Iterable[str] = ()):
    """The same tokenizer (pipeline, special tokens, chat template) retrained to ``vocab_size``."""
    texts = [*CORPUS, *corpus]
    small = tokenizer.train_new_from_iterator(texts, vocab_size=vocab_size)
    small.chat_template = tokenizer.chat_template
    if tokenizer.pad_token is not None:
        small.pad_token = tokenizer.pad_token
    return small


def build_tiny_model(
    target: Path,
    tokenizer_source: str,
    *,
    seed: int = 0,
    vocab_size: int | None = None,
    corpus: Iterable[str] = (),
) -> Path:
    """Build (once) a 2-layer Llama at ``target``; ``vocab_size`` shrinks its tokenizer (see above)."""
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    if vocab_size is not None:
        tokenizer = small_tokenizer(tokenizer, vocab_size, corpus)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
