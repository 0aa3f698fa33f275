"""Spider rules without a reactor: scope, limits, failure classification, one crawl per process."""

from __future__ import annotations

import asyncio

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadCancelledError, DownloadTimeoutError, IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from twin_ops.collect import web
from twin_ops.collect.articles import ArticleRules, analyse_page
from twin_ops.collect.politeness import OutOfScope, RedirectLoop
from twin_ops.collect.results import Collected
from twin_ops.collect.spider import TwinSpider, WebSource, classify
from twin_ops.domain import Platform, QuarantineReason, SourceType


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
