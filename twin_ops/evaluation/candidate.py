"""Register a trained stage as the registry's ``candidate``.

Training rewrites models/<author>/<stage>/ on every run, so a registry version must not point
there: its artifacts (merged model, adapter, model card, training metrics) are snapshotted into
models/registry/<name>/<fingerprint>/ — hard links where the filesystem allows (training replaces
files, never edits them, so a link is as safe as a copy) — and the version records their
fingerprint, data hashes (dvc.lock lineage when recorded) and the parameters that made them.
Registering the same artifacts again returns the existing version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twin_ops.config import Params, Paths
from twin_ops.domain import ModelVersion
from twin_ops.errors import TwinOpsError
from twin_ops.registry.store import Registry

log = logging.getLogger(__name__)
SNAPSHOT = ("merged", "adapter", "README.md", "metrics.json")


class NoTrainedModel(TwinOpsError, FileNotFoundError):
    """The training stage left no merged model or adapter to register."""


def model_name(params: Params, author_id: str) -> str:
    return params.evaluation.model_name.format(author=author_id)


def author_of(params: Params, name: str) -> str | None:
    """The author whose twin ``name`` is (the inverse of model_name), or None."""
    prefix, _, suffix = params.evaluation.model_name.partition("{author}")
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
        return name[len(prefix) : len(name) - len(suffix)]
    return None


def fingerprint(folder: Path) -> str:
    """sha256 over the weights (names and contents) of the merged model and adapter."""
    digest = hashlib.sha256()
    for part in ("merged", "adapter"):
        for file in sorted((folder / part).glob("*.safetensors")):
            digest.update(f"{part}/{file.name}\0".encode())
            with file.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, target)


def snapshot(stage_dir: Path, target: Path) -> Path:
    """Copy the stage's artifacts to ``target`` once (content-addressed: an existing one is kept)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for name in SNAPSHOT:
            source = stage_dir / name
            if source.is_dir():
                shutil.copytree(source, staging / name, copy_function=_link_or_copy)
            elif source.is_file():
                _link_or_copy(str(source), str(staging / name))
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # a concurrent registration of the same artifacts got there first
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def lineage(params: Params, paths: Paths, author_id: str, stage: str, stage_dir: Path) -> dict[str, Any]:
    from twin_ops.datasets import formats
    from twin_ops.quality.frames import DatasetNotFound
    from twin_ops.training.artifacts import data_versions

    data: dict[str, Any] = {}
    for dataset_stage in ("sft", "dpo") if stage == "dpo" else ("sft",):
        try:
            files = formats.split_files(paths, dataset_stage, author_id)
        except DatasetNotFound:
            data[formats.STAGE_DATASET[dataset_stage]] = None  # trained elsewhere; the card says on what
            continue
        data[formats.STAGE_DATASET[dataset_stage]] = data_versions(paths, files, formats.content_hashes(files))
    used = {"training": params.training.model_dump(mode="json"), "datasets": params.datasets.model_dump(mode="json")}
    return {
        "author_id": author_id,
        "stage": stage,
        "trained_in": str(_relative(stage_dir, paths.root)),
        "data": data,
        "params": used,
        "params_sha256": hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest(),
    }


def register_candidate(
    author_id: str,
    params: Params,
    paths: Paths,
    *,
    stage: str | None = None,
    registry: Registry | None = None,
) -> ModelVersion:
    """Snapshot the trained stage (``evaluation.candidate_stage`` unless given) and make it the candidate."""
    stage = stage or params.evaluation.candidate_stage
    registry = registry or Registry(paths.models)
    source = paths.training_output(author_id, stage)
    if not (source / "merged" / "config.json").exists() and not (source / "adapter").is_dir():
        raise NoTrainedModel(f"{source} holds no merged model or adapter: run `twin-ops train --stage {stage}` first")
    name = model_name(params, author_id)
    digest = fingerprint(source)
    stored = snapshot(source, registry.snapshot_dir(name, digest[:16]))
    metrics_file = stored / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    version = registry.register(
        name,
        params.training.base_model,
        adapter_path=_relative(stored / "adapter", paths.root) if (stored / "adapter").is_dir() else None,
        merged_path=_relative(stored / "merged", paths.root) if (stored / "merged").is_dir() else None,
        metrics={_train_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        lineage=lineage(params, paths, author_id, stage, source),
        fingerprint=digest,
    )
    log.info("registry: %s:v%d is the candidate (%s of %s, %s)", name, version.version, stage, author_id, digest[:12])
    return version


def _train_key(key: str) -> str:
    """Training metrics under one prefix in the registry (eval_* stay: trainer eval on the test split)."""
    return key if key.startswith(("train_", "eval_")) else f"train_{key}"
