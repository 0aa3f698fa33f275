"""A tiny, randomly initialised Llama with a real tokenizer, for tests and smoke runs.

Training mechanics (checkpoints, resume, containers, artifacts) do not need a good model, only a
real one: this is a 2-layer Llama of ~3M parameters with the base model's tokenizer and chat
template, built locally in a second (no download).
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(target: Path, tokenizer_source: str, *, seed: int = 0) -> Path:
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
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
