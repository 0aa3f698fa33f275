"""Nightly re-crawls: an unchanged site costs a few 304s and no request for a page its sitemap vouches
for; one edited article (its sitemap <lastmod> moves) gives exactly one revision."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

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


def sitemap_paths(site: Path) -> set[str]:
    return {urlsplit(loc.text).path for loc in etree.parse(site / "sitemap.xml").iter("{*}loc")}


def test_the_first_crawl_downloads_every_page(three_crawls):
    _, [(result, log, _), *_] = three_crawls
    assert summary(result)["new"] == 46  # 34 posts, 10 repository files, 2 export files
    assert [r for r in log if r.status == HTTPStatus.OK]
    # Nothing was cached yet, and robots.txt is read once: the spider takes the Sitemap lines from
    # the parser Scrapy's robots.txt check built.
    assert not [r.path for r in log if r.if_none_match]
    assert [r.path for r in log].count("/robots.txt") == 1


def test_an_unchanged_site_is_only_revalidated_and_emits_nothing(three_crawls):
    work, [(_, first_log, first_files), (result, log, files), _] = three_crawls
    # Every request is conditional and answered 304: no page body crosses the wire.
    assert log and {r.status for r in log} == {HTTPStatus.NOT_MODIFIED}
    assert all(r.if_none_match and r.if_modified_since for r in log)
    # A page the sitemap lists with the lastmod it had last time is not even requested (the seed,
    # which brings robots.txt and the sitemap, excepted); the rest (robots.txt, sitemap, feeds,
    # Medium and Substack pages) is revalidated: together, the pages the first crawl visited
    # (redirects, cached for good by the first crawl, excepted).
    listed = sitemap_paths(work / "site")
    requested = {r.path for r in log}
    assert requested & listed == {"/"}
    assert requested | listed == {r.path for r in first_log if r.status == HTTPStatus.OK}
    counts = summary(result)
    assert (counts["new"], counts["revised"], counts["same"], counts["pages fetched"]) == (0, 0, 46, 0)
    assert counts["kept"] == 46 and counts["unchanged"] == len(log)
    assert counts["unchanged per"] == len(listed) - 1  # settled by the sitemap, counted once each
    # The ledger: every page answered or settled has one outcome (kept web pages: kept less the
    # repository's and the export's files, which were read from disk).
    web_kept = counts["kept"] - counts["files read"]
    assert counts["unchanged"] + counts["unchanged per"] + counts["failed"] == (
        web_kept + counts["quarantined"] + counts["skipped"]
    )
    stored = {name: data for name, data in files.items() if name not in NOT_DOCUMENTS}
    assert stored == {name: data for name, data in first_files.items() if name not in NOT_DOCUMENTS}  # same bytes


def test_one_edited_article_is_downloaded_and_becomes_exactly_one_new_revision(three_crawls):
    work, [*_, (result, log, _)] = three_crawls
    # The sitemap changed (the post's <lastmod> moved): downloaded, and so is the post, alone.
    downloaded = [r.path for r in log if r.status == HTTPStatus.OK]
    assert sorted(downloaded) == [f"/posts/{EDITED_SLUG}/", "/sitemap.xml"]
    assert {r.path for r in log} & sitemap_paths(work / "site") == {"/", f"/posts/{EDITED_SLUG}/"}
    counts = summary(result)
    assert (counts["new"], counts["revised"], counts["same"]) == (0, 1, 45)
    revised = [d for docs in documents(work, "wren-halvorsen").values() for d in docs if d.revision > 1]
    assert [(d.source_url.rsplit("/", 2)[-2], d.revision) for d in revised] == [(EDITED_SLUG, 2)]
    assert revised[0].content.rstrip().endswith(ADDED)
