"""Datasets as stored, loaded into DataFrames for validation — deliberately NOT through pydantic.

Quality checks the data as it sits on disk, independent of the code that wrote it: a record the
domain models would reject (empty content, a wrong hash) must reach the suite and fail there, with
the expectation named, instead of crashing the loader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from twin_ops.config import Paths
from twin_ops.errors import TwinOpsError

if TYPE_CHECKING:
    from twin_ops.quality.scrub import Scrubber

# Datasets checked for secrets and personal data left after the scrub ("no secrets"): the cleaned
# documents are what the index and the datasets are built from.
SCRUBBED_DATASETS = frozenset({"cleaned_documents"})


class DatasetNotFound(TwinOpsError, FileNotFoundError):
    """The dataset has no files where the pipeline writes it."""


def dataset_location(paths: Paths, dataset: str, author_id: str) -> Path:
    """Where each stage publishes its dataset for one author (spelled once, in Paths.dataset)."""
    return paths.dataset(dataset, author_id)


def staged_location(paths: Paths, dataset: str, author_id: str) -> Path:
    """Where a batch waits for validation before it is published (raw documents: the crawl store)."""
    if dataset != "raw_documents":
        raise ValueError(f"{dataset} has no staged batch: its stage validates before it publishes")
    return paths.crawl_store(author_id)


def _jsonl_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    from twin_ops.collect.store import platform_files

    # Only the documents: quarantine.jsonl and skipped.jsonl are reported, not validated.
    return platform_files(location)


def read_jsonl_frame(location: Path) -> pd.DataFrame:
    files = _jsonl_files(location)
    if not files:
        raise DatasetNotFound(f"no JSONL files at {location}")
    frames = [pd.read_json(path, lines=True, dtype=False) for path in files if path.stat().st_size > 0]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_parquet_frame(location: Path) -> pd.DataFrame:
    """Every Parquet file under the folder; the split comes from a column or the file's stem."""
    files = sorted(location.rglob("*.parquet"))
    if not files:
        raise DatasetNotFound(f"no Parquet files under {location}")
    frames = []
    for path in files:
        frame = pd.read_parquet(path)
        if "split" not in frame.columns:
            frame["split"] = path.stem.split("-")[0]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _sha256(text: object) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) else None


def with_derived_columns(dataset: str, frame: pd.DataFrame, scrubber: Scrubber | None = None) -> pd.DataFrame:
    """Columns the suites check that no single stored column holds.

    ``scrubber`` (needed for SCRUBBED_DATASETS) fills ``secrets_found``: the kinds of secret or
    personal data still in a row's text or title, "" when none. Without it the column is missing
    and "no secrets" fails rather than passing unchecked.
    """
    frame = frame.copy()
    if scrubber is not None and dataset in SCRUBBED_DATASETS and {"text", "title", "source_url"} <= set(frame.columns):
        frame["secrets_found"] = [
            scrubber.kinds_in(text, title, url)
            for text, title, url in zip(frame["text"], frame["title"], frame["source_url"], strict=True)
        ]
    if dataset == "raw_documents" and {"content", "content_hash"} <= set(frame.columns):
        frame["content_hash_matches"] = frame["content"].map(_sha256) == frame["content_hash"]
    if "fetched_at" in frame.columns:
        frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True, errors="coerce", format="ISO8601")
    if {"source_document_id", "split"} <= set(frame.columns):
        # 1 everywhere when no source document feeds both train and test.
        frame["source_split_count"] = frame.groupby("source_document_id")["split"].transform("nunique")
    if "answer" in frame.columns:
        frame["answer_tokens"] = frame["answer"].map(lambda text: len(str(text).split()))
    if dataset == "feedback" and "correction" in frame.columns:
        frame["correction_tokens"] = frame["correction"].map(
            lambda text: float(len(text.split())) if isinstance(text, str) else float("nan")
        )
    if {"chosen", "rejected"} <= set(frame.columns):
        frame["chosen_equals_rejected"] = frame["chosen"].str.strip() == frame["rejected"].str.strip()
    return frame


def load_frame(
    paths: Paths, dataset: str, author_id: str, location: Path | None = None, scrubber: Scrubber | None = None
) -> pd.DataFrame:
    location = location or dataset_location(paths, dataset, author_id)
    if dataset in ("instruct_dataset", "preference_dataset"):
        frame = read_parquet_frame(location)
    else:
        frame = read_jsonl_frame(location)
    if dataset == "feedback" and frame.empty:  # no feedback yet: an empty table, its columns named
        from twin_ops.domain import FeedbackRecord

        frame = pd.DataFrame(columns=list(FeedbackRecord.model_fields))
    return with_derived_columns(dataset, frame, scrubber)
