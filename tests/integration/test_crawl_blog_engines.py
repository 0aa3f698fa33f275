"""A blog in the markup of real blog engines, crawled through `twin-ops crawl` from its root URL: every
post is kept, no listing page is, and every fetched URL is accounted for (include/blog_engines)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.collect import (
    BLOG_ENGINES,
    crawl,
    documents,
    dump,
    quarantine,
    serve_blog_engines,
    skipped,
    summary,
    web_requests,
)
from twin_ops.domain import QuarantineReason, SkipReason

PAGES = yaml.safe_load((BLOG_ENGINES / "pages.yaml").read_text())
POSTS = PAGES["posts"]
SHARE_LINKS = 2  # WordPress share buttons link to the post itself with ?share=...: kept, as duplicates
BROKEN_LINKS = 36  # links to pages the saved site does not have (feeds, other posts, product pages)


def title_of(post: dict) -> str:
    return (BLOG_ENGINES / "truth" / f"{post['truth']}.txt").read_text().split("\n", 1)[0].strip()


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    work = tmp_path_factory.mktemp("blog-engines")
    authors = work / "authors"
    authors.mkdir()
    (authors / "blogger.yaml").write_text(
        "id: blogger\nname: Blogger\nsources:\n  - {type: article, url: '${DEMO_SITE_URL}/'}\n"
    )
    server = serve_blog_engines(work / "site")
    try:
        result = crawl(work, "blogger", server.url, env={"TWIN_OPS_PARAM__collect__authors_dir": str(authors)})
        log = web_requests(server.take_log())
    finally:
        server.stop()
    assert result.returncode == 0, dump(result)
    return work, result, log


def test_every_post_is_kept_with_its_title_and_text(crawled):
    work, _, _ = crawled
    kept = {urlsplit(d.metadata["fetched_url"]).path: d for d in documents(work, "blogger")["blog"]}
    assert sorted(kept) == sorted(post["path"] for post in POSTS)
    for post in POSTS:
        document = kept[post["path"]]
        assert document.title == title_of(post), post["engine"]
        assert post["signature"] in document.content, post["engine"]
        assert document.metadata["published_at"], post["engine"]


def test_no_listing_or_other_page_is_kept_and_each_is_skipped_with_its_reason(crawled):
    work, _, _ = crawled
    reasons = {urlsplit(item.url).path: item.reason for item in skipped(work, "blogger")}
    assert reasons == {path: SkipReason(reason) for path, reason in PAGES["skipped"].items()}


def test_counts_are_exact_and_every_fetched_url_has_exactly_one_outcome(crawled):
    work, result, log = crawled
    counts = summary(result)
    expected = (len(POSTS), len(POSTS) + SHARE_LINKS, SHARE_LINKS, len(PAGES["skipped"]), BROKEN_LINKS)
    assert (counts["new"], counts["kept"], counts["duplicates"], counts["skipped"], counts["quarantined"]) == expected
    assert counts["pages fetched"] + counts["unchanged"] + counts["failed"] == (
        counts["kept"] + counts["quarantined"] + counts["skipped"]
    )
    # From the server's side: every URL it answered is a kept post, a skipped page or a quarantined 404.
    items = quarantine(work, "blogger")
    assert {(item.reason, item.status) for item in items} == {(QuarantineReason.HTTP_ERROR, 404)}
    not_found = {urlsplit(item.url).path for item in items}
    answered = {urlsplit(r.path).path for r in log}
    assert not_found == {urlsplit(r.path).path for r in log if r.status == 404}
    assert answered == {post["path"] for post in POSTS} | set(PAGES["skipped"]) | not_found
    assert [r.path for r in log].count("/robots.txt") == 1


def test_boilerplate_of_each_engine_stays_out(crawled):
    work, _, _ = crawled
    chrome = (
        "We value your privacy",  # the news site's cookie wall
        "Most read",
        "Leave a Reply",  # WordPress comment form
        "Tung oil, thinned",  # a WordPress comment
        "Sign up for more like this",  # Ghost's call to action
        "Powered by",
        "Blog Archive",  # Blogger's sidebar
        "Ship faster with Tidewater",  # the company blog's banner
    )
    for document in documents(work, "blogger")["blog"]:
        for text in chrome:
            assert text not in document.content, (document.source_url, text)
