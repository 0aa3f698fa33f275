"""The demo site generator: layout, feeds, sitemap, robots.txt, idempotent rebuilds, git repository."""

from __future__ import annotations

import subprocess

from lxml import etree

from tests.support.collect import POSTS_PER_PAGE, ROOT
from twin_ops.demo.site import (
    CONTENT_DIR,
    DRAFT_SENTINEL,
    REPO_DIR,
    build_site,
    build_synthetic_site,
    read_posts,
)

BASE = "http://127.0.0.1:9"


def locs(xml_file) -> list[str]:
    return [element.text for element in etree.parse(str(xml_file)).iter("{*}loc", "link")]


def test_the_site_has_every_post_in_its_platform_layout_plus_feeds_sitemap_and_robots(tmp_path):
    site = build_site(tmp_path / "site", BASE, ROOT / CONTENT_DIR, None, POSTS_PER_PAGE)
    posts = read_posts(ROOT / CONTENT_DIR / "posts")
    blog = [p for p in posts if p.platform == "blog"]
    assert (len(posts), len(blog)) == (34, 26)

    assert len(list((site / "posts").iterdir())) == 26
    assert [p.name for p in sorted((site / "page").iterdir())] == ["2", "3"]  # 26 posts, 10 a page
    assert len(list((site / "medium" / "@wren-halvorsen").glob("*/index.html"))) == 4
    assert len(list((site / "substack" / "p").iterdir())) == 4
    assert len(list((site / "juno").glob("*/index.html"))) == 6

    robots = (site / "robots.txt").read_text()
    assert "Disallow: /drafts/" in robots and f"Sitemap: {BASE}/sitemap.xml" in robots
    assert DRAFT_SENTINEL in (site / "drafts" / "next-post" / "index.html").read_text()
    assert 'href="/drafts/next-post/"' in (site / "about" / "index.html").read_text()

    sitemap = locs(site / "sitemap.xml")
    assert {f"{BASE}/posts/{p.slug}/" for p in blog} <= set(sitemap)
    assert not [url for url in sitemap if "/drafts/" in url or "/medium/" in url or "/juno/" in url]
    assert len(locs(site / "feed.xml")) == 1 + 20  # channel link + the 20 newest posts
    assert len(locs(site / "medium" / "feed" / "@wren-halvorsen.xml")) == 1 + 4
    assert len(locs(site / "juno" / "feed.xml")) == 1 + 6


def test_a_rebuild_rewrites_nothing_unchanged(tmp_path):
    site = build_site(tmp_path / "site", BASE, ROOT / CONTENT_DIR, None, POSTS_PER_PAGE)
    stamps = {path: path.stat().st_mtime_ns for path in site.rglob("*") if path.is_file()}
    build_site(site, BASE, ROOT / CONTENT_DIR, None, POSTS_PER_PAGE)
    assert {path: path.stat().st_mtime_ns for path in site.rglob("*") if path.is_file()} == stamps


def test_the_repository_is_published_for_dumb_http_with_a_reproducible_commit(tmp_path):
    first = build_site(tmp_path / "a", BASE, ROOT / CONTENT_DIR, ROOT / REPO_DIR, POSTS_PER_PAGE)
    second = build_site(tmp_path / "b", BASE, ROOT / CONTENT_DIR, ROOT / REPO_DIR, POSTS_PER_PAGE)
    bare = first / "git" / "bilge-pump.git"
    assert (bare / "info" / "refs").is_file() and list((bare / "objects" / "pack").glob("*.pack"))
    head = (bare / "info" / "refs").read_text().split()[0]
    assert head == (second / "git" / "bilge-pump.git" / "info" / "refs").read_text().split()[0]
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=bare, capture_output=True, text=True)
    assert {"vendor/six_copy.py", "build/output.txt", "assets/logo.png", "README.md"} <= set(tracked.stdout.split())


def test_a_synthetic_site_has_the_requested_posts_and_index_pages(tmp_path):
    pages = build_synthetic_site(tmp_path, BASE, ROOT / CONTENT_DIR, 45, POSTS_PER_PAGE)
    assert len([p for p in pages if p.startswith("/posts/")]) == 45
    assert len([p for p in pages if p == "/" or p.startswith("/page/")]) == 5
    assert "/about/" in pages and "/tags/" in pages  # every page a post links to exists
    assert len(locs(tmp_path / "sitemap.xml")) == len(pages)
