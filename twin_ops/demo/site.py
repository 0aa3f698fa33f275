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
rebuild keeps the modification times (Last-Modified) of unchanged pages, and the sitemap gives
every page that same time as its ``<lastmod>``, as a static-site generator or a CMS's sitemap
plugin does with a page's last edit (a re-crawl trusts it, ``collect.spider``).

``build_synthetic_site`` renders an N-post blog from the same templates for the crawl benchmark.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from pathlib import Path

import frontmatter
import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

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
    page = frontmatter.load(path)
    meta, body = page.metadata, page.content
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


# --- templates ---------------------------------------------------------------------------------

# The strings a template prints besides the posts (the boilerplate above included).
TEXT = {
    "author": AUTHOR_NAME,
    "site_name": SITE_NAME,
    "substack_name": SUBSTACK_NAME,
    "medium_handle": MEDIUM_HANDLE,
    "juno_name": JUNO_NAME,
    "juno_site": JUNO_SITE,
    "cookie_banner": COOKIE_BANNER,
    "sidebar_bio": SIDEBAR_BIO,
    "share_bar": SHARE_BAR,
    "comment_prompt": COMMENT_PROMPT,
    "footer": FOOTER_TEXT,
    "medium_signup": MEDIUM_SIGNUP,
    "medium_recommended": MEDIUM_RECOMMENDED,
    "substack_cta": SUBSTACK_CTA,
    "substack_footer": SUBSTACK_FOOTER,
    "draft_sentinel": DRAFT_SENTINEL,
}
NAV = tuple(zip(("/", "/tags/", "/about/", "/feed.xml"), NAV_LABELS, strict=True))


def _long_date(day: date) -> str:
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def _iso(day: date) -> str:
    return datetime.combine(day, time(8, 0), tzinfo=UTC).isoformat()


def _index_path(number: int) -> str:
    return "/" if number == 1 else f"/page/{number}/"


@functools.cache
def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("twin_ops.demo", "templates"),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        markdown=lambda text: Markup(_markdown.render(text)),
        long_date=_long_date,
        iso=_iso,
        rfc822=lambda day: format_datetime(datetime.combine(day, time(8, 0), tzinfo=UTC)),
        index_path=_index_path,
    )
    environment.globals.update(text=TEXT, nav=NAV)
    return environment


def render(template: str, **context: object) -> str:
    """Render one of ``twin_ops/demo/templates``."""
    return _templates().get_template(template).render(**context)


def blog_post_page(base: str, post: Post, older: Post | None, newer: Post | None, recent: list[Post]) -> str:
    url = f"{base}/posts/{post.slug}/"
    return render(
        "blog_post.html",
        base=base,
        url=url,
        title=f"{post.title} · {SITE_NAME}",
        description=post.subtitle,
        og_type="article",
        post=post,
        older=older,
        newer=newer,
        recent=recent,
    )


def blog_index_page(base: str, posts: list[Post], number: int, pages: int, recent: list[Post]) -> str:
    title = SITE_NAME if number == 1 else f"{SITE_NAME} · page {number}"
    return render(
        "blog_index.html",
        base=base,
        url=base + _index_path(number),
        title=title,
        description=SIDEBAR_BIO,
        og_type="website",
        posts=posts,
        number=number,
        pages=pages,
        recent=recent,
    )


def tag_page(base: str, tag: str, posts: list[Post], recent: list[Post]) -> str:
    url, title = f"{base}/tags/{tag}/", f"#{tag} · {SITE_NAME}"
    return render(
        "tag.html", url=url, title=title, description=f"Posts tagged {tag}", og_type="website", tag=tag, posts=posts,
        recent=recent,
    )  # fmt: skip


def tags_index_page(base: str, tags: list[str], recent: list[Post]) -> str:
    title = f"Archive by tag · {SITE_NAME}"
    return render(
        "tags.html", url=f"{base}/tags/", title=title, description="Every tag", og_type="website", tags=tags,
        recent=recent,
    )  # fmt: skip


def about_page(base: str, title: str, body: str, recent: list[Post]) -> str:
    return render(
        "about.html",
        url=f"{base}/about/",
        title=f"{title} · {SITE_NAME}",
        description=SIDEBAR_BIO,
        og_type="profile",
        page_title=title,
        body=body,
        recent=recent,
    )


def draft_page(base: str) -> str:
    url = f"{base}/drafts/next-post/"
    return render("draft.html", url=url, title="Draft", description="unpublished", og_type="article")


def _medium_slug(post: Post) -> str:
    # Medium appends a 12-hex-digit story id to the slug.
    return f"{post.slug}-{hashlib.sha256(post.slug.encode()).hexdigest()[:12]}"


def medium_post_page(base: str, post: Post, others: list[Post]) -> str:
    profile = f"/medium/{MEDIUM_HANDLE}"
    url = f"{base}{profile}/{_medium_slug(post)}"
    return render(
        "medium_post.html",
        base=base,
        url=url,
        title=f"{post.title} | by {AUTHOR_NAME} | Medium",
        description=post.subtitle,
        og_type="article",
        post=post,
        profile=profile,
        minutes=max(1, len(post.body.split()) // 230),
        medium_tags=[f"Tag:{t}" for t in post.tags],
        more=[(p, f"{profile}/{_medium_slug(p)}") for p in others if p != post],
    )


def medium_profile_page(base: str, posts: list[Post]) -> str:
    profile = f"/medium/{MEDIUM_HANDLE}"
    return render(
        "medium_profile.html",
        base=base,
        url=f"{base}{profile}",
        title=f"{AUTHOR_NAME} – Medium",
        description=SIDEBAR_BIO,
        og_type="profile",
        stories=[(p, f"{profile}/{_medium_slug(p)}") for p in posts],
    )


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
    blocks = _blocks(post.body)
    half = len(blocks) // 2
    return render(
        "substack_post.html",
        base=base,
        url=f"{base}/substack/p/{post.slug}",
        title=f"{post.title} - by {AUTHOR_NAME} - {SUBSTACK_NAME}",
        description=post.subtitle,
        og_type="article",
        post=post,
        first_half="\n\n".join(blocks[:half]),
        second_half="\n\n".join(blocks[half:]),
    )


def substack_home_page(base: str, posts: list[Post]) -> str:
    return render(
        "substack_home.html", base=base, url=f"{base}/substack/", title=SUBSTACK_NAME, description=SUBSTACK_CTA,
        og_type="website", posts=posts,
    )  # fmt: skip


def juno_post_page(base: str, post: Post) -> str:
    url = f"{base}/juno/{post.slug}/"
    return render("juno_post.html", url=url, title=post.title, description=post.subtitle, og_type="article", post=post)


def juno_index_page(base: str, posts: list[Post]) -> str:
    return render(
        "juno_index.html", url=f"{base}/juno/", title=JUNO_SITE, description=JUNO_SITE, og_type="website", posts=posts
    )


def rss_feed(title: str, site_url: str, items: list[tuple[Post, str]]) -> str:
    return render("feed.xml", title=title, site_url=site_url, items=items)


def sitemap(urls: list[tuple[str, str]]) -> str:
    return render("sitemap.xml", urls=urls)


def robots_txt(base: str) -> str:
    return render("robots.txt", base=base)


# --- site builders -------------------------------------------------------------------------------


def read_about(content: Path) -> tuple[str, str]:
    """(title, Markdown body) of the About page."""
    page = frontmatter.load(content / "about.md")
    return str(page["title"]), page.content.strip()


def build_blog(out: Path, base: str, posts: list[Post], posts_per_page: int, about: tuple[str, str]) -> list[str]:
    """Index, post, tag and About pages, a draft, the feed, sitemap and robots.txt; returns the sitemap's paths."""
    recent = posts[:5]
    pages = max(1, -(-len(posts) // posts_per_page))
    written: list[str] = []
    for number in range(1, pages + 1):
        chunk = posts[(number - 1) * posts_per_page : number * posts_per_page]
        _write(_page_file(out, _index_path(number)), blog_index_page(base, chunk, number, pages, recent))
        written.append(_index_path(number))
    for index, post in enumerate(posts):
        newer = posts[index - 1] if index > 0 else None
        older = posts[index + 1] if index + 1 < len(posts) else None
        _write(_page_file(out, f"/posts/{post.slug}/"), blog_post_page(base, post, older, newer, recent))
        written.append(f"/posts/{post.slug}/")
    tags = sorted({tag for post in posts for tag in post.tags})
    _write(_page_file(out, "/tags/"), tags_index_page(base, tags, recent))
    written.append("/tags/")
    for tag in tags:
        _write(_page_file(out, f"/tags/{tag}/"), tag_page(base, tag, [p for p in posts if tag in p.tags], recent))
        written.append(f"/tags/{tag}/")
    _write(_page_file(out, "/about/"), about_page(base, *about, recent))
    written.append("/about/")
    _write(_page_file(out, "/drafts/next-post/"), draft_page(base))  # linked from About, never in the sitemap
    feed_items = [(p, f"{base}/posts/{p.slug}/") for p in posts[:20]]
    _write(out / "feed.xml", rss_feed(SITE_NAME, base + "/", feed_items))
    _write(out / "robots.txt", robots_txt(base))
    _write(out / "sitemap.xml", sitemap([(base + path, _lastmod(_page_file(out, path))) for path in written]))
    return written


def _lastmod(path: Path) -> str:
    """A page's last change as a sitemap <lastmod>: its file's mtime (what Last-Modified says too)."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


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
    _write(_page_file(out, "/juno/"), juno_index_page(base, juno))
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
    from twin_ops.demo.server import SiteServer

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
