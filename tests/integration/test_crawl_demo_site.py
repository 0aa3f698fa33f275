"""Crawl the demo site served on 127.0.0.1 through `twin-ops crawl`, and check what it collected."""

from __future__ import annotations

import os
import re
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.support.collect import (
    BIN,
    ROOT,
    crawl,
    documents,
    dump,
    quarantine,
    serve_demo_site,
    skipped,
    summary,
    web_requests,
)
from twin_ops.demo.site import BOILERPLATE, CONTENT_DIR, DRAFT_SENTINEL, read_posts
from twin_ops.domain import DocumentKind, Platform, QuarantineReason, SkipReason

POSTS = read_posts(ROOT / CONTENT_DIR / "posts")
JUNO = read_posts(ROOT / CONTENT_DIR / "other_author")
REPO_FILES = 10  # README, DESIGN, three modules, one test, pyproject, three deploy configs (test_collect_repos)
EXPORT_FILES = 2  # include/demo_site/export: the mailbag and the workshop notes


def words(markdown: str) -> str:
    markdown = re.sub(r"^\s*(\d+\.|[-*+]|#+|>)\s+", " ", markdown, flags=re.MULTILINE)
    return " ".join(re.sub(r"[*_`]", "", markdown).split())


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo-crawl")
    server = serve_demo_site(work / "site")
    try:
        result = crawl(work, "wren-halvorsen", server.url)
        log = server.take_log()
        # Juno's crawl also exercises the extraction process pool (the default is inline).
        juno = crawl(work, "juno-marsh", server.url, "collect.extract_workers=2")
        juno_log = server.take_log()
    finally:
        server.stop()
    assert result.returncode == 0, dump(result)
    assert juno.returncode == 0, dump(juno)
    return work, result, log, juno_log


def test_exact_documents_per_platform(crawled):
    work, result, _, _ = crawled
    stored = documents(work, "wren-halvorsen")
    expected = {platform: sum(p.platform == platform for p in POSTS) for platform in ("blog", "medium", "substack")}
    assert {name: len(docs) for name, docs in stored.items()} == {**expected, "git": REPO_FILES, "file": EXPORT_FILES}
    assert expected == {"blog": 26, "medium": 4, "substack": 4}
    counts = summary(result)
    assert (counts["new"], counts["revised"], counts["quarantined"]) == (34 + REPO_FILES + EXPORT_FILES, 0, 1)
    assert all(d.kind == DocumentKind.REPOSITORY for d in stored["git"])


def test_every_fetched_url_ends_kept_quarantined_or_skipped_exactly_once(crawled):
    work, result, log, _ = crawled
    counts = summary(result)
    web_kept = counts["kept"] - REPO_FILES - EXPORT_FILES
    assert (
        counts["pages fetched"] + counts["unchanged"] + counts["failed"]
        == web_kept + counts["quarantined"] + counts["skipped"]
    )
    kept = [
        d.metadata["fetched_url"]
        for name, docs in documents(work, "wren-halvorsen").items()
        if name not in ("git", "file")  # web pages only
        for d in docs
    ]
    left_out = [item.url for item in skipped(work, "wren-halvorsen")]
    failed = [item.url for item in quarantine(work, "wren-halvorsen")]
    outcomes = kept + left_out + failed
    assert len(outcomes) == len(set(outcomes)) == web_kept + counts["quarantined"] + counts["skipped"]
    # From the server's side: every page it answered (redirects aside) has exactly one outcome.
    answered = {r.path for r in web_requests(log) if not 300 <= r.status < 400}
    assert answered == {urlsplit(url).path for url in outcomes if "/drafts/" not in url}


def test_listing_profile_and_discovery_pages_are_skipped_with_their_reason_and_no_post_is(crawled):
    work, _, _, _ = crawled
    reasons = {urlsplit(item.url).path: item.reason for item in skipped(work, "wren-halvorsen")}
    tags = {tag for post in POSTS if post.platform == "blog" for tag in post.tags}
    listings = {"/", "/page/2/", "/page/3/", "/tags/", *(f"/tags/{tag}/" for tag in tags)}
    assert {path for path, reason in reasons.items() if reason == SkipReason.LISTING_PAGE} == listings
    assert {path for path, reason in reasons.items() if reason == SkipReason.NOT_AN_ARTICLE} == {
        "/about/",
        "/medium/@wren-halvorsen/",
    }
    discovery = {"/robots.txt", "/sitemap.xml", "/feed.xml", "/substack/feed.xml", "/medium/feed/@wren-halvorsen.xml"}
    assert {path for path, reason in reasons.items() if reason == SkipReason.DISCOVERY_FILE} == discovery
    assert reasons["/substack/"] == SkipReason.TOO_SHORT  # a home page of short previews
    assert not [path for path in reasons if path.startswith("/posts/") or "/p/" in path]


def test_each_post_is_one_document_with_its_title_metadata_and_text(crawled):
    work, _, _, _ = crawled
    web = [d for name, docs in documents(work, "wren-halvorsen").items() if name not in ("git", "file") for d in docs]
    assert sorted(d.title for d in web) == sorted(p.title for p in POSTS)
    for post in POSTS:
        [document] = [d for d in web if d.title == post.title]
        assert document.platform == Platform(post.platform)
        assert document.metadata["subtitle"] == post.subtitle
        assert document.metadata["published_at"] == post.published.isoformat()
        assert document.metadata["tags"] == list(post.tags)
        assert document.id == f"wren-halvorsen:{document.source_url}"
        # The signature phrase is in this post's document and in no other.
        assert [d.title for d in web if post.signature in d.content] == [post.title]
        extracted = words(document.content)
        for block in post.body.split("\n\n"):
            if not block.startswith("```"):
                assert words(block) in extracted, (post.slug, block[:60])


def test_no_menu_footer_cookie_banner_or_platform_chrome_reaches_a_document(crawled):
    work, _, _, _ = crawled
    for docs in documents(work, "wren-halvorsen").values():
        for document in docs:
            for text in BOILERPLATE:
                assert text not in document.content, (document.source_url, text)
            assert "min read" not in document.content and "Subscribe" not in document.content


def test_robots_txt_is_obeyed_and_the_draft_is_quarantined_not_fetched(crawled):
    work, _, log, _ = crawled
    assert not [r for r in log if r.path.startswith("/drafts/")]
    [item] = quarantine(work, "wren-halvorsen")
    assert (item.reason, item.url.endswith("/drafts/next-post/")) == (QuarantineReason.ROBOTS_DISALLOWED, True)
    for docs in documents(work, "wren-halvorsen").values():
        assert not [d for d in docs if DRAFT_SENTINEL in d.content]


def test_requests_name_twin_ops_and_stay_in_the_authors_scope(crawled):
    _, _, log, _ = crawled
    spider = web_requests(log)
    assert spider and all("twin-ops" in (r.user_agent or "") for r in spider)
    assert not [r for r in spider if r.path.startswith("/juno/")]  # the other author's section
    paths = {r.path for r in spider}
    assert {"/robots.txt", "/sitemap.xml", "/feed.xml", "/substack/feed.xml"} <= paths
    assert len([r for r in log if r.path.startswith("/git/bilge-pump.git/")]) > 0  # cloned over HTTP


def test_the_feed_only_author_gets_exactly_their_posts(crawled):
    work, _, _, juno_log = crawled
    stored = documents(work, "juno-marsh")
    assert list(stored) == ["blog"]
    assert sorted(d.title for d in stored["blog"]) == sorted(p.title for p in JUNO)
    for post in JUNO:
        assert sum(post.signature in d.content for d in stored["blog"]) == 1
    assert {r.path for r in juno_log} == {"/robots.txt", "/juno/feed.xml", *(f"/juno/{p.slug}/" for p in JUNO)}


def test_the_crawl_store_passes_the_raw_documents_suite_and_publishes(crawled):
    work, _, _, _ = crawled
    environment = {
        **os.environ,
        "TWIN_OPS_HOME": str(ROOT),
        "TWIN_OPS_PARAM__project__data_dir": str(work / "data"),
        "TWIN_OPS_PARAM__project__state_dir": str(work / "state"),
        "TWIN_OPS_PARAM__quality__reports_dir": str(work / "reports"),
    }
    command = [str(BIN / "twin-ops"), "validate", "raw_documents", "--author", "wren-halvorsen", "--publish"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, dump(result)
    published = work / "data" / "raw" / "wren-halvorsen"
    assert sorted(p.name for p in published.glob("*.jsonl")) == [
        "blog.jsonl",
        "file.jsonl",
        "git.jsonl",
        "medium.jsonl",
        "quarantine.jsonl",
        "skipped.jsonl",
        "substack.jsonl",
    ]
