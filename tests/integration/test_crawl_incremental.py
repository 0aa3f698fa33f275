"""Nightly re-crawls: an unchanged site costs only 304s; one edited article gives exactly one revision."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from tests.support.collect import (
    POSTS_PER_PAGE,
    ROOT,
    copy_content,
    crawl,
    documents,
    dump,
    store,
    summary,
    web_requests,
)
from twin_ops.collect.store import NOT_DOCUMENTS
from twin_ops.demo.server import SiteServer
from twin_ops.demo.site import REPO_DIR, build_site

EDITED_SLUG = "retries-with-manners"
ADDED = "Postscript: Ilse has since laminated the sign."


@pytest.fixture(scope="module")
def three_crawls(tmp_path_factory):
    """Crawl, crawl again unchanged, edit one post and rebuild the site, crawl a third time."""
    work = tmp_path_factory.mktemp("incremental")
    content = copy_content(work / "content")
    server = SiteServer(work / "site")
    build_site(work / "site", server.url, content, ROOT / REPO_DIR, POSTS_PER_PAGE)
    runs = []
    with server:
        for step in ("first", "unchanged", "edited"):
            if step == "edited":
                post = content / "posts" / f"{EDITED_SLUG}.md"
                post.write_text(post.read_text().rstrip("\n") + f"\n\n{ADDED}\n")
                build_site(work / "site", server.url, content, ROOT / REPO_DIR, POSTS_PER_PAGE)
            result = crawl(work, "wren-halvorsen", server.url)
            assert result.returncode == 0, dump(result)
            files = {path.name: path.read_bytes() for path in store(work, "wren-halvorsen").glob("*.jsonl")}
            runs.append((result, web_requests(server.take_log()), files))
    return work, runs


def test_the_first_crawl_downloads_every_page(three_crawls):
    _, [(result, log, _), *_] = three_crawls
    assert summary(result)["new"] == 46  # 34 posts, 10 repository files, 2 export files
    assert [r for r in log if r.status == HTTPStatus.OK]
    # Nothing was cached yet, and robots.txt is read once: the spider takes the Sitemap lines from
    # the parser Scrapy's robots.txt check built.
    assert not [r.path for r in log if r.if_none_match]
    assert [r.path for r in log].count("/robots.txt") == 1


def test_an_unchanged_site_is_only_revalidated_and_emits_nothing(three_crawls):
    _, [(_, first_log, first_files), (result, log, files), _] = three_crawls
    # Every request is conditional and answered 304: no page body crosses the wire.
    assert log and {r.status for r in log} == {HTTPStatus.NOT_MODIFIED}
    assert all(r.if_none_match and r.if_modified_since for r in log)
    # The same pages were visited (redirects, cached for good by the first crawl, excepted).
    assert {r.path for r in log} == {r.path for r in first_log if r.status == HTTPStatus.OK}
    counts = summary(result)
    assert (counts["new"], counts["revised"], counts["same"], counts["pages fetched"]) == (0, 0, 46, 0)
    assert counts["kept"] == 46 and counts["unchanged"] == len(log)
    stored = {name: data for name, data in files.items() if name not in NOT_DOCUMENTS}
    assert stored == {name: data for name, data in first_files.items() if name not in NOT_DOCUMENTS}  # same bytes


def test_one_edited_article_is_downloaded_and_becomes_exactly_one_new_revision(three_crawls):
    work, [*_, (result, log, _)] = three_crawls
    downloaded = [r.path for r in log if r.status == HTTPStatus.OK]
    assert downloaded == [f"/posts/{EDITED_SLUG}/"]
    counts = summary(result)
    assert (counts["new"], counts["revised"], counts["same"]) == (0, 1, 45)
    revised = [d for docs in documents(work, "wren-halvorsen").values() for d in docs if d.revision > 1]
    assert [(d.source_url.rsplit("/", 2)[-2], d.revision) for d in revised] == [(EDITED_SLUG, 2)]
    assert revised[0].content.rstrip().endswith(ADDED)
