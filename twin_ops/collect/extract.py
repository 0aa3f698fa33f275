"""One HTML page → an article: title, subtitle, date, tags, canonical URL and a Markdown-like body.

The main text comes from trafilatura (Markdown output: headings, paragraphs, lists and fenced code
blocks survive; menus, footers, cookie banners and comment forms do not). It is maintained, tops
the published main-content benchmarks, and brings its own metadata extraction (htmldate for
dates). On the demo site it recovers every post's text with no boilerplate (tests prove it).

Medium and Substack pages wrap the story in UI that looks like prose to a generic extractor (the
author bar with "Follow · 6 min read", subscribe boxes, "Thanks for reading…" calls to action), so
for them the platform's own containers are pruned first and title/subtitle come from the
platform's own elements. Everything here is a pure function of (html, url): the crawler runs it
in worker processes, the benchmark's baseline runs it inline, file exports reuse it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
import trafilatura
from lxml import etree

from twin_ops.domain import Platform

# schema.org types that mark a page as one piece of writing (JSON-LD "@type").
ARTICLE_TYPES = frozenset(
    {"Article", "BlogPosting", "NewsArticle", "TechArticle", "Report", "SocialMediaPosting", "ScholarlyArticle"}
)

# Platform UI pruned before extraction (XPath), and where the platform keeps title and subtitle.
MEDIUM_PRUNE = [
    "//*[@data-testid='storyTitle']",
    "//*[contains(@class,'pw-subtitle-paragraph')]",
    "//*[contains(@class,'pw-author')]",
    "//*[contains(@class,'pw-engagement')]",
    "//*[contains(@class,'pw-responses')]",
    "//*[contains(@class,'pw-recirc')]",
    "//*[contains(@class,'metabar')]",
    "//*[contains(@class,'sign-up')]",
    "//button",
]
SUBSTACK_PRUNE = [
    "//*[contains(@class,'post-header')]",
    "//*[contains(@class,'subscription-widget-wrap')]",
    "//*[contains(@class,'button-wrapper')]",
    "//*[contains(@class,'post-footer')]",
    "//*[@id='discussion']",
    "//*[contains(@class,'main-menu')]",
    "//*[contains(@class,'footer-wrap')]",
    "//form",
    "//button",
]
PRUNE = {Platform.MEDIUM: MEDIUM_PRUNE, Platform.SUBSTACK: SUBSTACK_PRUNE}
TITLE_XPATH = {
    Platform.MEDIUM: "//*[@data-testid='storyTitle']",
    Platform.SUBSTACK: "//h1[contains(@class,'post-title')]",
}
SUBTITLE_XPATH = {
    Platform.MEDIUM: "//*[contains(@class,'pw-subtitle-paragraph')]",
    Platform.SUBSTACK: "//h3[contains(@class,'subtitle')]",
}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Article:
    """What the collector keeps from a page; ``body`` is empty when nothing could be extracted."""

    url: str
    canonical_url: str
    platform: Platform
    is_article: bool  # the page declares itself one piece of writing (og:type / JSON-LD)
    title: str = ""
    subtitle: str = ""
    published_at: str | None = None  # ISO date
    tags: list[str] = field(default_factory=list)
    body: str = ""

    @property
    def content(self) -> str:
        """The stored text: the title line, then the body."""
        return f"{self.title}\n\n{self.body}" if self.title else self.body


def _meta(tree: etree._Element, key: str) -> str:
    for attribute in ("property", "name"):
        values = tree.xpath(f"//meta[@{attribute}=$key]/@content", key=key)
        if values:
            return str(values[0]).strip()
    return ""


def _text(tree: etree._Element, xpath: str) -> str:
    nodes = tree.xpath(xpath)
    return " ".join(nodes[0].text_content().split()) if nodes else ""


def _json_ld(tree: etree._Element) -> dict:
    """The page's first JSON-LD object of an article type (or {} — malformed JSON is ignored)."""
    for script in tree.xpath("//script[@type='application/ld+json']/text()"):
        try:
            data = json.loads(script)
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data, *data.get("@graph", [])]:
            kinds = item.get("@type") if isinstance(item, dict) else None
            kinds = {kinds} if isinstance(kinds, str) else set(kinds or [])
            if kinds & ARTICLE_TYPES:
                return item
    return {}


def declares_article(tree: etree._Element) -> bool:
    """Does the page say it is one piece of writing (og:type=article, or JSON-LD of an article type)?"""
    og_type = tree.xpath("//meta[@property='og:type']/@content")
    return (bool(og_type) and str(og_type[0]).strip().lower() == "article") or bool(_json_ld(tree))


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc) and not any(c.isspace() for c in value)


def detect_platform(tree: etree._Element) -> Platform | None:
    """Medium and Substack by the markers their pages carry; None for anything else."""
    if _meta(tree, "al:android:package") == "com.medium.reader" or _meta(tree, "og:site_name") == "Medium":
        return Platform.MEDIUM
    if _meta(tree, "generator").lower().startswith("substack"):
        return Platform.SUBSTACK
    return None


def _keywords(value: object) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    # Medium writes keywords as "Tag:reliability"; keep the tag itself.
    return [str(item).split(":", 1)[-1].strip() for item in items if str(item).strip()]


def _drop_repeated_header(body: str, title: str, subtitle: str) -> str:
    """trafilatura keeps the page's own <h1> and subtitle; they live in their own fields."""
    lines = body.lstrip().split("\n")
    for expected in (title, subtitle):
        if expected and lines and lines[0].lstrip("# ").strip() == expected:
            lines = lines[1:]
            while lines and not lines[0].strip():
                lines = lines[1:]
    return "\n".join(lines).strip()


def parse_html(html: str | bytes) -> lxml.html.HtmlElement | None:
    try:
        return lxml.html.fromstring(html)
    except (etree.ParserError, ValueError):  # empty document, or undecodable bytes
        return None


def extract_article(html: str, url: str, fallback_platform: Platform = Platform.BLOG) -> Article:
    """Extract one page; ``fallback_platform`` applies when the page shows no platform markers."""
    tree = parse_html(html)
    if tree is None:
        return Article(url=url, canonical_url=url, platform=fallback_platform, is_article=False)
    return extract_from_tree(tree, url, fallback_platform)


def canonical_url_of(tree: etree._Element, url: str) -> str:
    canonical = [urldefrag(urljoin(url, str(href).strip()))[0] for href in tree.xpath("//link[@rel='canonical']/@href")]
    return canonical[0] if canonical and _http_url(canonical[0]) else url


def extract_from_tree(tree: lxml.html.HtmlElement, url: str, fallback_platform: Platform = Platform.BLOG) -> Article:
    """``extract_article`` on a parsed page (the crawler's page analysis parses once)."""
    platform = detect_platform(tree) or fallback_platform
    ld = _json_ld(tree)
    is_article = declares_article(tree)  # before trafilatura, which strips <script> and <meta>
    canonical_url = canonical_url_of(tree, url)
    title = _text(tree, TITLE_XPATH[platform]) if platform in TITLE_XPATH else ""
    title = title or str(ld.get("headline") or "") or _meta(tree, "og:title")
    subtitle = _text(tree, SUBTITLE_XPATH[platform]) if platform in SUBTITLE_XPATH else ""
    subtitle = subtitle or _meta(tree, "og:description") or _meta(tree, "description")
    published = str(ld.get("datePublished") or _meta(tree, "article:published_time"))
    tags = _keywords(ld.get("keywords")) or [str(tag) for tag in tree.xpath("//meta[@property='article:tag']/@content")]
    if not (title and published and tags):
        # trafilatura's own metadata search (htmldate for dates) is thorough but costs about a
        # fifth of the extraction, so it only runs for pages without OpenGraph/JSON-LD data.
        metadata = trafilatura.extract_metadata(tree, default_url=canonical_url)
        title, published = title or metadata.title or "", published or metadata.date or ""
        tags = tags or list(metadata.tags or [])

    body = trafilatura.extract(
        tree,
        url=canonical_url,
        output_format="markdown",
        include_formatting=True,
        include_comments=False,
        include_tables=True,
        include_links=False,
        include_images=False,
        prune_xpath=PRUNE.get(platform),
    )
    return Article(
        url=url,
        canonical_url=canonical_url,
        platform=platform,
        is_article=is_article,
        title=" ".join(title.split()),
        subtitle=" ".join(subtitle.split()),
        published_at=published[:10] if DATE.match(published) else None,
        tags=list(dict.fromkeys(tag for tag in tags if tag)),
        body=_drop_repeated_header(body or "", title.strip(), subtitle.strip()),
    )
