"""The page memo: a verdict is replayed only for the same body, the same rules and a document still stored."""

from __future__ import annotations

from twin_ops.collect.memo import PageMemo, PageVerdict, body_hash
from twin_ops.collect.results import Collected
from twin_ops.domain import SkipReason

URL = "http://s.test/posts/a/"


def saved(tmp_path, verdict: PageVerdict, fingerprint: str = "f1") -> None:
    memo = PageMemo(tmp_path / "memo.json", fingerprint, {})
    memo.record(URL, verdict)
    memo.save()


def test_a_kept_page_is_replayed_only_while_its_document_is_stored_unchanged(tmp_path):
    verdict = PageVerdict(body_hash(b"<html>a</html>"), document_id="a:1", content_hash="h1", links=("http://s.test/",))
    saved(tmp_path, verdict)
    assert PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}).replay(URL, body_hash(b"<html>a</html>")) == verdict
    assert PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}).replay(URL, body_hash(b"<html>b</html>")) is None
    assert PageMemo(tmp_path / "memo.json", "f1", {"a:1": "other"}).replay(URL, verdict.body_sha256) is None
    assert PageMemo(tmp_path / "memo.json", "f1", {}).replay(URL, verdict.body_sha256) is None
    assert PageMemo(tmp_path / "memo.json", "f2", {"a:1": "h1"}).replay(URL, verdict.body_sha256) is None  # new rules


def test_a_skipped_page_replays_its_reason_and_only_pages_seen_this_crawl_are_kept(tmp_path):
    verdict = PageVerdict(body_hash(b"x"), reason=SkipReason.LISTING_PAGE.value, detail="/tags/ in the path")
    saved(tmp_path, verdict)
    memo = PageMemo(tmp_path / "memo.json", "f1", {})
    assert memo.replay(URL, verdict.body_sha256).skip_reason == SkipReason.LISTING_PAGE
    memo.save()
    assert PageMemo(tmp_path / "memo.json", "f1", {}).previous == {URL: verdict}
    PageMemo(tmp_path / "memo.json", "f1", {}).save()  # a crawl that reached nothing
    assert PageMemo(tmp_path / "memo.json", "f1", {}).previous == {}


def test_the_ledger_balances_only_when_every_request_has_one_outcome():
    collected = Collected("a")
    collected.fetched()
    collected.fetched(unchanged=True)
    collected.failed()
    collected.same_document()
    collected.skipped_page("http://s.test/tags/x/", SkipReason.LISTING_PAGE)
    assert not collected.counts.web_balanced
    collected.quarantined("http://s.test/missing", "http_error", web=True)
    assert collected.counts.web_balanced
    assert [item.reason for item in collected.skipped_pages] == [SkipReason.LISTING_PAGE]


def test_the_http_cache_file_is_a_dbm_style_mapping_that_survives_reopening(tmp_path):
    from twin_ops.collect import sqlite_dbm

    db = sqlite_dbm.open(tmp_path / "cache.db", "c")
    db["k_data"] = b"\x80body"
    db["k_time"] = "1700000000.0"
    db["k_time"] = "1700000001.0"
    assert ("k_data" in db, "missing" in db, db["k_time"], len(db)) == (True, False, b"1700000001.0", 2)
    db.close()
    again = sqlite_dbm.open(tmp_path / "cache.db", "r")
    assert again[b"k_data"] == b"\x80body"
    del again["k_data"]
    assert sorted(again) == [b"k_time"]
