from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from twin_ops.domain import (
    Author,
    DocumentKind,
    EmbeddedChunk,
    Platform,
    RawDocument,
    RecordFileError,
    read_jsonl,
    sha256_text,
    write_jsonl,
)


def raw(content: str = "Fair winds, W.", **changes) -> RawDocument:
    fields = dict(
        id="wren-halvorsen:https://example.test/a",
        author_id="wren-halvorsen",
        kind=DocumentKind.ARTICLE,
        platform=Platform.BLOG,
        source_url="https://example.test/a",
        title="A",
        content=content,
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
        content_hash=sha256_text(content),
    )
    return RawDocument(**(fields | changes))


def test_raw_document_rejects_a_hash_that_does_not_match():
    with pytest.raises(ValidationError, match="content_hash is not the sha256"):
        raw(content_hash=sha256_text("something else"))


def test_raw_document_rejects_empty_content_and_unknown_fields():
    with pytest.raises(ValidationError):
        raw(content="")
    with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs"):
        RawDocument(**raw().model_dump(), surprise=1)


def test_author_id_must_be_a_slug():
    with pytest.raises(ValidationError):
        Author(id="Wren Halvorsen", name="Wren")
    assert Author(id="wren-halvorsen", name="Wren").sources == []


def test_embedded_chunk_vector_must_match_dimension():
    fields = dict(
        id="c1",
        document_id="d1",
        author_id="wren-halvorsen",
        kind="article",
        platform="blog",
        position=0,
        text="bilge",
        token_count=1,
        source_url="https://example.test/a",
        model_name="all-MiniLM-L6-v2",
    )
    EmbeddedChunk(**fields, vector=[0.1, 0.2], dimension=2)
    with pytest.raises(ValidationError, match="vector has 3 values, dimension says 2"):
        EmbeddedChunk(**fields, vector=[0.1, 0.2, 0.3], dimension=2)


def test_jsonl_round_trip(tmp_path):
    records = [raw(), raw(content="Another post.", id="wren-halvorsen:https://example.test/b")]
    path = tmp_path / "raw" / "blog.jsonl"
    assert write_jsonl(path, records) == 2
    assert read_jsonl(path, RawDocument) == records


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "blog.jsonl"
    write_jsonl(path, [raw()])
    with path.open("a") as out:
        out.write('{"id": "x"}\n')
    with pytest.raises(RecordFileError, match=r"blog\.jsonl:2: not a valid RawDocument"):
        read_jsonl(path, RawDocument)


def test_interrupted_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "blog.jsonl"
    write_jsonl(path, [raw()])
    before = path.read_bytes()

    def records_then_crash():
        yield raw(content="half of a new batch")
        raise RuntimeError("crawler died")

    with pytest.raises(RuntimeError, match="crawler died"):
        write_jsonl(path, records_then_crash())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["blog.jsonl"]  # no temp file left behind
