"""What a training stage leaves in models/<author>/<stage>/ besides its checkpoints.

adapter/        the LoRA adapter (PEFT, safetensors) + tokenizer + model card
merged/         base + adapter merged into one model (safetensors) + tokenizer + model card
metrics.json    DVC metrics: losses, eval metrics, steps, tokens/s
plots/loss.csv  DVC plots: step,loss (`dvc plots show models/<author>/<stage>/plots/loss.csv`)
plots/loss.png  the same curve as an image
README.md       the model card (base model, data versions, params, metrics)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from twin_ops.config import Params, Paths


def loss_history(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]


def loss_summary(history: list[tuple[int, float]]) -> dict[str, float]:
    """Start and end of the training loss, each a mean over a fifth of the logged steps.

    Single steps are noisy (batches differ in length and content); the means are what
    "the loss went down" should be judged on. The first and last raw values are kept too.
    """
    if not history:
        return {}
    losses = [loss for _, loss in history]
    window = max(1, len(losses) // 5)
    return {
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "train_loss_start": sum(losses[:window]) / window,
        "train_loss_end": sum(losses[-window:]) / window,
    }


def write_plots(folder: Path, history: list[tuple[int, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in containers and Airflow workers
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "loss.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["step", "loss"])
        writer.writerows(history)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot([step for step, _ in history], [loss for _, loss in history], marker=".")
    axes.set(xlabel="step", ylabel="training loss", title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(folder / "loss.png", dpi=100)
    plt.close(figure)


def data_versions(paths: Paths, files: dict[str, Path], hashes: dict[str, str]) -> dict[str, Any]:
    """Content hashes of the split files, plus the dvc.lock lineage of their folder when recorded."""
    from twin_ops.quality.lineage import LineageError, lineage_of

    folder = next(iter(files.values())).parent
    versions: dict[str, Any] = {
        "path": str(folder.relative_to(paths.root)) if folder.is_relative_to(paths.root) else str(folder),
        "sha256": hashes,
    }
    if paths.dvc_lock.exists():
        try:
            versions["dvc"] = lineage_of(versions["path"], paths)
        except LineageError:
            versions["dvc"] = None  # not (yet) a DVC output: the content hashes identify it
    manifest = folder / "feedback.json"  # datasets.build.FEEDBACK_MANIFEST: pairs made from feedback
    if manifest.exists():
        versions["feedback"] = json.loads(manifest.read_text())
    return versions


def model_card(
    *,
    author_id: str,
    stage: str,
    base_model: str,
    base_path: str,
    params: Params,
    data: dict[str, Any],
    metrics: dict[str, float],
) -> str:
    """The stage's model card (Hugging Face format: YAML metadata + Markdown), as text for README.md."""
    from huggingface_hub import ModelCard, ModelCardData

    front = ModelCardData(
        base_model=base_model,
        library_name="peft",
        pipeline_tag="text-generation",
        tags=["twin-ops", "lora", stage, "trl"],
        language=["en"],
    )
    order = ["base_model", "library_name", "pipeline_tag", "tags", "language"]
    rows = "\n".join(f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items()))
    described = {"sft": "supervised fine-tuning (LoRA)", "dpo": "DPO, continuing the SFT adapter (LoRA)"}[stage]
    return str(
        ModelCard(f"""---
{front.to_yaml(original_order=order)}
---

# twin-ops · {author_id} · {stage}

An LLM twin of `{author_id}`: {described} of `{base_model}` (loaded from `{base_path}`) on the
author's own passages, trained by `twin-ops train --stage {stage} --author {author_id}`.
`adapter/` holds the LoRA adapter, `merged/` the base model with the adapter merged in.

## Training data

```yaml
{yaml.safe_dump(data, sort_keys=False).strip()}
```

## Parameters (params.yaml `training`)

```yaml
{yaml.safe_dump(params.training.model_dump(mode="json"), sort_keys=False).strip()}
```

## Metrics

| metric | value |
|---|---|
{rows}
""")
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully written folder into place (the old one is removed only after the swap)."""
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        os.replace(target, retired)
    os.replace(staged, target)
    shutil.rmtree(retired, ignore_errors=True)


def save_merged(base_path: str, adapter_dir: Path, target: Path, tokenizer, device: str) -> None:
    """Merge the adapter into a freshly loaded, unquantised base (correct even after QLoRA)."""
    from peft import PeftModel

    from twin_ops.llm import load_model

    base = load_model(base_path, device)  # the one dtype policy; never 4-bit here
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    staged = target.with_name(f".{target.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    merged.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    replace_dir(staged, target)
