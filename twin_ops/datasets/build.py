"""The dataset stage for one author: cleaned documents → instruction and preference datasets.

passages → instructions (local back-translation, or the teacher; template fallback) → split by
source document → dedupe → rejected answers from the base model → filter (+ preference pairs from
trusted feedback with ``datasets.use_feedback``: datasets/feedback.py) → GX suites → Parquet.
Both datasets are validated before either is written; a failed suite writes its report, raises
``ValidationFailed`` and leaves data/datasets/<author> as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from twin_ops.config import Params, Paths, Settings
from twin_ops.datasets.instructions import (
    InstructionSource,
    back_translation_messages,
    rejection_reason,
    template_instruction,
    tidy,
)
from twin_ops.datasets.passages import Passage, split_passages
from twin_ops.domain import (
    CleanedDocument,
    DocumentKind,
    FeedbackRecord,
    InstructSample,
    PreferenceSample,
    Split,
    read_jsonl,
    sha256_text,
)
from twin_ops.quality import frames
from twin_ops.quality.validate import (
    ValidationFailed,
    ValidationReport,
    publish_if_valid,
    report_path,
    validate_frame,
    write_report,
)

log = logging.getLogger(__name__)
# Called as (step, done, total): "instructions", "answers".
Progress = Callable[[str, int, int], None]
INSTRUCT_COLUMNS = [name for name in InstructSample.model_fields]
PREFERENCE_COLUMNS = [name for name in PreferenceSample.model_fields]
# Beside the preference Parquet files when feedback was used: which feedback made which pairs (the
# model card's lineage reads it).
FEEDBACK_MANIFEST = "feedback.json"


@dataclass
class DatasetSummary:
    author_id: str
    documents: int = 0
    passages: int = 0
    duplicates_dropped: int = 0
    instructions: dict[str, int] = field(default_factory=dict)  # by InstructionSource
    rejections: dict[str, int] = field(default_factory=dict)  # why model instructions failed
    instruct: dict[str, int] = field(default_factory=dict)  # rows by split
    preference: dict[str, int] = field(default_factory=dict)
    preference_dropped: int = 0
    feedback_records: int | None = None  # None: datasets.use_feedback is off
    feedback_pairs: int = 0
    feedback_skipped: dict[str, int] = field(default_factory=dict)  # corrections not used, by reason
    seconds: float = 0.0

    def line(self) -> str:
        sources = ", ".join(f"{n} {name}" for name, n in sorted(self.instructions.items()))
        return (
            f"datasets {self.author_id}: {self.documents} documents, {self.passages} passages "
            f"({self.duplicates_dropped} duplicates dropped); instructions: {sources}; "
            f"instruct train/test {self.instruct.get('train', 0)}/{self.instruct.get('test', 0)}; "
            f"preference train/test {self.preference.get('train', 0)}/{self.preference.get('test', 0)} "
            f"({self.preference_dropped} filtered){self._feedback()}; {self.seconds:.1f}s"
        )

    def _feedback(self) -> str:
        if self.feedback_records is None:
            return ""
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.feedback_skipped.items()))
        return f"; feedback: {self.feedback_records} records, {self.feedback_pairs} preference pairs" + (
            f" ({skipped} skipped)" if skipped else ""
        )


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def assign_splits(document_ids: list[str], test_size: float, seed: int) -> dict[str, Split]:
    """Whole documents go to train or test (no passage of a test document is ever trained on).

    Seeded shuffle of the sorted ids, so the split depends only on the set of documents and the
    seed; at least one document stays in train, and one goes to test when there are two or more.
    """
    ids = sorted(set(document_ids))
    random.Random(seed).shuffle(ids)
    n_test = min(max(1, round(test_size * len(ids))), len(ids) - 1) if len(ids) > 1 else 0
    return {doc: Split.TEST if i < n_test else Split.TRAIN for i, doc in enumerate(ids)}


def dedupe_passages(passages: list[Passage]) -> list[Passage]:
    """First occurrence of each passage text (case and spacing ignored), e.g. a cross-post."""
    seen: set[str] = set()
    unique = []
    for passage in passages:
        key = " ".join(passage.text.lower().split())
        if key not in seen:
            seen.add(key)
            unique.append(passage)
    return unique


class LocalModel:
    """The base model, loaded once for both instructions and rejected answers (twin_ops.llm)."""

    def __init__(self, params: Params, paths: Paths) -> None:
        from twin_ops.llm import GenerationDefaults, load, pick_device
        from twin_ops.llm.resolve import base_source

        source = base_source(params.training.base_model, paths.cache)
        self.model = load(source, pick_device(params.training.device), GenerationDefaults.from_params(params.llm))
        self.batch_size = params.datasets.generation_batch_size

    def chat(self, conversations, max_new_tokens: int, on_batch: Callable[[int], None] | None = None) -> list[str]:
        turns = [[(message["role"], message["content"]) for message in conversation] for conversation in conversations]
        return self.model.chat(turns, max_new_tokens=max_new_tokens, batch_size=self.batch_size, on_batch=on_batch)


def write_instructions(
    passages: list[Passage],
    params: Params,
    paths: Paths,
    settings: Settings,
    model: LocalModel | None,
    summary: DatasetSummary,
    progress: Progress,
) -> list[str]:
    p = params.datasets
    done = 0
    candidates: list[str | None] = [None] * len(passages)
    source = InstructionSource.MODEL
    if p.instruction_source == "local" and model is not None:

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress("instructions", done, len(passages))

        messages = [back_translation_messages(passage) for passage in passages]
        candidates = [tidy(text) for text in model.chat(messages, p.instruction_max_new_tokens, advance)]
    elif p.instruction_source == "teacher":
        from twin_ops.datasets.teacher import Teacher

        source = InstructionSource.TEACHER
        teacher = Teacher(
            p.teacher, settings.teacher_base_url, settings.teacher_api_key, paths.state / "datasets" / "teacher-cache"
        )
        for i, passage in enumerate(passages):
            reply = teacher.instruction_for(passage)
            candidates[i] = tidy(reply) if reply is not None else None
            progress("instructions", i + 1, len(passages))
        log.info("teacher: %d requests, %d cache hits", teacher.requests, teacher.cache_hits)
    instructions: list[str] = []
    for passage, candidate in zip(passages, candidates, strict=True):
        reason = "template only" if candidate is None else rejection_reason(candidate, passage.text, p)
        used = source if reason is None else InstructionSource.TEMPLATE
        instructions.append(candidate if reason is None else template_instruction(passage, p))
        summary.instructions[used] = summary.instructions.get(used, 0) + 1
        if reason is not None:
            summary.rejections[reason] = summary.rejections.get(reason, 0) + 1
    progress("instructions", len(passages), len(passages))
    return instructions


def _validate(dataset: str, frame: pd.DataFrame, author_id: str, params: Params, paths: Paths) -> ValidationReport:
    report = validate_frame(dataset, frames.with_derived_columns(dataset, frame), author_id, params, paths)
    if not report.success:
        write_report(report, report_path(paths, dataset, author_id))
        raise ValidationFailed(report)
    return report


def _write_parquet(frame: pd.DataFrame, columns: list[str], folder: Path) -> None:
    """One HF `datasets` Parquet file per split (train.parquet, test.parquet), all columns strings."""
    from datasets import Dataset, Features, Value

    features = Features({name: Value("string") for name in columns})
    folder.mkdir(parents=True, exist_ok=True)
    for split in Split:
        rows = frame[frame["split"] == split.value][columns]
        Dataset.from_pandas(rows.reset_index(drop=True), features=features, preserve_index=False).to_parquet(
            str(folder / f"{split.value}.parquet")
        )


def build_datasets(
    documents: list[CleanedDocument],
    author_id: str,
    params: Params,
    paths: Paths,
    settings: Settings | None = None,
    *,
    model: LocalModel | None = None,
    progress: Progress | None = None,
    feedback: list[FeedbackRecord] | None = None,
) -> DatasetSummary:
    """Build, validate and publish both datasets for one author's cleaned documents; ``feedback``
    (validated records, with ``datasets.use_feedback``) adds its trusted corrections as pairs."""
    started = time.perf_counter()
    settings = settings or Settings()
    progress = progress or (lambda step, done, total: None)
    p = params.datasets
    summary = DatasetSummary(author_id=author_id)
    kinds = {DocumentKind(kind) for kind in p.kinds}
    documents = [doc for doc in documents if doc.kind in kinds and doc.author_id == author_id]
    summary.documents = len(documents)
    passages = [
        passage
        for doc in sorted(documents, key=lambda d: d.id)
        for passage in split_passages(doc, p.passage_min_chars, p.passage_max_chars)
    ]
    unique = dedupe_passages(passages)
    duplicates = len(passages) - len(unique)
    splits = assign_splits([passage.document_id for passage in unique], p.test_size, p.seed)
    # max_passages_per_document trims the training documents only (a quick run writes fewer
    # instructions); a held-out document keeps every passage, all of which the evaluation scores.
    cap = p.max_passages_per_document
    unique = [q for q in unique if cap <= 0 or q.position < cap or splits[q.document_id] == Split.TEST]
    summary.passages, summary.duplicates_dropped = len(unique), duplicates

    # Loaded even with a teacher: the rejected side of every preference pair is the base model's.
    model = model or (LocalModel(params, paths) if unique else None)
    instructions = write_instructions(unique, params, paths, settings, model, summary, progress)
    instruct = [
        InstructSample(
            id=_hash(passage.document_id, str(passage.position), passage.text)[:32],
            author_id=author_id,
            instruction=instruction,
            answer=passage.text,
            source_document_id=passage.document_id,
            split=splits[passage.document_id],
        )
        for passage, instruction in zip(unique, instructions, strict=True)
    ]
    instruct_frame = pd.DataFrame([sample.model_dump(mode="json") for sample in instruct], columns=INSTRUCT_COLUMNS)
    instruct_frame = instruct_frame.drop_duplicates(subset=["instruction", "answer"])
    instruct_report = _validate("instruct_dataset", instruct_frame, author_id, params, paths)

    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress("answers", done, len(instruct))

    conversations = [[{"role": "user", "content": sample.instruction}] for sample in instruct]
    rejected = model.chat(conversations, p.answer_max_new_tokens, advance) if model and instruct else []
    preference = [
        PreferenceSample(
            id=sample.id,
            author_id=author_id,
            prompt=sample.instruction,
            chosen=sample.answer,
            rejected=answer,
            source_document_id=sample.source_document_id,
            split=sample.split,
        )
        for sample, answer in zip(instruct, rejected, strict=True)
        # DPO learns nothing from a pair whose sides agree, or from a too-short "chosen".
        if answer.strip() and answer.strip() != sample.answer.strip() and len(sample.answer) >= p.min_chosen_chars
    ]
    summary.preference_dropped = len(instruct) - len(preference)
    manifest = None
    if feedback is not None:
        from twin_ops.datasets.feedback import preference_pairs

        pairs, skipped = preference_pairs(feedback, author_id, params.quality.preference_dataset.min_chosen_chars)
        taken = {(sample.prompt, sample.chosen) for sample in preference}
        pairs = [pair for pair in pairs if (pair.prompt, pair.chosen) not in taken]
        preference += pairs
        summary.feedback_records, summary.feedback_pairs = len(feedback), len(pairs)
        summary.feedback_skipped = dict(skipped)
        manifest = _feedback_manifest(paths, author_id, pairs)
    preference_frame = pd.DataFrame([s.model_dump(mode="json") for s in preference], columns=PREFERENCE_COLUMNS)
    preference_report = _validate("preference_dataset", preference_frame, author_id, params, paths)

    # Only now, with both suites green, does anything under data/datasets/<author> change.
    for dataset, frame, columns, report in (
        ("instruct_dataset", instruct_frame, INSTRUCT_COLUMNS, instruct_report),
        ("preference_dataset", preference_frame, PREFERENCE_COLUMNS, preference_report),
    ):
        target = frames.dataset_location(paths, dataset, author_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.build-") as staging:
            Path(staging).chmod(0o755)  # mkdtemp's 0700 would be copied to the published folder
            _write_parquet(frame, columns, Path(staging))
            if dataset == "preference_dataset" and manifest is not None:
                (Path(staging) / FEEDBACK_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            publish_if_valid(Path(staging), target, report)
        write_report(report, report_path(paths, dataset, author_id))
    summary.instruct = instruct_frame["split"].value_counts().to_dict()
    summary.preference = preference_frame["split"].value_counts().to_dict()
    summary.seconds = time.perf_counter() - started
    log.info(summary.line())
    return summary


def _feedback_manifest(paths: Paths, author_id: str, pairs: list[PreferenceSample]) -> dict:
    source = paths.dataset("feedback", author_id)
    return {
        "pairs": len(pairs),
        "source": str(source.relative_to(paths.root)) if source.is_relative_to(paths.root) else str(source),
        "sha256": sha256_text(source.read_text(encoding="utf-8")) if source.exists() else None,
        "trace_ids": sorted(pair.source_document_id.split(":", 1)[1] for pair in pairs),
    }


def run_datasets(
    author_id: str,
    params: Params,
    paths: Paths,
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    model: LocalModel | None = None,
) -> DatasetSummary:
    """The stage as the CLI, DVC and Airflow run it: reads data/features/<author>/cleaned.jsonl (and,
    with ``datasets.use_feedback``, data/feedback/<author>/feedback.jsonl, validated first)."""
    location = frames.dataset_location(paths, "cleaned_documents", author_id)
    if not location.exists():
        raise frames.DatasetNotFound(f"no cleaned documents at {location} (run `twin-ops features` first)")
    feedback = None
    if params.datasets.use_feedback:
        from twin_ops.datasets.feedback import load_feedback

        feedback = load_feedback(author_id, params, paths)  # ValidationFailed: nothing is built
    documents = read_jsonl(location, CleanedDocument)
    return build_datasets(
        documents, author_id, params, paths, settings, model=model, progress=progress, feedback=feedback
    )
