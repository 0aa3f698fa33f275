"""The page memo: a verdict is replayed only for the same body, the same rules and a document still stored."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from twin_ops.collect.memo import PageMemo, PageVerdict, body_hash
from twin_ops.collect.results import Collected
from twin_ops.domain import SkipReason

URL = "http://s.test/posts/a/"


def saved(tmp_path, verdict: PageVerdict, fingerprint: str = "f1") -> None:
    memo = PageMemo(tmp_path / "memo.json", fingerprint, {})
    memo.record(URL, verdict)
    memo.save()


def unstamped(verdict: PageVerdict | None) -> PageVerdict | None:
    """A verdict without the time the server last answered for it (set when recorded)."""
    return None if verdict is None else replace(verdict, checked_at=0.0)


def test_a_kept_page_is_replayed_only_while_its_document_is_stored_unchanged(tmp_path):
    verdict = PageVerdict(body_hash(b"<html>a</html>"), document_id="a:1", content_hash="h1", links=("http://s.test/",))
    saved(tmp_path, verdict)
    assert unstamped(PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}).replay(URL, verdict.body_sha256)) == verdict
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
    assert unstamped(PageMemo(tmp_path / "memo.json", "f1", {}).previous[URL]) == verdict
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


def test_a_sitemap_lastmod_settles_a_page_only_when_unchanged_recent_and_still_stored(tmp_path, monkeypatch):
    memo = PageMemo(tmp_path / "memo.json", "f1", {})
    memo.listed(URL, "2026-03-01")  # the sitemap is read before the page is requested
    memo.record(URL, PageVerdict(body_hash(b"a"), document_id="a:1", content_hash="h1"))
    memo.save()
    day = 86400.0
    fresh = PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}, trust_lastmod_s=7 * day)
    assert fresh.previous[URL].lastmod == "2026-03-01"
    assert fresh.unchanged_since(URL, "2026-03-02") is None  # moved on
    assert fresh.unchanged_since(URL, "2026-02-01") is None  # moved back: a change too
    assert fresh.unchanged_since(URL, "") is None
    assert fresh.unchanged_since(URL, "2026-03-01").document_id == "a:1"
    gone = PageMemo(tmp_path / "memo.json", "f1", {}, trust_lastmod_s=7 * day)  # the store lost the document
    assert gone.unchanged_since(URL, "2026-03-01") is None
    off = PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}, trust_lastmod_s=0)  # trust_sitemap_lastmod_days: 0
    assert off.unchanged_since(URL, "2026-03-01") is None
    later = time.time() + 8 * day  # the server last answered for the page over a week ago
    monkeypatch.setattr("twin_ops.collect.memo.time.time", lambda: later)
    assert PageMemo(tmp_path / "memo.json", "f1", {"a:1": "h1"}, 7 * day).unchanged_since(URL, "2026-03-01") is None


def test_a_page_no_sitemap_listed_before_it_was_answered_has_no_lastmod_to_vouch_for_it(tmp_path):
    memo = PageMemo(tmp_path / "memo.json", "f1", {}, trust_lastmod_s=86400)
    memo.record(URL, PageVerdict(body_hash(b"a"), reason=SkipReason.TOO_SHORT.value))
    memo.listed(URL, "2026-03-01")  # too late: the body judged may be older than this lastmod
    memo.save()
    again = PageMemo(tmp_path / "memo.json", "f1", {}, trust_lastmod_s=86400)
    assert again.previous[URL].lastmod == "" and again.unchanged_since(URL, "2026-03-01") is None


def test_a_memo_from_before_lastmods_loads_and_vouches_for_nothing(tmp_path):
    (tmp_path / "memo.json").write_text(
        json.dumps({"fingerprint": "f1", "pages": {URL: {"body_sha256": "x", "links": [], "feeds": []}}})
    )
    memo = PageMemo(tmp_path / "memo.json", "f1", {}, trust_lastmod_s=86400)
    assert memo.previous[URL].lastmod == "" and memo.unchanged_since(URL, "") is None
