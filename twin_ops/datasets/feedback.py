"""Feedback into training: trusted corrections of the twin's answers become DPO preference pairs.

With ``datasets.use_feedback: true`` the datasets step reads data/feedback/<author>/feedback.jsonl
(written by ``twin-ops feedback export``), runs its GX suite first — a failure stops the step
before anything is built or written — and turns each trusted correction into a pair:
prompt = the question, chosen = the correction, rejected = the twin's answer. Pairs go to the train
split (the held-out split stays the author's own writing, so the gate's evaluation is unchanged).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

from twin_ops.config import Params, Paths
from twin_ops.domain import FeedbackRecord, PreferenceSample, Split, read_jsonl
from twin_ops.quality.validate import ValidationFailed, validate_dataset

log = logging.getLogger(__name__)
DATASET = "feedback"
SOURCE_PREFIX = "feedback:"  # source_document_id of a pair made from feedback: "feedback:<trace id>"


def load_feedback(author_id: str, params: Params, paths: Paths) -> list[FeedbackRecord]:
    """The author's exported feedback, validated by its suite (ValidationFailed otherwise)."""
    location = paths.dataset(DATASET, author_id)
    if not location.exists():
        log.info("datasets %s: no feedback at %s (run `twin-ops feedback export`)", author_id, location)
        return []
    report = validate_dataset(DATASET, author_id, params, paths)
    if not report.success:
        raise ValidationFailed(report)
    return read_jsonl(location, FeedbackRecord)


def preference_pairs(
    records: list[FeedbackRecord], author_id: str, min_chosen_chars: int
) -> tuple[list[PreferenceSample], Counter[str]]:
    """One pair per trusted correction that can teach something; the others counted by reason."""
    pairs: dict[tuple[str, str], PreferenceSample] = {}
    skipped: Counter[str] = Counter()
    for record in sorted(records, key=lambda r: (r.rated_at, r.id)):
        correction = (record.correction or "").strip()
        if not correction:
            skipped["rating only"] += 1
        elif not record.trusted:
            skipped["untrusted"] += 1
        elif not record.answer.strip() or correction == record.answer.strip():
            skipped["nothing to prefer"] += 1  # DPO learns nothing when the sides agree (or one is empty)
        elif len(correction) < min_chosen_chars:
            skipped["correction too short"] += 1  # the preference suite's "chosen long enough"
        else:
            key = (record.prompt, correction)
            if key in pairs:
                skipped["duplicate"] += 1  # the same question corrected the same way: the latest stays
            pairs[key] = PreferenceSample(
                id=hashlib.sha256(f"{SOURCE_PREFIX}{record.id}".encode()).hexdigest()[:32],
                author_id=author_id,
                prompt=record.prompt,
                chosen=correction,
                rejected=record.answer,
                source_document_id=f"{SOURCE_PREFIX}{record.id}",
                split=Split.TRAIN,
            )
    return list(pairs.values()), skipped
