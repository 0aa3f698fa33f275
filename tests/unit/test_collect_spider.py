"""Spider rules without a reactor: scope, limits, failure classification, one crawl per process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.exceptions import DontCloseSpider, DownloadCancelledError, DownloadTimeoutError, IgnoreRequest
from scrapy.http import Response, XmlResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from twin_ops.collect import web
from twin_ops.collect.articles import ArticleRules, analyse_page
from twin_ops.collect.memo import PageMemo, PageVerdict
from twin_ops.collect.politeness import OutOfScope, RedirectLoop
from twin_ops.collect.results import Collected
from twin_ops.collect.spider import TwinSpider, WebSource, classify
from twin_ops.domain import Platform, QuarantineReason, SkipReason, SourceType


def test_a_source_covers_its_origin_port_included_under_its_path():
    site = WebSource(0, SourceType.ARTICLE, "http://127.0.0.1:8000/")
    assert site.covers("http://127.0.0.1:8000/posts/a/")
    assert not site.covers("http://127.0.0.1:8001/posts/a/")  # another port is another site
    assert not site.covers("http://127.0.0.2:8000/posts/a/")
    assert not site.covers("https://127.0.0.1:8000/posts/a/")
    medium = WebSource(1, SourceType.MEDIUM, "https://medium.com/@wren")
    assert medium.covers("https://medium.com/@wren") and medium.covers("https://medium.com/@wren/a-story-1f2e")
    assert not medium.covers("https://medium.com/@wrenfan/a-story") and not medium.covers("https://medium.com/tag/x")
    feed = WebSource(2, SourceType.FEED, "https://blog.test/feeds/all.xml")
    assert feed.covers("https://blog.test/2024/05/post/") and not feed.covers("https://other.test/post/")


def spider(max_depth: int = 2, max_pages: int = 3) -> TwinSpider:
    return TwinSpider(
        author_id="a",
        sources=[WebSource(0, SourceType.ARTICLE, "http://s.test/")],
        max_depth=max_depth,
        max_pages=max_pages,
        max_page_bytes=1000,
        min_content_chars=10,
        collected=Collected("a"),
        extract=None,
    )


def test_links_past_the_depth_limit_or_the_page_budget_are_counted_not_requested():
    crawler = spider()
    source = crawler.sources[0]
    assert crawler._request("http://s.test/a#top", source, "page", 1).url == "http://s.test/a"
    assert crawler._request("http://s.test/a", source, "page", 1) is None  # already scheduled
    assert crawler._request("http://s.test/deep", source, "page", 3) is None
    assert crawler._request("http://elsewhere.test/", source, "page", 1) is None
    assert crawler._request("mailto:w@s.test", source, "page", 1) is None
    assert crawler._request("http://s.test/b", source, "page", 2) is not None
    assert crawler._request("http://s.test/c", source, "page", 0) is not None
    assert crawler._request("http://s.test/d", source, "page", 0) is None  # budget of 3 spent
    assert dict(crawler.collected.counts.skipped) == {"depth_limit": 1, "out_of_scope": 1, "page_budget": 1}


def failure(error: Exception) -> Failure:
    try:
        raise error
    except Exception:
        return Failure()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (HttpError(Response("http://s.test/x", status=404), "404"), QuarantineReason.HTTP_ERROR),
        (IgnoreRequest("Forbidden by robots.txt"), QuarantineReason.ROBOTS_DISALLOWED),
        (IgnoreRequest("max redirections reached"), QuarantineReason.TOO_MANY_REDIRECTS),
        (RedirectLoop("loop"), QuarantineReason.REDIRECT_LOOP),
        (OutOfScope("out"), QuarantineReason.OFFSITE_REDIRECT),
        (DownloadTimeoutError("took too long"), QuarantineReason.TIMEOUT),
        (
            DownloadCancelledError(
                "Expected to receive 20971520 bytes which is larger than download max size (5000000)"
            ),
            QuarantineReason.TOO_LARGE,
        ),
        (ValueError("odd"), QuarantineReason.FETCH_ERROR),
    ],
)
def test_download_failures_map_to_quarantine_reasons(error, reason):
    assert classify(failure(error))[0] == reason


def test_a_404_keeps_its_status():
    assert classify(failure(HttpError(Response("http://s.test/x", status=404), "404"))) == (
        QuarantineReason.HTTP_ERROR,
        "HTTP 404",
        404,
    )


def test_the_in_scope_check_uses_the_requests_source_and_role():
    crawler = spider()
    page = Request("http://s.test:81/x", meta={"twin_source": 0, "twin_role": "page"})
    robots = Request("http://s.test/robots.txt")  # made by Scrapy itself, no source attached
    assert not crawler.in_scope(page) and crawler.in_scope(robots)


def test_a_second_crawl_in_one_process_is_refused(monkeypatch, params, paths):
    monkeypatch.setattr(web, "_crawled_in_this_process", True)
    with pytest.raises(web.CrawlError, match="cannot restart"):
        web.crawl_web("a", [], params, paths, Collected("a"))


def test_the_pool_gives_the_same_analysis_as_a_direct_call():
    html = (
        "<html><head><meta property='og:type' content='article'><title>Pooled</title></head><body><article>"
        "<p>The extraction workers see the same page and must return the same text, word for word.</p>"
        "<a href='/next/'>next</a></article></body></html>"
    )
    expected = analyse_page(html, "http://s.test/p", Platform.BLOG, False, ArticleRules())
    with web.extractor(1, ArticleRules()) as pooled:
        assert asyncio.run(pooled(html, "http://s.test/p", Platform.BLOG, False)) == expected
    assert "word for word" in expected.article.body and expected.keep
    assert expected.links == ("http://s.test/next/",)


def test_extract_workers_zero_means_one_per_spare_core(monkeypatch):
    monkeypatch.setattr(web.os, "cpu_count", lambda: 8)
    assert (web.extract_workers(0), web.extract_workers(3)) == (7, 3)
    monkeypatch.setattr(web.os, "cpu_count", lambda: 1)
    assert web.extract_workers(0) == 1


# --- re-crawls: pages settled by their sitemap <lastmod> ------------------------------------------

SITE = "http://s.test"
THEN, LATER = "2026-01-01T10:00:00+00:00", "2026-02-01T10:00:00+00:00"


def remembered(tmp_path, trust_lastmod_s: float = 86400.0) -> PageMemo:
    """The memo of a crawl that judged three sitemap pages (lastmod THEN) and one linked page."""
    last = PageMemo(tmp_path / "memo.json", "f", {})
    verdicts = {
        f"{SITE}/posts/a/": PageVerdict("ha", document_id="a:A", content_hash="A", links=(f"{SITE}/unlisted/",)),
        f"{SITE}/posts/b/": PageVerdict("hb", document_id="a:B", content_hash="B"),
        f"{SITE}/tags/x/": PageVerdict("ht", reason=SkipReason.LISTING_PAGE.value, links=(f"{SITE}/posts/a/",)),
        f"{SITE}/unlisted/": PageVerdict("hu", reason=SkipReason.TOO_SHORT.value),
    }
    for url, verdict in verdicts.items():
        if url != f"{SITE}/unlisted/":
            last.listed(url, THEN)
        last.record(url, verdict)
    last.save()
    return PageMemo(tmp_path / "memo.json", "f", {"a:A": "A", "a:B": "B"}, trust_lastmod_s=trust_lastmod_s)


def sitemap_response(lastmods: dict[str, str]) -> XmlResponse:
    entries = "".join(f"<url><loc>{SITE}{path}</loc><lastmod>{day}</lastmod></url>" for path, day in lastmods.items())
    body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'.encode()
    request = Request(f"{SITE}/sitemap.xml", meta={"twin_source": 0, "twin_role": "sitemap"})
    return XmlResponse(request.url, body=body, request=request)


def recrawl(memo: PageMemo) -> TwinSpider:
    return TwinSpider(
        author_id="a",
        sources=[WebSource(0, SourceType.ARTICLE, f"{SITE}/")],
        max_depth=3,
        max_pages=100,
        max_page_bytes=1000,
        min_content_chars=10,
        collected=Collected("a"),
        extract=None,
        memo=memo,
    )


def test_a_page_the_sitemap_lists_with_its_last_lastmod_is_settled_without_a_request(tmp_path):
    memo = remembered(tmp_path)
    crawler = recrawl(memo)
    lastmods = {"/posts/a/": THEN, "/posts/b/": LATER, "/tags/x/": THEN}
    requests = list(crawler._sitemap(sitemap_response(lastmods)))
    # b's lastmod moved: requested; a and the tag page: settled, their links replayed (the page
    # no sitemap lists waits until every sitemap is read, then is requested, conditionally).
    assert [r.url for r in requests] == [f"{SITE}/posts/b/"]
    assert [r.url for r in crawler._held.values()] == [f"{SITE}/unlisted/"]
    counts = crawler.collected.counts
    assert (counts.listed_unchanged, counts.same, counts.web_kept) == (2, 1, 1)
    assert dict(counts.pages_skipped) == {"listing_page": 1, "discovery_file": 1}
    # The ledger: 1 answer (the sitemap) + 2 settled = 1 kept + 2 skipped.
    crawler.collected.fetched(unchanged=True)
    assert counts.web_balanced
    memo.save()
    again = PageMemo(tmp_path / "memo.json", "f", {}).previous
    assert again[f"{SITE}/posts/a/"].lastmod == THEN and again[f"{SITE}/tags/x/"].lastmod == THEN


def test_links_wait_for_the_sitemap_and_go_out_when_no_sitemap_settles_them(tmp_path):
    crawler = recrawl(remembered(tmp_path))
    scheduled: list[Request] = []
    crawler.crawler = SimpleNamespace(engine=SimpleNamespace(crawl=scheduled.append))
    source = crawler.sources[0]
    # Met as links before the site's sitemap is read: they wait (a seed never does).
    assert crawler._request(f"{SITE}/", source, "page", 0, may_wait=False) is not None
    assert crawler._request(f"{SITE}/posts/a/", source, "page", 1) is None
    assert crawler._request(f"{SITE}/posts/b/", source, "page", 1) is None
    assert crawler._request(f"{SITE}/unlisted/", source, "page", 1) is None
    # The sitemap vouches for a; b's lastmod moved: requested now; the unlisted page, no longer
    # in any sitemap, goes out when the crawl first runs out of requests.
    requests = list(crawler._sitemap(sitemap_response({"/posts/a/": THEN, "/posts/b/": LATER})))
    assert [r.url for r in requests] == [f"{SITE}/posts/b/"]
    assert crawler.collected.counts.listed_unchanged == 1
    with pytest.raises(DontCloseSpider):
        crawler.on_idle()
    assert [r.url for r in scheduled] == [f"{SITE}/unlisted/"]
    assert crawler._request(f"{SITE}/posts/c/", source, "page", 1) is not None  # sitemaps read: no more waiting
    crawler.on_idle()  # nothing held: the crawl may close


def test_no_page_is_settled_past_robots_txt_or_the_trust_period(tmp_path):
    lastmods = {"/posts/a/": THEN, "/posts/b/": THEN, "/tags/x/": THEN}
    crawler = recrawl(remembered(tmp_path))
    crawler._robots_from_middleware = True
    crawler._robots[SITE] = SimpleNamespace(allowed=lambda url, agent: "/posts/b/" not in url)
    requests = [r.url for r in crawler._sitemap(sitemap_response(lastmods))]
    assert requests == [f"{SITE}/posts/b/"]  # robots.txt now disallows b: asked (and refused)
    expired = recrawl(remembered(tmp_path / "old", trust_lastmod_s=0.0))  # collect.trust_sitemap_lastmod_days: 0
    assert len(list(expired._sitemap(sitemap_response(lastmods)))) == 3 and not expired._held
    assert expired.collected.counts.listed_unchanged == 0
