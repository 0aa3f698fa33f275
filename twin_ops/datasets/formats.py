"""The stored datasets in the conversational formats trl trains on.

SFT: prompt-completion (``prompt`` = the user's instruction, ``completion`` = the author's passage as
the assistant's turn). trl renders both with the model's chat template and, for this format, puts
the loss on the completion only — the twin learns to write the answer, not to repeat the question.
DPO: ``prompt`` / ``chosen`` (the author) / ``rejected`` (the base model), same template.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from twin_ops.config import Paths
from twin_ops.domain import Split
from twin_ops.quality import frames

STAGE_DATASET = {"sft": "instruct_dataset", "dpo": "preference_dataset"}


def split_files(paths: Paths, stage: str, author_id: str) -> dict[str, Path]:
    folder = frames.dataset_location(paths, STAGE_DATASET[stage], author_id)
    files = {split.value: folder / f"{split.value}.parquet" for split in Split}
    if not files["train"].exists():
        raise frames.DatasetNotFound(f"no {STAGE_DATASET[stage]} at {folder} (run `twin-ops datasets` first)")
    return files


def content_hashes(files: dict[str, Path]) -> dict[str, str]:
    """sha256 of each split file: the data version when no dvc.lock records one."""
    return {split: hashlib.sha256(path.read_bytes()).hexdigest() for split, path in files.items() if path.exists()}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def load_stage_data(files: dict[str, Path], stage: str):
    """A DatasetDict with "train" and (when not empty) "test", in the stage's trl format."""
    import pandas as pd
    from datasets import Dataset, DatasetDict

    splits = {}
    for split, path in files.items():
        frame = pd.read_parquet(path) if path.exists() else pd.DataFrame()
        if frame.empty:
            continue
        if stage == "sft":
            rows = {
                "prompt": [_user(text) for text in frame["instruction"]],
                "completion": [_assistant(text) for text in frame["answer"]],
            }
        else:
            rows = {
                "prompt": [_user(text) for text in frame["prompt"]],
                "chosen": [_assistant(text) for text in frame["chosen"]],
                "rejected": [_assistant(text) for text in frame["rejected"]],
            }
        splits[split] = Dataset.from_dict(rows)
    return DatasetDict(splits)
