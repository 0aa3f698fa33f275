"""The demo site: Wren Halvorsen's blog, rendered from ``include/demo_site/content`` into static files.

It is laid out like a real blog so the crawler meets real structure: paginated index pages, tag
pages, post pages wrapped in a menu, sidebar, share bar, related posts, comment form, footer and a
cookie banner (boilerplate constants below, so tests can prove extraction drops them), an RSS
feed, a sitemap, and a robots.txt that disallows ``/drafts/`` (linked from the About page).
Posts whose front matter says ``platform: medium`` / ``substack`` are rendered in a Medium-like
(``/medium/@wren-halvorsen/…``) and a Substack-like (``/substack/p/…``) page structure with their
own feeds. A second author (Juno Marsh) gets a small separate section, ``/juno/``, with a feed.
The bilge-pump code is committed into a bare git repository served over git's "dumb HTTP"
protocol at ``/git/bilge-pump.git`` (a static server is enough for ``git clone``).

URLs in canonical links, feeds and sitemaps must be absolute, so the site is built for one base
URL (the server binds its port first). Files are only rewritten when their bytes change, so a
rebuild keeps the modification times (Last-Modified) of unchanged pages.

``build_synthetic_site`` renders an N-post blog from the same templates for the crawl benchmark.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

AUTHOR_NAME = "Wren Halvorsen"
SITE_NAME = "Notes from the Boatyard"
SUBSTACK_NAME = "The Bilge Report"
MEDIUM_HANDLE = "@wren-halvorsen"
JUNO_NAME = "Juno Marsh"
JUNO_SITE = "Juno's Kitchen Garden"
REPO_NAME = "bilge-pump"

# Boilerplate that every page carries around the writing; none of it may reach a document.
COOKIE_BANNER = "This site uses cookies to remember which tide tables you like. Accept all or manage preferences."
NAV_LABELS = ("Home", "Archive by tag", "About Wren", "Subscribe by RSS")
SIDEBAR_BIO = "Wren keeps freight software afloat by day and a leaky 1968 sloop afloat by weekend."
SHARE_BAR = "Share this post with a friend who is on call tonight"
COMMENT_PROMPT = "Leave a comment: be kind, be brief, bring tea."
FOOTER_TEXT = "Copyright 2026 Wren Halvorsen. Written in the boatyard, served from a paint tin."
MEDIUM_SIGNUP = "Sign up to discover human stories that deepen your understanding of the world."
MEDIUM_RECOMMENDED = "Recommended from Medium"
SUBSTACK_CTA = "Thanks for reading The Bilge Report! Subscribe for free to receive new posts and support my work."
SUBSTACK_FOOTER = "Substack is the home for great culture"
BOILERPLATE = (
    COOKIE_BANNER,
    *NAV_LABELS,
    SIDEBAR_BIO,
    SHARE_BAR,
    COMMENT_PROMPT,
    FOOTER_TEXT,
    MEDIUM_SIGNUP,
    MEDIUM_RECOMMENDED,
    SUBSTACK_CTA,
    SUBSTACK_FOOTER,
)
DRAFT_SENTINEL = "This draft must never be crawled: robots.txt disallows it."

# A fixed identity and clock for the demo repository, so its commit id is the same on every build.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": AUTHOR_NAME,
    "GIT_AUTHOR_EMAIL": "wren@example.invalid",
    "GIT_COMMITTER_NAME": AUTHOR_NAME,
    "GIT_COMMITTER_EMAIL": "wren@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T12:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T12:00:00+00:00",
}

_markdown = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Post:
    slug: str
    title: str
    subtitle: str
    published: date
    tags: tuple[str, ...]
    platform: str  # blog | medium | substack
    signature: str
    body: str  # Markdown


def read_post(path: Path) -> Post:
    _, header, body = path.read_text(encoding="utf-8").split("---\n", 2)
    meta = yaml.safe_load(header)
    return Post(
        slug=meta["slug"],
        title=meta["title"],
        subtitle=meta.get("subtitle", ""),
        published=meta.get("date") or date(2023, 1, 1),
        tags=tuple(meta.get("tags", [])),
        platform=meta.get("platform", "blog"),
        signature=meta.get("signature", ""),
        body=body.strip(),
    )


def read_posts(folder: Path) -> list[Post]:
    """Posts newest first (the order every index page lists them in)."""
    return sorted((read_post(path) for path in folder.glob("*.md")), key=lambda p: p.published, reverse=True)


# --- files ---------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Write only when the bytes change, atomically, so unchanged pages keep their mtime."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _page_file(out: Path, url_path: str) -> Path:
    """/posts/x/ → out/posts/x/index.html; /feed.xml → out/feed.xml."""
    relative = url_path.lstrip("/")
    return out / relative / "index.html" if relative == "" or relative.endswith("/") else out / relative


# --- templates -----------------------------------------------------------------------------------

e = html.escape


def _long_date(day: date) -> str:
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def _iso(day: date) -> str:
    return datetime.combine(day, time(8, 0), tzinfo=UTC).isoformat()


def _ld(kind: str, post: Post, url: str, author: str) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": kind,
        "headline": post.title,
        "description": post.subtitle,
        "datePublished": _iso(post.published),
        "keywords": list(post.tags),
        "url": url,
        "author": {"@type": "Person", "name": author},
    }
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def _head(title: str, url: str, description: str, og_type: str, extra: str = "") -> str:
    return f"""<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<meta name="description" content="{e(description)}">
<link rel="canonical" href="{e(url)}">
<meta property="og:type" content="{og_type}">
<meta property="og:title" content="{e(title)}">
<meta property="og:url" content="{e(url)}">
{extra}
<style>body{{font-family:Georgia,serif;max-width:52rem;margin:auto}} .cookie-banner{{position:fixed;bottom:0}}</style>
</head>"""


def _html(head: str, body: str) -> str:
    return f'<!doctype html>\n<html lang="en">\n{head}\n{body}\n</html>\n'


def _blog_chrome(base: str, inner: str, recent: list[Post]) -> str:
    """Cookie banner, header menu, sidebar and footer around a blog page's main content."""
    nav_targets = ("/", "/tags/", "/about/", "/feed.xml")
    nav = "".join(f'<li><a href="{t}">{e(label)}</a></li>' for t, label in zip(nav_targets, NAV_LABELS, strict=True))
    recent_items = "".join(f'<li><a href="/posts/{p.slug}/">{e(p.title)}</a></li>' for p in recent)
    return f"""<body>
<div class="cookie-banner" id="cookie-consent" role="dialog"><p>{e(COOKIE_BANNER)}</p>
<button>Accept all</button> <button>Manage preferences</button></div>
<header class="site-header"><a class="brand" href="/">{e(SITE_NAME)}</a>
<nav class="menu"><ul>{nav}</ul></nav></header>
<div class="layout">
<main>{inner}</main>
<aside class="sidebar"><h2>About the author</h2><p>{e(SIDEBAR_BIO)}</p>
<h2>Recent posts</h2><ul>{recent_items}</ul></aside>
</div>
<footer class="site-footer"><p>{e(FOOTER_TEXT)}</p>
<p><a href="/feed.xml">RSS</a> · <a href="/sitemap.xml">Sitemap</a> · <a href="/about/">About</a></p></footer>
</body>"""


def _tag_links(tags: tuple[str, ...], prefix: str) -> str:
    return " ".join(f'<a class="tag" rel="tag" href="{prefix}{t}/">#{e(t)}</a>' for t in tags)


def blog_post_page(base: str, post: Post, older: Post | None, newer: Post | None, recent: list[Post]) -> str:
    url = f"{base}/posts/{post.slug}/"
    metas = "\n".join(f'<meta property="article:tag" content="{e(t)}">' for t in post.tags)
    extra = (
        f'<meta property="og:description" content="{e(post.subtitle)}">\n'
        f'<meta property="article:published_time" content="{_iso(post.published)}">\n{metas}\n'
        f'<link rel="alternate" type="application/rss+xml" title="{e(SITE_NAME)}" href="{base}/feed.xml">\n'
        + _ld("BlogPosting", post, url, AUTHOR_NAME)
    )
    pager = ""
    if older:
        pager += f'<a rel="prev" href="/posts/{older.slug}/">← {e(older.title)}</a> '
    if newer:
        pager += f'<a rel="next" href="/posts/{newer.slug}/">{e(newer.title)} →</a>'
    related = "".join(f'<li><a href="/posts/{p.slug}/">{e(p.title)}</a></li>' for p in recent[:3] if p != post)
    inner = f"""<article class="post">
<header><h1>{e(post.title)}</h1><p class="subtitle">{e(post.subtitle)}</p>
<p class="byline">By {e(AUTHOR_NAME)} ·
<time datetime="{post.published.isoformat()}">{_long_date(post.published)}</time> ·
{_tag_links(post.tags, "/tags/")}</p></header>
<div class="post-body">
{_markdown.render(post.body)}
</div>
<footer class="post-footer"><p class="share">{e(SHARE_BAR)}:
<a href="https://social.example.invalid/share?u={e(url)}">Mastodon</a>
<a href="mailto:?subject={e(post.title)}">Email</a></p></footer>
</article>
<nav class="post-nav">{pager}</nav>
<section class="related"><h2>You might also like</h2><ul>{related}</ul></section>
<section class="comments"><h2>Comments</h2><p>{e(COMMENT_PROMPT)}</p>
<form method="post" action="/comments"><textarea name="comment"></textarea><button>Post comment</button></form>
</section>"""
    head = _head(f"{post.title} · {SITE_NAME}", url, post.subtitle, "article", extra)
    return _html(head, _blog_chrome(base, inner, recent))


def _listing(posts: list[Post], prefix: str) -> str:
    return "\n".join(
        f'<article class="teaser"><h2><a href="{prefix}{p.slug}/">{e(p.title)}</a></h2>'
        f'<p>{e(p.subtitle)}</p><time datetime="{p.published.isoformat()}">{_long_date(p.published)}</time></article>'
        for p in posts
    )


def _index_path(number: int) -> str:
    return "/" if number == 1 else f"/page/{number}/"


def blog_index_page(base: str, posts: list[Post], number: int, pages: int, recent: list[Post]) -> str:
    url = base + _index_path(number)
    pager = f"<span>Page {number} of {pages}</span> "
    if number > 1:
        pager += f'<a rel="prev" href="{_index_path(number - 1)}">← Newer posts</a> '
    if number < pages:
        pager += f'<a rel="next" href="{_index_path(number + 1)}">Older posts →</a>'
    inner = f'<h1>{e(SITE_NAME)}</h1>\n{_listing(posts, "/posts/")}\n<nav class="pagination">{pager}</nav>'
    extra = f'<link rel="alternate" type="application/rss+xml" title="{e(SITE_NAME)}" href="{base}/feed.xml">'
    head = _head(SITE_NAME if number == 1 else f"{SITE_NAME} · page {number}", url, SIDEBAR_BIO, "website", extra)
    return _html(head, _blog_chrome(base, inner, recent))


def tag_page(base: str, tag: str, posts: list[Post], recent: list[Post]) -> str:
    inner = f"<h1>Posts tagged #{e(tag)}</h1>\n{_listing(posts, '/posts/')}"
    head = _head(f"#{tag} · {SITE_NAME}", f"{base}/tags/{tag}/", f"Posts tagged {tag}", "website")
    return _html(head, _blog_chrome(base, inner, recent))


def tags_index_page(base: str, tags: list[str], recent: list[Post]) -> str:
    items = "".join(f'<li><a href="/tags/{t}/">#{e(t)}</a></li>' for t in tags)
    head = _head(f"Archive by tag · {SITE_NAME}", f"{base}/tags/", "Every tag", "website")
    return _html(head, _blog_chrome(base, f"<h1>Tags</h1><ul>{items}</ul>", recent))


def about_page(base: str, title: str, body: str, recent: list[Post]) -> str:
    inner = (
        f'<article class="page"><h1>{e(title)}</h1>\n{_markdown.render(body)}\n'
        f'<p class="wip">Work in progress: <a href="/drafts/next-post/">the next post</a>.</p></article>'
    )
    head = _head(f"{title} · {SITE_NAME}", f"{base}/about/", SIDEBAR_BIO, "profile")
    return _html(head, _blog_chrome(base, inner, recent))


def draft_page(base: str) -> str:
    head = _head("Draft", f"{base}/drafts/next-post/", "unpublished", "article")
    return _html(head, f"<body><article><h1>Draft</h1><p>{e(DRAFT_SENTINEL)}</p></article></body>")


def _medium_slug(post: Post) -> str:
    # Medium appends a 12-hex-digit story id to the slug.
    return f"{post.slug}-{hashlib.sha256(post.slug.encode()).hexdigest()[:12]}"


def medium_post_page(base: str, post: Post, others: list[Post]) -> str:
    profile = f"/medium/{MEDIUM_HANDLE}"
    url = f"{base}{profile}/{_medium_slug(post)}"
    minutes = max(1, len(post.body.split()) // 230)
    extra = (
        '<meta property="og:site_name" content="Medium">\n'
        '<meta property="al:android:package" content="com.medium.reader">\n'
        '<meta name="twitter:site" content="@Medium">\n'
        f'<meta property="article:published_time" content="{_iso(post.published)}">\n'
        f'<link rel="alternate" type="application/rss+xml" href="{base}/medium/feed/{MEDIUM_HANDLE}.xml">\n'
        # Medium spells its JSON-LD keywords "Tag:<name>".
        + _ld("NewsArticle", replace(post, tags=tuple(f"Tag:{t}" for t in post.tags)), url, AUTHOR_NAME)
    )
    more = "".join(f'<li><a href="{profile}/{_medium_slug(p)}">{e(p.title)}</a></li>' for p in others if p != post)
    tags = "".join(f'<a href="/medium/tag/{t}">{e(t.replace("-", " ").title())}</a>' for t in post.tags)
    body = f"""<body><div id="root"><div class="ab cd">
<div class="metabar"><a href="/medium/">Medium</a> <a href="/medium/new-story">Write</a>
<a href="/medium/m/signin">Sign up</a> <a href="/medium/m/signin">Sign in</a></div>
<div class="meteredContent"><article><div class="l"><section><div class="pw-post-body">
<h1 data-testid="storyTitle" class="pw-post-title">{e(post.title)}</h1>
<h2 class="pw-subtitle-paragraph">{e(post.subtitle)}</h2>
<div class="pw-author"><a data-testid="authorName" href="{profile}">{e(AUTHOR_NAME)}</a> <button>Follow</button>
<span data-testid="storyReadTime">{minutes} min read</span> ·
<span data-testid="storyPublishDate">{_long_date(post.published)}</span></div>
<div class="pw-engagement"><span class="pw-multi-vote-count">{len(post.body) % 900}</span>
<button aria-label="responses">{len(post.tags)}</button> <button>Listen</button> <button>Share</button></div>
{_markdown.render(post.body)}
</div></section></div></article>
<div class="pw-tags">{tags}</div>
<div class="pw-responses"><h2>Responses ({len(post.tags)})</h2><p>What are your thoughts?</p></div>
<div class="pw-recirc"><h2>More from {e(AUTHOR_NAME)}</h2><ul>{more}</ul><h2>{e(MEDIUM_RECOMMENDED)}</h2>
<ul><li><a href="/medium/@someone-else/lists">Staff picks</a></li></ul></div>
</div>
<div class="sign-up-overlay"><p>{e(MEDIUM_SIGNUP)}</p></div>
</div></div></body>"""
    head = _head(f"{post.title} | by {AUTHOR_NAME} | Medium", url, post.subtitle, "article", extra)
    return _html(head, body)


def medium_profile_page(base: str, posts: list[Post]) -> str:
    profile = f"/medium/{MEDIUM_HANDLE}"
    items = "".join(
        f'<article><h2><a href="{profile}/{_medium_slug(p)}">{e(p.title)}</a></h2><h3>{e(p.subtitle)}</h3></article>'
        for p in posts
    )
    extra = (
        '<meta property="og:site_name" content="Medium">\n'
        f'<link rel="alternate" type="application/rss+xml" href="{base}/medium/feed/{MEDIUM_HANDLE}.xml">'
    )
    head = _head(f"{AUTHOR_NAME} – Medium", f"{base}{profile}", SIDEBAR_BIO, "profile", extra)
    body = f'<body><div class="metabar">Medium</div><main><h1>{e(AUTHOR_NAME)}</h1>{items}</main></body>'
    return _html(head, body)


def _blocks(markdown: str) -> list[str]:
    """Top-level Markdown blocks (blank-line separated), never splitting a fenced code block."""
    blocks, current, fenced = [], [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def substack_post_page(base: str, post: Post) -> str:
    url = f"{base}/substack/p/{post.slug}"
    blocks = _blocks(post.body)
    half = len(blocks) // 2
    first, second = "\n\n".join(blocks[:half]), "\n\n".join(blocks[half:])
    extra = (
        '<meta name="generator" content="Substack">\n'
        f'<meta property="og:site_name" content="{e(SUBSTACK_NAME)}">\n'
        f'<meta property="article:published_time" content="{_iso(post.published)}">\n'
        f'<link rel="alternate" type="application/rss+xml" href="{base}/substack/feed.xml">\n'
        + _ld("NewsArticle", post, url, AUTHOR_NAME)
    )
    body = f"""<body><div id="entry">
<div class="main-menu"><div class="topbar-content"><a href="/substack/">{e(SUBSTACK_NAME)}</a>
<button>Subscribe</button> <button>Sign in</button></div></div>
<div class="container"><div class="single-post-container"><div class="single-post">
<article class="typography newsletter-post post">
<div class="post-header"><h1 class="post-title published">{e(post.title)}</h1>
<h3 class="subtitle">{e(post.subtitle)}</h3>
<div class="post-meta"><a href="/substack/">{e(AUTHOR_NAME)}</a> · {post.published.strftime("%b %d, %Y")} ·
<span class="like-count">{len(post.body) % 90}</span> likes ·
<a href="#discussion">{len(post.tags)} comments</a> · <a>Share</a></div></div>
<div class="available-content"><div class="body markup" dir="auto">
{_markdown.render(first)}
<div class="subscription-widget-wrap"><div class="subscription-widget"><p class="cta-caption">{e(SUBSTACK_CTA)}</p>
<form action="/substack/api/v1/free"><input type="email" placeholder="Type your email...">
<input type="submit" value="Subscribe"></form></div></div>
{_markdown.render(second)}
<p class="button-wrapper"><a class="button primary" href="{url}?utm_source=share"><span>Share</span></a></p>
</div></div>
<div class="post-footer"><button>Like</button> <button>Comment</button> <button>Restack</button></div>
</article></div>
<div id="discussion"><h4>Discussion about this post</h4><p>Comments are for paid subscribers.</p></div>
</div></div>
<div class="footer-wrap"><p>© 2026 {e(AUTHOR_NAME)} · Privacy · Terms · Collection notice</p>
<p>{e(SUBSTACK_FOOTER)}</p></div>
</div></body>"""
    head = _head(f"{post.title} - by {AUTHOR_NAME} - {SUBSTACK_NAME}", url, post.subtitle, "article", extra)
    return _html(head, body)


def substack_home_page(base: str, posts: list[Post]) -> str:
    items = "".join(
        f'<div class="post-preview"><a href="/substack/p/{p.slug}">{e(p.title)}</a><p>{e(p.subtitle)}</p></div>'
        for p in posts
    )
    extra = (
        '<meta name="generator" content="Substack">\n'
        f'<link rel="alternate" type="application/rss+xml" href="{base}/substack/feed.xml">'
    )
    head = _head(SUBSTACK_NAME, f"{base}/substack/", SUBSTACK_CTA, "website", extra)
    body = (
        f'<body><div class="main-menu">{e(SUBSTACK_NAME)}</div><main>{items}</main>'
        f'<div class="footer-wrap">{e(SUBSTACK_FOOTER)}</div></body>'
    )
    return _html(head, body)


def juno_post_page(base: str, post: Post) -> str:
    url = f"{base}/juno/{post.slug}/"
    extra = f'<meta property="article:published_time" content="{_iso(post.published)}">\n' + _ld(
        "BlogPosting", post, url, JUNO_NAME
    )
    body = f"""<body><header><a href="/juno/">{e(JUNO_SITE)}</a></header>
<main><article><h1>{e(post.title)}</h1><p class="subtitle">{e(post.subtitle)}</p>
{_markdown.render(post.body)}</article></main>
<footer><p>Grown and written by {e(JUNO_NAME)}.</p></footer></body>"""
    return _html(_head(post.title, url, post.subtitle, "article", extra), body)


def rss_feed(title: str, site_url: str, items: list[tuple[Post, str]]) -> str:
    entries = "\n".join(
        f"<item><title>{e(p.title)}</title><link>{e(link)}</link><guid>{e(link)}</guid>"
        f"<pubDate>{format_datetime(datetime.combine(p.published, time(8, 0), tzinfo=UTC))}</pubDate>"
        f"<description>{e(p.subtitle)}</description></item>"
        for p, link in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{e(title)}</title><link>{e(site_url)}</link><description>{e(title)}</description>\n"
        f"{entries}\n</channel></rss>\n"
    )


def sitemap(urls: list[tuple[str, date | None]]) -> str:
    entries = "\n".join(
        f"<url><loc>{e(url)}</loc>" + (f"<lastmod>{day.isoformat()}</lastmod>" if day else "") + "</url>"
        for url, day in urls
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{entries}\n</urlset>\n'
    )


def robots_txt(base: str) -> str:
    return f"User-agent: *\nDisallow: /drafts/\n\nSitemap: {base}/sitemap.xml\n"


# --- site builders -------------------------------------------------------------------------------


def read_about(content: Path) -> tuple[str, str]:
    """(title, Markdown body) of the About page."""
    _, header, body = (content / "about.md").read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(header)["title"], body.strip()


def build_blog(out: Path, base: str, posts: list[Post], posts_per_page: int, about: tuple[str, str]) -> list[str]:
    """Index, post, tag and About pages, a draft, the feed, sitemap and robots.txt; returns the sitemap's paths."""
    recent = posts[:5]
    pages = max(1, -(-len(posts) // posts_per_page))
    written: list[tuple[str, date | None]] = []
    for number in range(1, pages + 1):
        chunk = posts[(number - 1) * posts_per_page : number * posts_per_page]
        _write(_page_file(out, _index_path(number)), blog_index_page(base, chunk, number, pages, recent))
        written.append((_index_path(number), None))
    for index, post in enumerate(posts):
        newer = posts[index - 1] if index > 0 else None
        older = posts[index + 1] if index + 1 < len(posts) else None
        _write(_page_file(out, f"/posts/{post.slug}/"), blog_post_page(base, post, older, newer, recent))
        written.append((f"/posts/{post.slug}/", post.published))
    tags = sorted({tag for post in posts for tag in post.tags})
    _write(_page_file(out, "/tags/"), tags_index_page(base, tags, recent))
    written.append(("/tags/", None))
    for tag in tags:
        _write(_page_file(out, f"/tags/{tag}/"), tag_page(base, tag, [p for p in posts if tag in p.tags], recent))
        written.append((f"/tags/{tag}/", None))
    _write(_page_file(out, "/about/"), about_page(base, *about, recent))
    written.append(("/about/", None))
    _write(_page_file(out, "/drafts/next-post/"), draft_page(base))  # linked from About, never in the sitemap
    feed_items = [(p, f"{base}/posts/{p.slug}/") for p in posts[:20]]
    _write(out / "feed.xml", rss_feed(SITE_NAME, base + "/", feed_items))
    _write(out / "robots.txt", robots_txt(base))
    _write(out / "sitemap.xml", sitemap([(base + path, day) for path, day in written]))
    return [path for path, _ in written]


def build_site(out: Path, base: str, content: Path, repo: Path | None, posts_per_page: int) -> Path:
    """Render the whole demo site for ``base`` (e.g. http://127.0.0.1:8765) into ``out``."""
    base = base.rstrip("/")
    posts = read_posts(content / "posts")
    blog = [p for p in posts if p.platform == "blog"]
    medium = [p for p in posts if p.platform == "medium"]
    substack = [p for p in posts if p.platform == "substack"]
    build_blog(out, base, blog, posts_per_page, read_about(content))

    profile = f"/medium/{MEDIUM_HANDLE}"
    _write(_page_file(out, profile + "/"), medium_profile_page(base, medium))
    for post in medium:
        _write(_page_file(out, f"{profile}/{_medium_slug(post)}/"), medium_post_page(base, post, medium))
    medium_items = [(p, f"{base}{profile}/{_medium_slug(p)}") for p in medium]
    _write(
        out / "medium" / "feed" / f"{MEDIUM_HANDLE}.xml",
        rss_feed(f"{AUTHOR_NAME} on Medium", base + profile, medium_items),
    )

    _write(_page_file(out, "/substack/"), substack_home_page(base, substack))
    for post in substack:
        _write(_page_file(out, f"/substack/p/{post.slug}/"), substack_post_page(base, post))
    substack_items = [(p, f"{base}/substack/p/{p.slug}") for p in substack]
    _write(out / "substack" / "feed.xml", rss_feed(SUBSTACK_NAME, base + "/substack/", substack_items))

    juno = read_posts(content / "other_author")
    juno_index = _head(JUNO_SITE, f"{base}/juno/", JUNO_SITE, "website")
    _write(
        _page_file(out, "/juno/"), _html(juno_index, f"<body><h1>{e(JUNO_SITE)}</h1>{_listing(juno, '/juno/')}</body>")
    )
    for post in juno:
        _write(_page_file(out, f"/juno/{post.slug}/"), juno_post_page(base, post))
    juno_items = [(p, f"{base}/juno/{p.slug}/") for p in juno]
    _write(out / "juno" / "feed.xml", rss_feed(JUNO_SITE, base + "/juno/", juno_items))

    if repo is not None:
        publish_git_repo(repo, out / "git" / f"{REPO_NAME}.git")
    return out


def synthetic_posts(content: Path, count: int) -> list[Post]:
    """``count`` distinct posts cycled from the demo posts (benchmark material), newest first."""
    sources = read_posts(content / "posts")
    posts = []
    for number in range(count):
        source = sources[number % len(sources)]
        posts.append(
            Post(
                slug=f"{source.slug}-{number}",
                title=f"{source.title} (No. {number})",
                subtitle=source.subtitle,
                published=date.fromordinal(date(2020, 1, 1).toordinal() + number),
                tags=source.tags,
                platform="blog",
                signature=source.signature,
                body=f"{source.body}\n\nThis is copy number {number} of the synthetic archive.",
            )
        )
    return posts[::-1]


def build_synthetic_site(out: Path, base: str, content: Path, pages: int, posts_per_page: int) -> list[str]:
    """A blog of ``pages`` posts (plus index, tag and About pages); returns every page path in its sitemap."""
    return build_blog(out, base.rstrip("/"), synthetic_posts(content, pages), posts_per_page, read_about(content))


# --- git -----------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
    environment = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    done = subprocess.run(["git", *args], cwd=cwd, env=environment, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def init_git_repo(folder: Path) -> str:
    """Make ``folder`` a git repository with everything in it committed once; returns the commit id.

    Everything means everything, ``.gitignore``d files included: the repository must hold the
    vendored and build folders the collector is expected to skip.
    """
    _git("init", "--quiet", "--initial-branch=main", cwd=folder)
    _git("add", "--all", "--force", ".", cwd=folder)
    _git("commit", "--quiet", "--message", f"{REPO_NAME}: demo snapshot", cwd=folder)
    return _git("rev-parse", "HEAD", cwd=folder)


def publish_git_repo(source: Path, bare: Path) -> str:
    """Commit ``source`` and publish it as a bare repository a static HTTP server can serve."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / REPO_NAME
        shutil.copytree(source, work, symlinks=True)
        commit = init_git_repo(work)
        if bare.exists() and _git("rev-parse", "HEAD", cwd=bare) == commit:
            return commit  # same content, same fixed dates: already published
        staging = Path(scratch) / "bare.git"
        _git("clone", "--quiet", "--bare", str(work), str(staging), cwd=Path(scratch))
        _git("repack", "-a", "-d", "--quiet", cwd=staging)
        _git("update-server-info", cwd=staging)  # the index files dumb-HTTP clients read
        if bare.exists():
            shutil.rmtree(bare)
        bare.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), bare)
    return commit


# --- serving -------------------------------------------------------------------------------------

CONTENT_DIR = Path("include/demo_site/content")  # under the project root
REPO_DIR = Path("include/demo_site/repo")


def serve_demo_site(
    root: Path,
    state: Path,
    port: int,
    posts_per_page: int,
    synthetic_pages: int | None = None,
    on_ready: Callable[[str, Path], None] | None = None,
) -> None:
    """Build the demo site (or an N-post synthetic one) under ``state`` and serve it until Ctrl-C."""
    from twin_ops.collect.site_server import SiteServer

    out = state / "demo_site" / ("public" if synthetic_pages is None else f"synthetic-{synthetic_pages}")
    server = SiteServer(out, port=port)  # bound first: the site is built for its real address
    if synthetic_pages is None:
        build_site(out, server.url, root / CONTENT_DIR, root / REPO_DIR, posts_per_page)
    else:
        build_synthetic_site(out, server.url, root / CONTENT_DIR, synthetic_pages, posts_per_page)
    if on_ready is not None:
        on_ready(server.url, out)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
