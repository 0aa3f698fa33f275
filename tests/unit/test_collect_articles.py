"""The article rule on single pages: declared, listing, profile, short, undated (no crawl, no server)."""

from __future__ import annotations

import pytest

from twin_ops.collect.articles import ArticleRules, analyse_page, listing_url
from twin_ops.domain import Platform, SkipReason

PARAGRAPH = "The yard smelled of varnish and rain, and the bilge pump coughed twice before it caught at last. "
BODY = "".join(f"<p>{PARAGRAPH * 2} ({n})</p>" for n in range(5))
DATED = '<time datetime="2024-05-01">1 May 2024</time>'
PROFILE = '<meta property="og:type" content="profile">'
TEASER = "<article><h2>Post {n}</h2><p>{text}</p><a href='/p{n}/'></a></article>"


def page(main: str, head: str = "") -> str:
    return (
        f"<html><head><title>T</title>{head}</head><body><nav><a href='/'>Home</a></nav>"
        f"<main>{main}</main><footer>Footer</footer></body></html>"
    )


@pytest.mark.parametrize(
    ("url", "listing"),
    [
        ("https://b.test/page/2/", True),
        ("https://b.test/tags/rigging/", True),
        ("https://b.test/category/woodwork/", True),
        ("https://b.test/search/label/Winter", True),
        ("https://b.test/2023/11/", True),
        ("https://b.test/2023/", True),
        ("https://b.test/page3/", True),
        ("https://b.test/?paged=2", True),
        ("https://b.test/2023/11/the-winter-cover.html", False),
        ("https://b.test/2024/02/09/a-new-tiller/", False),
        ("https://b.test/posts/pages-of-my-logbook/", False),
        ("https://b.test/?p=377", False),
    ],
)
def test_listing_url_shapes(url, listing):
    assert bool(listing_url(url)) == listing


def test_an_undeclared_dated_post_with_prose_is_kept_and_its_links_listed():
    result = analyse_page(
        page(f"<article><h1>T</h1>{DATED}{BODY}<a href='/next/'>n</a></article>"), "https://b.test/x/", Platform.BLOG
    )
    assert (result.keep, result.reason) == (True, None)
    assert PARAGRAPH.strip() in result.article.body
    assert result.links == ("https://b.test/", "https://b.test/next/")


@pytest.mark.parametrize(
    ("main", "head", "reason"),
    [
        (f"<article><h1>About</h1>{BODY}</article>", "", SkipReason.UNDATED),
        (
            f"<article><h1>Me</h1>{DATED}{BODY}</article>",
            '<meta property="og:type" content="profile">',
            SkipReason.NOT_AN_ARTICLE,
        ),
        (f"<h1>Contact</h1>{DATED}<p>Write to me.</p>", "", SkipReason.TOO_SHORT),
        (f"<h1>Notes</h1>{DATED}<p>{PARAGRAPH * 8}</p>", "", SkipReason.FEW_PARAGRAPHS),
        (
            DATED + "".join(f"<h2><a href='/p{n}/'>Post {n}</a></h2><p>{PARAGRAPH * 3}</p>" for n in range(4)),
            "",
            SkipReason.LISTING_PAGE,
        ),
        (
            DATED
            + "".join(
                f"<article><h2>Post {n}</h2><p>{PARAGRAPH * 3}</p><a href='/p{n}/'></a></article>" for n in range(3)
            ),
            "",
            SkipReason.LISTING_PAGE,
        ),
    ],
)
def test_pages_that_are_not_one_piece_of_writing_are_skipped_with_the_reason(main, head, reason):
    result = analyse_page(page(main, head), "https://b.test/x/", Platform.BLOG)
    assert (result.keep, result.reason) == (False, reason), result.detail


def test_declared_or_fed_pages_are_kept_even_when_short_or_on_a_listing_url():
    short = page("<article><p>A short note.</p></article>", '<meta property="og:type" content="article">')
    assert analyse_page(short, "https://b.test/tags/x/", Platform.BLOG).keep
    assert analyse_page(page("<p>Fed.</p>"), "https://b.test/page/2/", Platform.BLOG, feed_item=True).keep


def test_related_posts_asides_and_comments_do_not_make_a_post_a_listing():
    related = "".join(f"<h3><a href='/r{n}/'>Related {n}</a></h3>" for n in range(5))
    comments = "".join(f"<article class='comment-body'><p>Comment {n}</p></article>" for n in range(5))
    main = f"<article><h1>T</h1>{DATED}{BODY}</article><aside>{related}</aside><div id='comments'>{comments}</div>"
    assert analyse_page(page(main), "https://b.test/x/", Platform.BLOG).keep


def test_thresholds_come_from_the_rules():
    main = f"<article><h1>T</h1>{DATED}{BODY}</article>"
    assert not analyse_page(page(main), "https://b.test/x/", Platform.BLOG, rules=ArticleRules(min_chars=10_000)).keep


def test_links_to_media_and_files_are_not_followed_by_scrapys_own_list():
    from scrapy.linkextractors import IGNORED_EXTENSIONS as SCRAPY

    from twin_ops.collect.articles import IGNORED_EXTENSIONS

    assert set(SCRAPY) == IGNORED_EXTENSIONS
    html = page("<a href='/a.pdf'>pdf</a> <a href='/b.JPG'>img</a> <a href='/post/'>post</a> <a href='#top'>top</a>")
    assert analyse_page(html, "https://b.test/x/", Platform.BLOG).links == (
        "https://b.test/",
        "https://b.test/post/",
        "https://b.test/x/",
    )
