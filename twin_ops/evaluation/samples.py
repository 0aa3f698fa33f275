"""The held-out samples every contender is scored on, and the author's training text (the style reference)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin_ops.config import Paths
from twin_ops.errors import TwinOpsError


class NoHeldOutSamples(TwinOpsError, ValueError):
    """The author's instruction dataset has no (or an empty) test split."""


@dataclass(frozen=True)
class Sample:
    id: str
    instruction: str
    answer: str  # the author's own text
    source_document_id: str


def _split_file(paths: Paths, author_id: str, split: str) -> Path:
    return paths.dataset("instruct_dataset", author_id) / f"{split}.parquet"


def held_out(paths: Paths, author_id: str, count: int = 0) -> list[Sample]:
    """Every test sample (every passage of the held-out documents), or with ``count`` > 0 the first
    ``count`` by id: the same samples on every run and for every model."""
    import pandas as pd

    file = _split_file(paths, author_id, "test")
    if not file.exists():
        raise NoHeldOutSamples(f"no held-out split at {file} (run `twin-ops datasets --author {author_id}`)")
    frame = pd.read_parquet(file).sort_values("id")
    if frame.empty:
        raise NoHeldOutSamples(f"{file} is empty: nothing to evaluate on")
    return [
        Sample(row.id, row.instruction, row.answer, row.source_document_id)
        for row in (frame.head(count) if count > 0 else frame).itertuples(index=False)
    ]


def training_text(paths: Paths, author_id: str) -> list[str]:
    """The author's answers in the train split: what the twin should sound like."""
    import pandas as pd

    file = _split_file(paths, author_id, "train")
    if not file.exists():
        raise NoHeldOutSamples(f"no train split at {file} (run `twin-ops datasets --author {author_id}`)")
    return [str(answer) for answer in pd.read_parquet(file)["answer"]]
