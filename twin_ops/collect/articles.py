"""Is this fetched page one piece of writing? The crawler's keep/skip rule, and the page's links.

``analyse_page`` is a pure function of (html, url, platform, where the page was found), so the
crawler runs it in worker processes, off the reactor: it parses the page once, extracts the
article (``extract``), decides keep or skip, and lists the links and feeds the crawler follows.

The rule, in order (the first that applies decides):

1. **Declared or fed** — the page says it is an article (``og:type=article`` or a JSON-LD Article
   type) or a feed of the source lists it: kept (the spider quarantines it as an empty extraction
   when its text is shorter than ``collect.min_content_chars``).
2. **Declared otherwise** — ``og:type`` is ``profile``, ``book``, ``video.*``, ``music.*`` or
   ``product``: skipped, ``not_an_article``. (``og:type=website`` decides nothing: many themes
   put it on every page, posts included.)
3. **Listing page** — the URL has a listing shape (``/page/2/``, ``/tag/…``, ``/tags/…``,
   ``/category/…``, ``/label/…``, ``/author/…``, ``/archive…``, ``/search…``, a date-only path
   like ``/2024/05/``, ``?page=2``), or at least ``min_teasers`` headings link to other pages
   of the site, or the page holds at least ``min_teasers`` ``<article>`` elements (the teaser
   list of an index, tag or archive page; navigation, asides, footers, related-post and comment
   sections do not count): skipped, ``listing_page``.
4. **Looks like one piece of writing** — the main text trafilatura extracts (it already drops
   link-dense blocks, menus and boilerplate) has at least ``min_chars`` characters in at least
   ``min_paragraphs`` paragraphs, and the page carries a publication date where blog engines put
   one (meta tags, ``<time>``, ``datePublished``, date classes, a dated URL; htmldate without
   its free-text search, which would take a footer's copyright year for a date): kept. Otherwise
   skipped as ``too_short``, ``few_paragraphs`` or ``undated`` (About, contact, landing pages).

Sitemaps are a source of candidates, not a verdict: every URL a sitemap lists is fetched (depth 0)
and judged by the same rule, since sitemaps list index, tag and About pages too.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from htmldate import find_date
from lxml import etree

from twin_ops.collect.extract import Article, canonical_url_of, declares_article, extract_from_tree, parse_html
from twin_ops.domain import Platform, SkipReason

FEED_LINKS = "//link[@rel='alternate'][contains(@type,'rss') or contains(@type,'atom')]/@href"
NON_ARTICLE_OG_TYPES = re.compile(r"^(profile|book|product|video(\..*)?|music(\..*)?)$")
# Path segments that name a listing, and date-only paths (/2024/, /2024/05/, /2024/05/17/).
LISTING_SEGMENTS = frozenset(
    {"page", "tag", "tags", "category", "categories", "label", "labels", "topic", "topics", "author", "authors"}
    | {"archive", "archives", "search", "series"}
)
DATE_ONLY_PATH = re.compile(r"^/\d{4}(/\d{1,2}){0,2}/?$")
PAGINATION_PATH = re.compile(r"/page-?\d+/?$")  # Jekyll's /page2/, /blog/page-3/
PAGINATION_QUERY = re.compile(r"(^|&)(page|paged|updated-max|max-results)=")
HEADINGS = "h1 or self::h2 or self::h3 or self::h4 or self::h5 or self::h6"
TEASER_XPATH = f"//*[self::{HEADINGS}]//a[@href] | //a[@href][.//*[self::{HEADINGS}]]"
# Page regions whose heading links are navigation or recirculation, not the page's own content.
CHROME = re.compile(r"(^|[\s_-])(sidebar|widget|related|recirc|read-more|more-from|menu|nav|comment)", re.IGNORECASE)


# Links never followed: media, archives, office files, scripts. Scrapy's own list
# (scrapy.linkextractors.IGNORED_EXTENSIONS, a unit test keeps them equal), copied because importing
# scrapy.linkextractors costs an analysis worker seconds of start-up for one constant.
IGNORED_EXTENSIONS = frozenset(
    [
        "7z", "7zip", "bz2", "rar", "tar", "tar.gz", "xz", "zip", "mng", "pct", "bmp", "gif", "jpg", "jpeg", "png",
        "pst", "psp", "tif", "tiff", "ai", "drw", "dxf", "eps", "ps", "svg", "cdr", "ico", "webp", "mp3", "wma",
        "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt",
        "rm", "swf", "wmv", "m4a", "m4v", "flv", "webm", "xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx",
        "ppt", "pptm", "pptx", "pps", "doc", "docb", "docm", "docx", "dotm", "dotx", "odt", "ods", "odg", "odp",
        "css", "pdf", "exe", "bin", "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js", "hta", "bat", "cpl", "msi",
        "msp", "py",
    ]
)  # fmt: skip


@dataclass(frozen=True)
class ArticleRules:
    """Thresholds of the content rule (rule 4) and the listing rule (rule 3)."""

    min_chars: int = 500
    min_paragraphs: int = 3
    min_teasers: int = 3


@dataclass(frozen=True)
class PageResult:
    """What the crawler needs from one fetched HTML page."""

    article: Article
    keep: bool
    reason: SkipReason | None = None  # why not kept
    detail: str = ""
    links: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()


def listing_url(url: str) -> str:
    """Why the URL's shape says listing page, or '' when it does not."""
    parts = urlsplit(url)
    path = parts.path or "/"
    segments = [segment.lower() for segment in path.split("/") if segment]
    if DATE_ONLY_PATH.match(path):
        return f"date archive {path}"
    if PAGINATION_PATH.search(path):
        return f"pagination {path}"
    named = [segment for segment in segments if segment in LISTING_SEGMENTS]
    if named:
        return f"/{named[0]}/ in the path {path}"
    if PAGINATION_QUERY.search(parts.query):
        return f"pagination ?{parts.query}"
    return ""


def _in_chrome(element: etree._Element) -> bool:
    for ancestor in element.iterancestors():
        tag = ancestor.tag if isinstance(ancestor.tag, str) else ""
        if tag in {"nav", "aside"}:
            return True
        if tag in {"header", "footer"} and not any(a.tag in {"article", "main"} for a in ancestor.iterancestors()):
            return True  # the site's header and footer; an article's own header is content
        if CHROME.search(f"{ancestor.get('class', '')} {ancestor.get('id', '')}"):
            return True
    return False


def teasers(tree: etree._Element, url: str, canonical_url: str) -> tuple[int, int]:
    """(distinct other pages of the site the page's headings link to, top-level ``<article>``
    elements), both outside the page's chrome: an index lists posts one way or the other."""
    own = {urldefrag(url)[0], urldefrag(canonical_url)[0]}
    host = urlsplit(url).netloc
    targets = set()
    for link in tree.xpath(TEASER_XPATH):
        target = urldefrag(urljoin(url, (link.get("href") or "").strip()))[0]
        if urlsplit(target).netloc == host and target not in own and not _in_chrome(link):
            targets.add(target)
    articles = [a for a in tree.iter("article") if not any(True for _ in a.iterancestors("article"))]
    return len(targets), sum(1 for article in articles if not _in_chrome(article))


def paragraphs(body: str) -> int:
    """Blocks of prose in an extracted Markdown body (headings and one-liners excluded)."""
    blocks = (block.strip() for block in re.split(r"\n\s*\n", body))
    return sum(1 for block in blocks if block and not block.startswith("#") and len(block) >= 40)


def page_links(tree: etree._Element, url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(links to follow, feeds declared) — absolute, fragment-free, in page order, media skipped."""
    bases = tree.xpath("//base/@href")
    base = urljoin(url, str(bases[0]).strip()) if bases else url
    links: dict[str, None] = {}
    for href in tree.xpath("//a/@href | //area/@href"):
        link = urldefrag(urljoin(base, str(href).strip()))[0]
        extension = posixpath.splitext(urlsplit(link).path)[1].lstrip(".").lower()
        if extension not in IGNORED_EXTENSIONS:
            links[link] = None
    feeds = dict.fromkeys(urljoin(base, str(href).strip()) for href in tree.xpath(FEED_LINKS))
    return tuple(links), tuple(feeds)


def _og_type(tree: etree._Element) -> str:
    values = tree.xpath("//meta[@property='og:type']/@content")
    return str(values[0]).strip().lower() if values else ""


def analyse_page(
    html: str, url: str, platform: Platform, feed_item: bool = False, rules: ArticleRules = ArticleRules()
) -> PageResult:
    """Parse once; decide keep or skip (module docstring); extract the article and the links."""
    tree = parse_html(html)
    if tree is None:
        return PageResult(Article(url=url, canonical_url=url, platform=platform, is_article=False), keep=True)
    links, feeds = page_links(tree, url)
    declared = declares_article(tree)
    canonical = canonical_url_of(tree, url)
    og_type = _og_type(tree)
    listing = "" if declared or feed_item else listing_url(url)
    linked, articles = (0, 0) if declared or feed_item or listing else teasers(tree, url, canonical)
    dated = declared or feed_item or bool(find_date(tree, url=url, extensive_search=False, original_date=True))
    article = extract_from_tree(tree, url, platform)

    def skip(reason: SkipReason, detail: str) -> PageResult:
        return PageResult(article, keep=False, reason=reason, detail=detail, links=links, feeds=feeds)

    if declared or feed_item:
        return PageResult(article, keep=True, links=links, feeds=feeds)
    if NON_ARTICLE_OG_TYPES.match(og_type):
        return skip(SkipReason.NOT_AN_ARTICLE, f"og:type={og_type}")
    if listing:
        return skip(SkipReason.LISTING_PAGE, listing)
    if linked >= rules.min_teasers:
        return skip(SkipReason.LISTING_PAGE, f"{linked} headings link to other pages (a teaser list)")
    if articles >= rules.min_teasers:
        return skip(SkipReason.LISTING_PAGE, f"{articles} <article> elements (a teaser list)")
    text = article.body.strip()
    if len(text) < rules.min_chars:
        return skip(SkipReason.TOO_SHORT, f"{len(text)} characters of main text < {rules.min_chars}")
    count = paragraphs(text)
    if count < rules.min_paragraphs:
        return skip(SkipReason.FEW_PARAGRAPHS, f"{count} paragraphs of main text < {rules.min_paragraphs}")
    if not dated:
        return skip(SkipReason.UNDATED, "no publication date in the page's metadata, time elements or URL")
    return PageResult(article, keep=True, links=links, feeds=feeds)
