"""Extraction on the demo site's rendered pages (read from disk; no server, no crawl)."""

from __future__ import annotations

import re

import pytest

from tests.support.collect import POSTS_PER_PAGE, ROOT
from twin_ops.collect.extract import declares_article, extract_article, parse_html
from twin_ops.demo.site import (
    BOILERPLATE,
    CONTENT_DIR,
    MEDIUM_HANDLE,
    Post,
    _medium_slug,
    build_site,
    read_posts,
)
from twin_ops.domain import Platform

BASE = "http://127.0.0.1:9"
POSTS = read_posts(ROOT / CONTENT_DIR / "posts")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("site"), BASE, ROOT / CONTENT_DIR, None, POSTS_PER_PAGE)


def page_path(post: Post) -> str:
    return {
        "blog": f"/posts/{post.slug}/",
        "medium": f"/medium/{MEDIUM_HANDLE}/{_medium_slug(post)}/",
        "substack": f"/substack/p/{post.slug}/",
    }[post.platform]


def words(markdown: str) -> str:
    """Text with Markdown syntax and list numbering removed, whitespace collapsed."""
    markdown = re.sub(r"^\s*(\d+\.|[-*+]|#+|>)\s+", " ", markdown, flags=re.MULTILINE)
    return " ".join(re.sub(r"[*_`]", "", markdown).split())


@pytest.mark.parametrize("post", POSTS, ids=lambda post: f"{post.platform}-{post.slug}")
def test_every_post_is_extracted_whole_and_without_boilerplate(site, post):
    path = page_path(post)
    article = extract_article((site / path.strip("/") / "index.html").read_text(), BASE + path)

    assert article.is_article
    assert article.platform == Platform(post.platform)
    assert (article.title, article.subtitle) == (post.title, post.subtitle)
    assert article.published_at == post.published.isoformat()
    assert article.tags == list(post.tags)
    # Medium and Substack posts are canonically addressed without the trailing slash.
    assert article.canonical_url == BASE + (path if post.platform == "blog" else path.rstrip("/"))
    assert article.content.startswith(f"{post.title}\n\n")
    assert article.content.count(post.signature) == 1
    for text in BOILERPLATE:
        assert text not in article.content
    # Every paragraph, heading and list item of the source survives, in Markdown-like form.
    extracted = words(article.body)
    for block in post.body.split("\n\n"):
        if not block.startswith("```"):
            assert words(block) in extracted
    # Fenced code stays a fenced block, indentation intact.
    for code in re.findall(r"```[a-z]*\n(.*?)```", post.body, flags=re.DOTALL):
        assert "```" in article.body
        for line in code.strip().splitlines():
            if line.strip():
                assert line.rstrip() in article.body


def test_index_tag_and_profile_pages_are_not_articles(site):
    for path in ("index.html", "page/2/index.html", "tags/index.html", "about/index.html", "substack/index.html"):
        assert not declares_article(parse_html((site / path).read_text())), path


def test_malformed_html_and_broken_json_ld_are_survived():
    html = (
        "<html><head><meta property='og:type' content='article'><title>Odd page</title>"
        "<script type='application/ld+json'>{not json</script>"
        "<link rel='canonical' href='not a url with spaces'></head><body><div><p>Unclosed paragraph with "
        "enough words to count as the body of an article, written in a hurry <b>bold <i>nested</p>"
        "<p>Second paragraph: the tide came in anyway.</div></span></body>"
    )
    article = extract_article(html, "http://127.0.0.1:9/odd")
    assert article.is_article and article.title == "Odd page"
    assert article.canonical_url == "http://127.0.0.1:9/odd"  # an unusable canonical is ignored
    assert "the tide came in anyway" in article.body


def test_empty_input_gives_an_empty_article_and_no_error():
    for html in ("", "   ", "\x00\x01\x02"):
        article = extract_article(html, "http://127.0.0.1:9/x")
        assert not article.is_article
    assert extract_article("", "http://127.0.0.1:9/x").body == ""
