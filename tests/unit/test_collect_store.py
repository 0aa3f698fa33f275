"""The crawl store: revisions, dedup, kept documents, idempotent atomic files."""

from __future__ import annotations

from datetime import UTC, datetime

from twin_ops.collect import store
from twin_ops.domain import (
    DocumentKind,
    Platform,
    QuarantinedItem,
    QuarantineReason,
    RawDocument,
    SkippedItem,
    SkipReason,
    read_jsonl,
    sha256_text,
)
from twin_ops.quality.frames import staged_location

AUTHOR = "wren-halvorsen"


def doc(url: str, content: str, platform: Platform = Platform.BLOG, day: int = 1) -> RawDocument:
    return RawDocument(
        id=f"{AUTHOR}:{url}",
        author_id=AUTHOR,
        kind=DocumentKind.ARTICLE,
        platform=platform,
        source_url=url,
        title=url.rsplit("/", 1)[-1],
        content=content,
        fetched_at=datetime(2026, 1, day, tzinfo=UTC),
        content_hash=sha256_text(content),
    )


def test_the_store_is_where_the_quality_gate_reads_staged_raw_documents(paths):
    assert store.store_dir(paths, AUTHOR) == staged_location(paths, "raw_documents", AUTHOR)


def test_first_crawl_stores_everything_by_platform_sorted_by_id(tmp_path):
    result = store.merge(
        tmp_path, [doc("http://s/b", "B"), doc("http://s/a", "A"), doc("http://m/c", "C", Platform.MEDIUM)]
    )
    assert (sorted(result.new), result.revised, result.total) == (
        [f"{AUTHOR}:http://m/c", f"{AUTHOR}:http://s/a", f"{AUTHOR}:http://s/b"],
        [],
        3,
    )
    assert [p.name for p in store.platform_files(tmp_path)] == ["blog.jsonl", "medium.jsonl"]
    assert [d.source_url for d in read_jsonl(tmp_path / "blog.jsonl", RawDocument)] == ["http://s/a", "http://s/b"]


def test_unchanged_content_is_not_re_emitted_and_the_files_keep_their_bytes(tmp_path):
    store.merge(tmp_path, [doc("http://s/a", "A"), doc("http://s/b", "B")])
    before = (tmp_path / "blog.jsonl").read_bytes()
    written = (tmp_path / "blog.jsonl").stat().st_mtime_ns
    result = store.merge(tmp_path, [doc("http://s/a", "A", day=2), doc("http://s/b", "B", day=2)])
    assert (result.new, result.revised, result.unchanged) == ([], [], 2)
    assert (tmp_path / "blog.jsonl").read_bytes() == before  # fetched_at of the stored record kept
    assert (tmp_path / "blog.jsonl").stat().st_mtime_ns == written  # not even rewritten


def test_only_the_platform_files_with_a_new_or_revised_document_are_rewritten(tmp_path):
    store.merge(tmp_path, [doc("http://s/a", "A"), doc("http://m/c", "C", Platform.MEDIUM)])
    medium = (tmp_path / "medium.jsonl").stat().st_mtime_ns
    result = store.merge(tmp_path, [doc("http://s/a", "A, edited"), doc("http://m/c", "C")])
    assert result.revised == [f"{AUTHOR}:http://s/a"] and result.total == 2
    assert (tmp_path / "medium.jsonl").stat().st_mtime_ns == medium
    assert [d.revision for d in read_jsonl(tmp_path / "blog.jsonl", RawDocument)] == [2]


def test_changed_content_becomes_the_next_revision_of_the_same_id(tmp_path):
    store.merge(tmp_path, [doc("http://s/a", "A"), doc("http://s/b", "B")])
    store.merge(tmp_path, [doc("http://s/a", "A, edited")])
    result = store.merge(tmp_path, [doc("http://s/a", "A, edited twice"), doc("http://s/b", "B")])
    assert (result.new, result.revised, result.unchanged) == ([], [f"{AUTHOR}:http://s/a"], 1)
    stored = store.load_documents(tmp_path)
    assert (stored[f"{AUTHOR}:http://s/a"].revision, stored[f"{AUTHOR}:http://s/a"].content) == (3, "A, edited twice")
    assert stored[f"{AUTHOR}:http://s/b"].revision == 1


def test_documents_missing_from_a_crawl_are_kept(tmp_path):
    store.merge(tmp_path, [doc("http://s/a", "A"), doc("http://s/b", "B")])
    result = store.merge(tmp_path, [doc("http://s/a", "A")])
    assert result.total == 2 and f"{AUTHOR}:http://s/b" in store.load_documents(tmp_path)


def test_the_same_text_under_another_url_or_twice_in_one_crawl_is_a_duplicate(tmp_path):
    result = store.merge(tmp_path, [doc("http://s/a", "A"), doc("http://s/a?utm=x", "A"), doc("http://s/a", "A")])
    assert (len(result.new), result.duplicates, result.total) == (1, 2, 1)


def test_quarantine_is_rewritten_per_crawl_and_ignored_as_a_platform_file(tmp_path):
    item = QuarantinedItem(
        author_id=AUTHOR, url="http://s/x", reason=QuarantineReason.HTTP_ERROR, status=404, at=datetime.now(UTC)
    )
    store.write_quarantine(tmp_path, [item, item.model_copy(update={"url": "http://s/a"})])
    store.write_quarantine(tmp_path, [item])
    assert (tmp_path / store.QUARANTINE_FILE).read_text().count("\n") == 1
    store.merge(tmp_path, [doc("http://s/a", "A")])
    assert [p.name for p in store.platform_files(tmp_path)] == ["blog.jsonl"]


def test_skipped_pages_are_written_beside_the_quarantine_and_are_not_documents(tmp_path):
    from twin_ops.quality.frames import read_jsonl_frame

    skipped = SkippedItem(
        author_id=AUTHOR, url="http://s/tags/x/", reason=SkipReason.LISTING_PAGE, at=datetime.now(UTC)
    )
    path = store.write_skipped(tmp_path, [skipped])
    store.merge(tmp_path, [doc("http://s/a", "A")])
    assert path.name == store.SKIPPED_FILE and read_jsonl(path, SkippedItem) == [skipped]
    assert [p.name for p in store.platform_files(tmp_path)] == ["blog.jsonl"]
    assert list(read_jsonl_frame(tmp_path)["id"]) == [f"{AUTHOR}:http://s/a"]  # what the quality gate reads
