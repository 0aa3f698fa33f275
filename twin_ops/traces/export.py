"""Feedback for the pipeline: the trace store's ratings and corrections → data/feedback/<author>/.

``feedback.jsonl`` (FeedbackRecord, one per rated answer) is what the datasets step reads, so it
is DVC-tracked like every dataset (dvc.yaml's ``feedback`` stage runs ``twin-ops feedback
export``; twin_training's datasets task calls the same function). The store is bounded (old traces
are deleted), the file is not: an export keeps every record already exported and adds or updates
(the latest rating wins) what the store holds now. The merged file is validated by the
``feedback`` suite before it replaces the old one; a failure changes nothing.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from twin_ops.config import Params, Paths
from twin_ops.domain import FeedbackRecord, write_jsonl
from twin_ops.quality import frames
from twin_ops.quality.validate import ValidationFailed, publish_if_valid, report_path, validate_frame, write_report
from twin_ops.traces.store import Trace, TraceStore

log = logging.getLogger(__name__)
DATASET = "feedback"


@dataclass
class FeedbackExport:
    author_id: str
    path: Path
    records: int  # in the file now
    from_store: int  # rated traces in the store now
    corrections: int
    trusted_corrections: int
    seconds: float

    def line(self) -> str:
        return (
            f"feedback {self.author_id}: {self.records} records ({self.from_store} from the trace store), "
            f"{self.corrections} corrections ({self.trusted_corrections} trusted) -> {self.path}; {self.seconds:.1f}s"
        )


def feedback_record(trace: Trace) -> FeedbackRecord | None:
    """A rated trace as the pipeline reads it (None: not rated, or no answer to rate)."""
    if trace.feedback is None or trace.question is None or trace.answer is None or trace.author is None:
        return None
    return FeedbackRecord(
        id=trace.id,
        author_id=trace.author,
        model_id=trace.model or "",
        model_version=trace.model_version or "",
        prompt=trace.question,
        answer=trace.answer,
        rating=trace.feedback.rating,
        correction=trace.feedback.correction,
        trusted=trace.feedback.trusted,
        answered_at=trace.created_at,
        rated_at=trace.feedback.submitted_at,
    )


def _existing(path: Path) -> dict[str, dict]:
    """Records already exported, as stored (loose dicts: a bad one must reach the suite, not crash here)."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {str(row.get("id")): row for row in rows}


def export_feedback(author_id: str, params: Params, paths: Paths, store: TraceStore | None = None) -> FeedbackExport:
    """Merge the store's feedback for one author into data/feedback/<author>/feedback.jsonl,
    validated (ValidationFailed: the file is left as it was)."""
    started = time.perf_counter()
    store = store or TraceStore.from_params(params, paths)
    target = frames.dataset_location(paths, DATASET, author_id)
    merged = _existing(target)
    fresh = [record for trace in store.rated(author_id) if (record := feedback_record(trace)) is not None]
    for record in fresh:
        merged[record.id] = record.model_dump(mode="json")
    rows = sorted(merged.values(), key=lambda row: (str(row.get("answered_at")), str(row.get("id"))))
    columns = list(FeedbackRecord.model_fields)
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    report = validate_frame(DATASET, frames.with_derived_columns(DATASET, frame), author_id, params, paths)
    if not report.success:
        write_report(report, report_path(paths, DATASET, author_id, failed=True))
        raise ValidationFailed(report)
    records = [FeedbackRecord.model_validate(row) for row in rows]  # the suite passed: these are well-formed
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".feedback.build-") as staging:
        staged = Path(staging) / target.name
        write_jsonl(staged, records)
        publish_if_valid(staged, target, report)
    write_report(report, report_path(paths, DATASET, author_id))
    report_path(paths, DATASET, author_id, failed=True).unlink(missing_ok=True)
    corrections = [record for record in records if record.correction]
    result = FeedbackExport(
        author_id=author_id,
        path=target,
        records=len(records),
        from_store=len(fresh),
        corrections=len(corrections),
        trusted_corrections=sum(record.trusted for record in corrections),
        seconds=time.perf_counter() - started,
    )
    log.info(result.line())
    return result
