"""Loading: one device and dtype policy, a tokenizer that can always render a chat, adapters merged.

fp32 on CPU, bf16 on a GPU, 4-bit NF4 (QLoRA) only when asked AND bitsandbytes and a GPU exist.
"""

from __future__ import annotations

import importlib.util
import logging
from importlib.resources import files
from typing import Any

from twin_ops.llm.resolve import ModelSource

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def project_chat_template() -> str:
    """The chat template given to a model that has none (a base, not instruct, model): ChatML."""
    return files("twin_ops.llm").joinpath("chat_template.jinja").read_text()


def load_tokenizer(path: str):
    """The tokenizer, with a pad token (its EOS when it has none) and a chat template (the
    project's when it has none), so every stage renders chats the same way."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = project_chat_template()
    return tokenizer


def can_quantize_4bit(device: str) -> bool:
    return device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def load_model(path: str, device: str, *, load_in_4bit: bool = False):
    """The causal LM at ``path`` with the dtype policy above (for training: not put in eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device == "cuda" else torch.float32}
    quantized = load_in_4bit and can_quantize_4bit(device)
    if load_in_4bit and not quantized:
        log.warning("model: 4-bit requested but bitsandbytes or a GPU is missing; loading unquantised")
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model


def load(source: ModelSource, device: str, defaults=None):
    """A ``LoadedModel`` for inference: eval mode, on ``device``, any adapter merged once (so
    inference pays nothing for it)."""
    from twin_ops.llm.model import GenerationDefaults, LoadedModel

    tokenizer = load_tokenizer(source.path)
    model = load_model(source.path, device)
    if source.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter).merge_and_unload()
    if device == "cuda":
        model.to("cuda")
    model.eval()
    return LoadedModel(source, tokenizer, model, defaults or GenerationDefaults())
