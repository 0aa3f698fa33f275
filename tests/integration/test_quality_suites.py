"""Real GX validations: a good batch passes each suite; each injected defect fails it, named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from twin_ops.domain import sha256_text
from twin_ops.quality.frames import with_derived_columns
from twin_ops.quality.scrub import Scrubber
from twin_ops.quality.validate import validate_frame

AUTHOR = "wren-halvorsen"
TEXT = "Pump the bilge before you trust the hull. " * 12


def raw_batch(n: int = 5) -> pd.DataFrame:
    rows = []
    for i in range(n):
        content = f"Post {i}. {TEXT}"
        rows.append(
            dict(
                id=f"{AUTHOR}:{i}",
                author_id=AUTHOR,
                kind="article",
                platform="blog",
                source_url=f"http://127.0.0.1:8000/posts/{i}/",
                title=f"Post {i}",
                content=content,
                fetched_at=datetime(2026, 11, 1, tzinfo=UTC).isoformat(),
                content_hash=sha256_text(content),
                revision=1,
                metadata={},
            )
        )
    return pd.DataFrame(rows)


def instruct_batch() -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                id=f"s{i}",
                author_id=AUTHOR,
                instruction=f"Write about bilge pumps, part {i}.",
                answer=f"{i}: {TEXT}",
                source_document_id=f"doc{i}",
                split="train" if i < 4 else "test",
            )
            for i in range(6)
        ]
    )


def preference_batch() -> pd.DataFrame:
    frame = instruct_batch().rename(columns={"instruction": "prompt", "answer": "chosen"})
    frame["rejected"] = "A generic answer about pumps."
    return frame


def cleaned_batch() -> pd.DataFrame:
    raw = raw_batch()
    return pd.DataFrame(
        dict(
            id=raw.id,
            author_id=raw.author_id,
            kind=raw.kind,
            platform=raw.platform,
            source_url=raw.source_url,
            title=raw.title,
            text=raw.content,
            raw_content_hash=raw.content_hash,
        )
    )


def chunk_batch() -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                id=f"c{d}-{p}",
                document_id=f"d{d}",
                author_id=AUTHOR,
                kind="article",
                platform="blog",
                position=p,
                text=f"chunk {d}/{p} {TEXT[:80]}",
                token_count=40,
                source_url="http://127.0.0.1/x",
            )
            for d in range(3)
            for p in range(3)
        ]
    )


GOOD = {
    "raw_documents": raw_batch,
    "cleaned_documents": cleaned_batch,
    "chunks": chunk_batch,
    "instruct_dataset": instruct_batch,
    "preference_dataset": preference_batch,
}


def run(dataset, frame, params, paths):
    scrubber = Scrubber(params.scrub)  # the "no secrets" column of cleaned_documents
    return validate_frame(dataset, with_derived_columns(dataset, frame, scrubber), AUTHOR, params, paths)


@pytest.fixture
def reports(tmp_path, paths):
    return paths.model_copy(update={"reports": tmp_path / "reports"})


@pytest.mark.parametrize("dataset", sorted(GOOD))
def test_good_batch_passes(dataset, params, reports):
    report = run(dataset, GOOD[dataset](), params, reports)
    assert report.success, [o for o in report.failed]
    assert report.data_docs.is_file()


def duplicate_ids(frame):
    frame.loc[1, "id"] = frame.loc[0, "id"]
    return frame


def empty_content(frame):
    frame.loc[2, "content"] = ""
    return frame


def wrong_author(frame):
    frame.loc[0, "author_id"] = "juno-marsh"
    return frame


def oversized(frame):
    big = "x" * 600_000
    frame.loc[3, "content"] = big
    frame.loc[3, "content_hash"] = sha256_text(big)
    return frame


def future_date(frame):
    frame.loc[4, "fetched_at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    return frame


def tampered_hash(frame):
    frame.loc[0, "content"] = frame.loc[0, "content"] + " edited"
    return frame


def bad_url(frame):
    frame.loc[0, "source_url"] = "not a url"
    return frame


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        (duplicate_ids, "ids unique"),
        (empty_content, "content length within bounds"),
        (wrong_author, "author matches config"),
        (oversized, "content length within bounds"),
        (future_date, "fetched-at not in the future"),
        (tampered_hash, "hash matches content"),
        (bad_url, "URL well-formed"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_raw_defect_fails_with_the_expectation_named(defect, expected, params, reports):
    report = run("raw_documents", defect(raw_batch()), params, reports)
    assert not report.success
    assert expected in [outcome.name for outcome in report.failed]


def test_near_empty_share_is_a_threshold_not_a_rule(params, reports):
    frame = raw_batch(10)
    short = "Too short."
    frame.loc[0, "content"], frame.loc[0, "content_hash"] = short, sha256_text(short)
    assert run("raw_documents", frame, params, reports).success  # 1 in 10 <= 20 %
    for i in range(1, 4):
        frame.loc[i, "content"], frame.loc[i, "content_hash"] = short + str(i), sha256_text(short + str(i))
    failed = [o.name for o in run("raw_documents", frame, params, reports).failed]
    assert failed == ["near-empty documents under threshold"]


def test_train_test_leak_fails_instruct_suite(params, reports):
    frame = instruct_batch()
    frame.loc[5, "source_document_id"] = frame.loc[0, "source_document_id"]  # doc0 in train and test
    failed = [o.name for o in run("instruct_dataset", frame, params, reports).failed]
    assert failed == ["train/test disjoint by source document"]


def test_empty_instruction_fails_instruct_suite(params, reports):
    frame = instruct_batch()
    frame.loc[2, "instruction"] = ""
    assert "instruction not empty" in [o.name for o in run("instruct_dataset", frame, params, reports).failed]


def test_chosen_equal_to_rejected_fails_preference_suite(params, reports):
    frame = preference_batch()
    frame.loc[1, "rejected"] = frame.loc[1, "chosen"]
    failed = [o.name for o in run("preference_dataset", frame, params, reports).failed]
    assert failed == ["chosen != rejected"]


def test_chunk_over_token_budget_fails(params, reports):
    frame = chunk_batch()
    frame.loc[0, "token_count"] = params.quality.chunks.max_tokens + 1
    assert [o.name for o in run("chunks", frame, params, reports).failed] == ["token count within bounds"]


def test_duplicate_cleaned_text_fails(params, reports):
    frame = cleaned_batch()
    frame.loc[1, "text"] = frame.loc[0, "text"]
    assert [o.name for o in run("cleaned_documents", frame, params, reports).failed] == ["no duplicate texts"]


def test_data_docs_render_the_validation_results(params, reports):
    from html.parser import HTMLParser

    report = run("raw_documents", duplicate_ids(raw_batch()), params, reports)
    index = report.data_docs.read_text()
    pages = sorted(report.data_docs.parent.glob("validations/raw_documents/**/*.html"))
    assert len(pages) == 1
    assert pages[0].relative_to(report.data_docs.parent).as_posix() in index  # linked from the index
    assert report.validation_page == pages[0]  # where the task's Data Docs link points
    page = pages[0].read_text()
    HTMLParser().feed(page)  # parses as HTML
    assert "values must be unique" in page
    assert f"{AUTHOR}:0" in page  # the duplicated id is shown as an unexpected value
    assert "Failed" in page
