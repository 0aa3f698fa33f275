"""The Great Expectations suites, one per dataset, as code.

Each expectation carries a short human name in ``meta["name"]`` so a failure reads as "ids unique"
rather than an expectation class. Thresholds come from params.yaml (``quality``), never from here.
Some checks need a value GX cannot compute from one column (a hash that matches its text, a
train/test split per source document); ``frames.py`` derives those columns and the suite checks
them like any other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import great_expectations as gx
from great_expectations.expectations import Expectation

from twin_ops.config import QualityParams
from twin_ops.domain import DocumentKind, Platform, Split

E = gx.expectations
SHA256 = r"^[0-9a-f]{64}$"
URL = r"^(?:https?|file|ssh|git)://[^\s]+$"
PLATFORMS = [platform.value for platform in Platform]
KINDS = [kind.value for kind in DocumentKind]
SPLITS = [split.value for split in Split]


def _named(name: str, expectation: Expectation) -> Expectation:
    expectation.meta = {"name": name}
    return expectation


def _not_null(*columns: str) -> list[Expectation]:
    return [_named(f"{column} present", E.ExpectColumnValuesToNotBeNull(column=column)) for column in columns]


def raw_documents(q: QualityParams, author_id: str) -> list[Expectation]:
    p = q.raw_documents
    latest_allowed = datetime.now(UTC) + timedelta(minutes=p.max_clock_skew_minutes)
    return [
        _named("has documents", E.ExpectTableRowCountToBeBetween(min_value=p.min_documents)),
        *_not_null("id", "author_id", "kind", "platform", "source_url", "content", "fetched_at", "content_hash"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named(
            "one record per URL and content",
            E.ExpectCompoundColumnsToBeUnique(column_list=["source_url", "content_hash"]),
        ),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named("known platform", E.ExpectColumnValuesToBeInSet(column="platform", value_set=PLATFORMS)),
        _named("known kind", E.ExpectColumnValuesToBeInSet(column="kind", value_set=KINDS)),
        _named("URL well-formed", E.ExpectColumnValuesToMatchRegex(column="source_url", regex=URL)),
        _named(
            "content length within bounds",
            E.ExpectColumnValueLengthsToBeBetween(
                column="content", min_value=p.min_content_chars, max_value=p.max_content_chars
            ),
        ),
        _named(
            "near-empty documents under threshold",
            E.ExpectColumnValueLengthsToBeBetween(
                column="content", min_value=p.near_empty_chars, mostly=1 - p.max_near_empty_share
            ),
        ),
        _named("hash is sha256", E.ExpectColumnValuesToMatchRegex(column="content_hash", regex=SHA256)),
        _named(
            "hash matches content",
            E.ExpectColumnValuesToBeInSet(column="content_hash_matches", value_set=[True]),
        ),
        _named(
            "fetched-at not in the future",
            E.ExpectColumnMaxToBeBetween(column="fetched_at", max_value=latest_allowed),
        ),
    ]


def cleaned_documents(q: QualityParams, author_id: str) -> list[Expectation]:
    p = q.cleaned_documents
    return [
        _named("has documents", E.ExpectTableRowCountToBeBetween(min_value=p.min_documents)),
        *_not_null("id", "author_id", "kind", "platform", "source_url", "text", "raw_content_hash"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named("known platform", E.ExpectColumnValuesToBeInSet(column="platform", value_set=PLATFORMS)),
        _named(
            "text length within bounds",
            E.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=p.min_text_chars, max_value=p.max_text_chars
            ),
        ),
        _named("no duplicate texts", E.ExpectColumnValuesToBeUnique(column="text")),
        _named("raw hash is sha256", E.ExpectColumnValuesToMatchRegex(column="raw_content_hash", regex=SHA256)),
        # secrets_found: the kinds (never the values) the scrubber still finds (frames.py).
        _named("no secrets", E.ExpectColumnValuesToBeInSet(column="secrets_found", value_set=[""])),
    ]


def chunks(q: QualityParams, author_id: str) -> list[Expectation]:
    p = q.chunks
    return [
        _named("has chunks", E.ExpectTableRowCountToBeBetween(min_value=p.min_chunks)),
        *_not_null("id", "document_id", "author_id", "text", "token_count", "position"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named(
            "one chunk per document position",
            E.ExpectCompoundColumnsToBeUnique(column_list=["document_id", "position"]),
        ),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named(
            "token count within bounds",
            E.ExpectColumnValuesToBeBetween(column="token_count", min_value=p.min_tokens, max_value=p.max_tokens),
        ),
        _named("position not negative", E.ExpectColumnValuesToBeBetween(column="position", min_value=0)),
        _named(
            "duplicate chunk texts rare",
            E.ExpectColumnProportionOfUniqueValuesToBeBetween(column="text", min_value=p.min_unique_text_share),
        ),
    ]


def _split_expectations() -> list[Expectation]:
    return [
        _named("known split", E.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS)),
        _named(
            "train/test disjoint by source document",
            E.ExpectColumnValuesToBeBetween(column="source_split_count", max_value=1),
        ),
    ]


def instruct_dataset(q: QualityParams, author_id: str) -> list[Expectation]:
    p = q.instruct_dataset
    return [
        _named("has samples", E.ExpectTableRowCountToBeBetween(min_value=p.min_samples)),
        *_not_null("id", "author_id", "instruction", "answer", "source_document_id", "split"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named(
            "instruction not empty",
            E.ExpectColumnValueLengthsToBeBetween(
                column="instruction", min_value=p.min_instruction_chars, max_value=p.max_instruction_chars
            ),
        ),
        _named(
            "answer not empty",
            E.ExpectColumnValueLengthsToBeBetween(
                column="answer", min_value=p.min_answer_chars, max_value=p.max_answer_chars
            ),
        ),
        _named(
            "answer token length within bounds",
            E.ExpectColumnValuesToBeBetween(
                column="answer_tokens", min_value=p.min_answer_tokens, max_value=p.max_answer_tokens
            ),
        ),
        _named("no duplicate samples", E.ExpectCompoundColumnsToBeUnique(column_list=["instruction", "answer"])),
        *_split_expectations(),
    ]


def preference_dataset(q: QualityParams, author_id: str) -> list[Expectation]:
    p = q.preference_dataset
    return [
        _named("has samples", E.ExpectTableRowCountToBeBetween(min_value=p.min_samples)),
        *_not_null("id", "author_id", "prompt", "chosen", "rejected", "source_document_id", "split"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named(
            "prompt not empty",
            E.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=p.min_prompt_chars),
        ),
        _named(
            "chosen long enough",
            E.ExpectColumnValueLengthsToBeBetween(column="chosen", min_value=p.min_chosen_chars),
        ),
        _named(
            "rejected not empty",
            E.ExpectColumnValueLengthsToBeBetween(column="rejected", min_value=p.min_rejected_chars),
        ),
        _named(
            "chosen != rejected",
            E.ExpectColumnValuesToBeInSet(column="chosen_equals_rejected", value_set=[False]),
        ),
        _named("no duplicate samples", E.ExpectCompoundColumnsToBeUnique(column_list=["prompt", "chosen"])),
        *_split_expectations(),
    ]


RATINGS = ["up", "down"]
TRACE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"  # what the API gives an answer (serving/api.py)


def feedback(q: QualityParams, author_id: str) -> list[Expectation]:
    """Ratings and corrections exported from the trace store. "Ids exist": every record names a
    well-formed, unique trace id and carries that trace's question, answer and model version (the
    export writes only records joined with their trace)."""
    p = q.feedback
    return [
        _named("has records", E.ExpectTableRowCountToBeBetween(min_value=p.min_records)),
        *_not_null("id", "author_id", "model_id", "model_version", "prompt", "answer", "rating", "trusted"),
        _named("ids unique", E.ExpectColumnValuesToBeUnique(column="id")),
        _named("ids well-formed", E.ExpectColumnValuesToMatchRegex(column="id", regex=TRACE_ID)),
        _named("question not empty", E.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=1)),
        _named("author matches config", E.ExpectColumnValuesToBeInSet(column="author_id", value_set=[author_id])),
        _named("rating up or down", E.ExpectColumnValuesToBeInSet(column="rating", value_set=RATINGS)),
        _named("trusted is a boolean", E.ExpectColumnValuesToBeInSet(column="trusted", value_set=[True, False])),
        # correction_tokens: whitespace tokens of the correction, missing when there is none (frames.py);
        # a blank correction has 0 and fails.
        _named(
            "correction non-empty and within token bounds",
            E.ExpectColumnValuesToBeBetween(
                column="correction_tokens", min_value=p.min_correction_tokens, max_value=p.max_correction_tokens
            ),
        ),
    ]


SUITES = {
    "raw_documents": raw_documents,
    "cleaned_documents": cleaned_documents,
    "chunks": chunks,
    "instruct_dataset": instruct_dataset,
    "preference_dataset": preference_dataset,
    "feedback": feedback,
}


def expectations_for(dataset: str, q: QualityParams, author_id: str) -> list[Expectation]:
    return SUITES[dataset](q, author_id)
