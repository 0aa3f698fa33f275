"""The Scrapy spider that walks an author's web sources.

Discovery, per source type:

* ``article`` / ``medium`` / ``substack`` — the source page, then same-scope links (``<a href>``)
  and the RSS/Atom feeds pages declare (``<link rel="alternate">``); ``article`` also reads the
  sitemaps robots.txt lists (platform-wide sitemaps of Medium would list every other author).
* ``feed`` — the feed's entries only. ``sitemap`` — the sitemap's URLs (sitemap indexes followed).

Every HTML page is analysed off the reactor (``extract``: a worker pool running
``articles.analyse_page``) and kept when it is one piece of writing — it declares itself one, a
feed lists it, or its main text looks like one (the rule is in ``articles``); listing pages
(indexes, tags, archives, pagination), profiles and short pages are skipped with their reason and
only read for links. A page the server answers 304 for is not analysed again: its last verdict
and links are replayed from the ``memo``.

Re-crawls: a page that this crawl's sitemap lists with the ``<lastmod>`` it had when last judged is
not requested at all: its verdict and links are replayed from the ``memo`` (counted as
``listed_unchanged``, then kept as "same" or skipped with its last reason), unless robots.txt now
disallows it or the memo's trust in lastmods has expired. A link or feed entry to a page of a site
whose sitemaps this crawl reads waits (``_held``) until they are read (the crawl's first idle
moment), so that it cannot beat the sitemap to a page it would settle, and every page is judged
with the lastmod its sitemap gave before the page was requested; seeds never wait, as they bring
robots.txt and with it the sitemaps.

Ledger: every URL requested is counted once as fetched, unchanged (304) or failed, and ends as
exactly one of kept, quarantined or skipped (``results``); feeds, sitemaps and robots.txt are
skipped as discovery files. robots.txt is fetched once per site: when robots.txt is obeyed, the
spider takes the Sitemap lines from the parser Scrapy's RobotsTxtMiddleware built
(``robots_parsed`` signal) instead of fetching the file a second time.

Scope: a source covers its own origin (scheme, host *and port*) under its URL's path — the site
for ``https://blog.example/``, one author for ``https://medium.com/@wren``. Feeds and sitemaps of
a source may list anything on its origin. Depth counts link hops from a seed (a source URL or a
feed/sitemap entry); a page budget caps the whole crawl. Links past a limit are counted, not
fetched.

Every request carries an errback, so a failure of any kind (HTTP status, timeout, robots.txt,
size cap, redirect loop, redirect out of scope) reaches the quarantine with its reason. Sitemaps
are parsed with Scrapy's SitemapSpider building blocks (``Sitemap``, ``sitemap_urls_from_robots``)
rather than by subclassing it, because SitemapSpider's own requests carry no errback: a broken
sitemap would vanish without a trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urlsplit

import scrapy
from scrapy import Request, signals
from scrapy.exceptions import (
    CannotResolveHostError,
    DontCloseSpider,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import HtmlResponse, Response, TextResponse, XmlResponse
from scrapy.selector import Selector
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots
from twisted.internet import error as twisted_errors
from twisted.python.failure import Failure
from w3lib.url import canonicalize_url

from twin_ops.collect.articles import PageResult
from twin_ops.collect.extract import Article
from twin_ops.collect.memo import PageMemo, PageVerdict, body_hash
from twin_ops.collect.politeness import OutOfScope, RedirectLoop
from twin_ops.collect.results import Collected
from twin_ops.domain import (
    DocumentKind,
    Platform,
    QuarantineReason,
    RawDocument,
    SkipReason,
    SourceType,
    sha256_text,
    utc_now,
)

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

# (html, url, fallback platform, listed by a feed) → the page's analysis, computed off the reactor.
Extract = Callable[[str, str, Platform, bool], Awaitable[PageResult]]

PLATFORM_OF = {
    SourceType.ARTICLE: Platform.BLOG,
    SourceType.FEED: Platform.BLOG,
    SourceType.SITEMAP: Platform.BLOG,
    SourceType.MEDIUM: Platform.MEDIUM,
    SourceType.SUBSTACK: Platform.SUBSTACK,
}
FOLLOWS_LINKS = frozenset({SourceType.ARTICLE, SourceType.MEDIUM, SourceType.SUBSTACK})
READS_ROBOTS_SITEMAPS = frozenset({SourceType.ARTICLE})
READS_SITEMAPS = READS_ROBOTS_SITEMAPS | {SourceType.SITEMAP}
# A NUL byte in the first block means a binary body, whatever the Content-Type claims.
BINARY_SNIFF_BYTES = 8192
GZIP_MAGIC = b"\x1f\x8b"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class WebSource:
    index: int
    type: SourceType
    url: str

    @property
    def origin(self) -> str:
        return origin(self.url)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    def covers(self, url: str) -> bool:
        """Is ``url`` a page this source may fetch?"""
        if origin(url) != self.origin:
            return False
        if self.type in {SourceType.FEED, SourceType.SITEMAP}:
            return True  # a site's feed or sitemap may list any page of the site
        path = urlsplit(url).path or "/"
        prefix = self.path if self.path.endswith("/") else self.path + "/"
        return path == self.path or path.startswith(prefix)


def classify(failure: Failure) -> tuple[QuarantineReason, str, int | None]:
    """A download failure → (reason, detail, HTTP status if any)."""
    error = failure.value
    if isinstance(error, HttpError):
        status = error.response.status
        return QuarantineReason.HTTP_ERROR, f"HTTP {status}", status
    if isinstance(error, RedirectLoop):
        return QuarantineReason.REDIRECT_LOOP, str(error), None
    if isinstance(error, OutOfScope):
        return QuarantineReason.OFFSITE_REDIRECT, str(error), None
    if isinstance(error, IgnoreRequest):
        message = str(error)
        if "robots.txt" in message:
            return QuarantineReason.ROBOTS_DISALLOWED, message, None
        if "max redirections" in message:
            return QuarantineReason.TOO_MANY_REDIRECTS, message, None
        return QuarantineReason.FETCH_ERROR, message, None
    if isinstance(error, DownloadTimeoutError | twisted_errors.TimeoutError):
        return QuarantineReason.TIMEOUT, str(error) or "download timed out", None
    if isinstance(error, DownloadCancelledError) and "max size" in str(error):
        return QuarantineReason.TOO_LARGE, str(error), None
    connection_errors = (
        DownloadConnectionRefusedError,
        CannotResolveHostError,
        ResponseDataLossError,
        twisted_errors.ConnectError,
        twisted_errors.ConnectionLost,
        twisted_errors.ConnectionDone,
    )
    if isinstance(error, connection_errors):
        return QuarantineReason.CONNECTION_ERROR, f"{type(error).__name__}: {error}", None
    return QuarantineReason.FETCH_ERROR, f"{type(error).__name__}: {error}", None


class TwinSpider(scrapy.Spider):
    name = "twin-ops"

    def __init__(
        self,
        *,
        author_id: str,
        sources: list[WebSource],
        max_depth: int,
        max_pages: int,
        max_page_bytes: int,
        min_content_chars: int,
        collected: Collected,
        extract: Extract,
        memo: PageMemo | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.author_id = author_id
        self.sources = sources
        self.max_depth = max_depth
        self.max_pages = max_pages
        self.max_page_bytes = max_page_bytes
        self.min_content_chars = min_content_chars
        self.collected = collected
        self.extract = extract
        self.memo = memo
        self._robots_from_middleware = False
        self._robots_cached: dict[str, bool] = {}  # site → its robots.txt answer came from the HTTP cache
        self._origins = {source.origin for source in sources}
        self._scheduled: set[str] = set()  # canonical URLs requested
        self._requested: set[str] = set()  # the same, as written in links (a fast first check)
        self._skipped: set[tuple[str, str]] = set()
        # Page requests that wait for this crawl's sitemaps (canonical URL → request), and the sites
        # whose sitemaps may still come (until the crawl first runs out of requests). Only when a
        # sitemap's lastmod may settle a page (memo trust > 0).
        self._held: dict[str, Request] = {}
        trusts = memo is not None and memo.trust_lastmod_s > 0
        self._sitemap_sites = {source.origin for source in sources if trusts and source.type in READS_SITEMAPS}
        self._robots: dict[str, Any] = {}  # site → the robots.txt parser Scrapy built (when obeyed)
        self._robots_agent = ""

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> TwinSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if crawler.settings.getbool("ROBOTSTXT_OBEY"):
            spider._robots_from_middleware = True
            spider._robots_agent = crawler.settings.get("ROBOTSTXT_USER_AGENT") or crawler.settings.get("USER_AGENT")
            crawler.signals.connect(spider.on_robots_parsed, signal=signals.robots_parsed)
            crawler.signals.connect(spider.on_response, signal=signals.response_received)
        crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
        return spider

    # --- scope and scheduling -------------------------------------------------------------------

    def in_scope(self, request: Request) -> bool:
        """Checked for every outgoing request (redirects included) by ScopeMiddleware."""
        index = request.meta.get("twin_source")
        if index is None:  # robots.txt requests Scrapy makes on its own
            return origin(request.url) in self._origins
        source = self.sources[index]
        if request.meta.get("twin_role") == "page":
            return source.covers(request.url)
        return origin(request.url) == source.origin

    def _skip(self, key: str, reason: str) -> None:
        if (key, reason) not in self._skipped:  # count each URL once per reason
            self._skipped.add((key, reason))
            self.collected.skipped(reason)

    def _request(
        self, url: str, source: WebSource, role: str, hops: int, *, feed_item: bool = False, may_wait: bool = True
    ) -> Request | None:
        """A request for ``url``, or None when it is not to be made now (seen, out of scope, past a
        limit, or a page that waits for this crawl's sitemaps: ``may_wait``, see ``_held``)."""
        # Most links on a page were met on other pages already (a re-crawl replays ~20 per page
        # from the memo, already absolute and fragment-free): the cheapest check first.
        if url in self._requested:
            return None
        url = urldefrag(url.strip())[0]
        if url in self._requested:
            return None
        if urlsplit(url).scheme not in {"http", "https"}:
            return None  # mailto:, javascript:, ...
        key = canonicalize_url(url)
        if key in self._scheduled:
            self._requested.add(url)
            return None
        allowed = source.covers(url) if role == "page" else origin(url) == source.origin
        if not allowed:
            self._skip(key, "out_of_scope")
            return None
        if hops > self.max_depth:
            self._skip(key, "depth_limit")
            return None
        if len(self._scheduled) >= self.max_pages:
            self._skip(key, "page_budget")
            return None
        self._scheduled.add(key)
        self._requested.add(url)
        callbacks = {
            "page": self.parse_page,
            "feed": self.parse_feed,
            "sitemap": self.parse_sitemap,
            "robots": self.parse_robots,
        }
        request = Request(
            url,
            callback=callbacks[role],
            errback=self.on_error,
            # Fewer hops first, so a page reachable by a short path is not first met past the limit.
            priority=-hops,
            meta={"twin_source": source.index, "twin_role": role, "twin_hops": hops, "twin_feed_item": feed_item},
        )
        if role == "page" and may_wait and self._waits_for_sitemap(url):
            self._held[key] = request
            return None
        return request

    async def start(self) -> AsyncIterator[Request]:
        roles = {SourceType.FEED: "feed", SourceType.SITEMAP: "sitemap"}
        for source in self.sources:
            # A seed never waits: its request brings robots.txt, and with it the sitemaps.
            request = self._request(source.url, source, roles.get(source.type, "page"), 0, may_wait=False)
            if request is not None:
                yield request
            if source.type in READS_ROBOTS_SITEMAPS and not self._robots_from_middleware:
                robots = self._request(f"{source.origin}/robots.txt", source, "robots", 0)
                if robots is not None:
                    yield robots

    def _waits_for_sitemap(self, url: str) -> bool:
        """Should this page request wait until its site's sitemaps are read (which may settle it)?"""
        return origin(url) in self._sitemap_sites

    def _robots_allow(self, url: str) -> bool:
        """Does robots.txt (as read this crawl) allow ``url``? A page settled without a request must
        not slip past a Disallow added since the last crawl."""
        if not self._robots_from_middleware:
            return True  # not obeyed
        parser = self._robots.get(origin(url))
        return parser is not None and parser.allowed(url, self._robots_agent)

    def _source(self, response: Response) -> WebSource:
        return self.sources[response.meta["twin_source"]]

    def _seen(self, response: Response) -> None:
        self.collected.fetched(unchanged="cached" in response.flags)

    def _quarantine(self, response: Response, reason: QuarantineReason, detail: str) -> None:
        self.collected.quarantined(
            response.url, reason, detail, status=response.status, source_url=self._source(response).url, web=True
        )

    def _skip_page(self, url: str, source: WebSource, reason: SkipReason, detail: str) -> None:
        self.collected.skipped_page(url, reason, detail, source_url=source.url)

    def _follow(
        self, source: WebSource, hops: int, links: tuple[str, ...], feeds: tuple[str, ...]
    ) -> Iterator[Request]:
        if source.type not in FOLLOWS_LINKS:
            return
        for link in links:
            request = self._request(link, source, "page", hops + 1)
            if request is not None:
                yield request
        for feed in feeds:
            request = self._request(feed, source, "feed", 0)
            if request is not None:
                yield request

    # --- callbacks ------------------------------------------------------------------------------

    async def parse_page(self, response: Response) -> list[Request]:
        # A coroutine returning a list, not an async generator: Scrapy runs an async generator's
        # output through CONCURRENT_ITEMS (100) tasks per callback, most of a page's overhead.
        self._seen(response)
        source = self._source(response)
        if isinstance(response, XmlResponse):  # a link to a feed or a sitemap
            root = response.xpath("local-name(/*)").get() or ""
            parse = self._sitemap if root in {"urlset", "sitemapindex"} else self._feed
            return list(parse(response))
        if not isinstance(response, HtmlResponse) or b"\x00" in response.body[:BINARY_SNIFF_BYTES]:
            content_type = (response.headers.get("Content-Type") or b"none").decode("latin-1")
            self._quarantine(response, QuarantineReason.NON_TEXT, f"not an HTML page (Content-Type {content_type})")
            return []
        hops = response.meta.get("twin_hops", 0)
        digest = body_hash(response.body)
        if "cached" in response.flags and self.memo is not None:
            verdict = self.memo.replay(response.url, digest)
            if verdict is not None:  # a 304 for a page judged before: no parsing, no extraction
                self._replay(response.url, source, verdict)
                return list(self._follow(source, hops, verdict.links, verdict.feeds))
        feed_item = bool(response.meta.get("twin_feed_item"))
        result = await self.extract(response.text, response.url, PLATFORM_OF[source.type], feed_item)
        verdict = PageVerdict(body_sha256=digest, links=result.links, feeds=result.feeds)
        if result.keep:
            document = self._keep(result.article, response, source)
            if document is not None:
                verdict = PageVerdict(
                    body_sha256=digest,
                    document_id=document.id,
                    content_hash=document.content_hash,
                    links=result.links,
                    feeds=result.feeds,
                )
            else:
                verdict = None  # quarantined: judged afresh next time
        else:
            reason = result.reason or SkipReason.NOT_AN_ARTICLE
            self._skip_page(response.url, source, reason, result.detail)
            verdict = PageVerdict(
                body_sha256=digest, reason=reason.value, detail=result.detail, links=result.links, feeds=result.feeds
            )
        if self.memo is not None and verdict is not None:
            self.memo.record(response.url, verdict)
        return list(self._follow(source, hops, result.links, result.feeds))

    def _replay(self, url: str, source: WebSource, verdict: PageVerdict) -> None:
        """The outcome of a page judged by an earlier crawl and unchanged since: the same again."""
        if verdict.document_id:
            self.collected.same_document()
        else:
            self._skip_page(url, source, verdict.skip_reason or SkipReason.NOT_AN_ARTICLE, verdict.detail)

    def _keep(self, article: Article, response: Response, source: WebSource) -> RawDocument | None:
        if len(article.body.strip()) < self.min_content_chars:
            detail = f"{len(article.body.strip())} characters of text extracted"
            self._quarantine(response, QuarantineReason.EMPTY_EXTRACTION, detail)
            return None
        content = article.content
        metadata = {
            "subtitle": article.subtitle,
            "published_at": article.published_at,
            "tags": article.tags,
            "fetched_url": response.url,
            "source_type": source.type.value,
        }
        document = RawDocument(
            id=f"{self.author_id}:{article.canonical_url}",
            author_id=self.author_id,
            kind=DocumentKind.ARTICLE,
            platform=article.platform,
            source_url=article.canonical_url,
            title=article.title,
            content=content,
            fetched_at=utc_now(),
            content_hash=sha256_text(content),
            metadata=metadata,
        )
        self.collected.document(document, web=True)
        return document

    def parse_feed(self, response: Response) -> Iterator[Request]:
        self._seen(response)
        yield from self._feed(response)

    def _feed(self, response: Response) -> Iterator[Request]:
        source = self._source(response)
        feed = Selector(text=response.text, type="xml") if isinstance(response, TextResponse) else None
        if feed is not None:
            feed.remove_namespaces()
        if feed is None or not feed.xpath("/rss|/feed|/RDF"):
            self._quarantine(response, QuarantineReason.INVALID_FEED, "not an RSS or Atom document")
            return
        links = feed.xpath("//item/link/text()").getall()  # RSS 2.0 and RSS 1.0 (RDF)
        links += feed.xpath("//entry/link[not(@rel) or @rel='alternate']/@href").getall()  # Atom
        self._skip_page(response.url, source, SkipReason.DISCOVERY_FILE, f"feed: {len(links)} entries")
        for link in links:
            request = self._request(response.urljoin(link.strip()), source, "page", 0, feed_item=True)
            if request is not None:
                yield request

    def parse_sitemap(self, response: Response) -> Iterator[Request]:
        self._seen(response)
        yield from self._sitemap(response)

    def _sitemap(self, response: Response) -> Iterator[Request]:
        source = self._source(response)
        body = response.body
        try:
            if body[:2] == GZIP_MAGIC:
                body = gunzip(body, max_size=self.max_page_bytes)
            sitemap = Sitemap(body)
            kind = sitemap.type
            entries = list(sitemap)
        except Exception as exc:  # lxml gives no root at all for non-XML bodies
            self._quarantine(response, QuarantineReason.INVALID_SITEMAP, f"{type(exc).__name__}: {exc}")
            return
        if kind not in {"urlset", "sitemapindex"}:
            self._quarantine(response, QuarantineReason.INVALID_SITEMAP, f"unexpected root element {kind!r}")
            return
        self._skip_page(response.url, source, SkipReason.DISCOVERY_FILE, f"{kind}: {len(entries)} entries")
        for entry in entries:
            if not entry.get("loc"):
                continue
            url = response.urljoin(entry["loc"])
            if kind == "urlset":
                yield from self._listed(url, entry.get("lastmod", ""), source)
            else:
                request = self._request(url, source, "sitemap", 0)
                if request is not None:
                    yield request

    def _listed(self, url: str, lastmod: str, source: WebSource) -> Iterator[Request]:
        """A page this crawl's sitemap lists: settled without a request when it has the lastmod it
        had when last judged (and robots.txt still allows it), otherwise requested."""
        url = urldefrag(url.strip())[0]
        lastmod = lastmod.strip()
        if self.memo is not None and lastmod:
            self.memo.listed(url, lastmod)
        # A link may have got here first and be waiting for this sitemap (``_held``).
        held = self._held.pop(canonicalize_url(url), None) if self._held else None
        request = held or self._request(url, source, "page", 0, may_wait=False)
        if request is None:
            return  # requested already, or past a limit (counted)
        verdict = None
        if self.memo is not None and lastmod and self._robots_allow(url):
            verdict = self.memo.unchanged_since(url, lastmod)
        if verdict is None:
            yield request
            return
        self.collected.listed_unchanged()
        self._replay(url, source, verdict)
        yield from self._follow(source, 0, verdict.links, verdict.feeds)

    def parse_robots(self, response: Response) -> Iterator[Request]:
        """robots.txt fetched by the spider itself: only when Scrapy does not obey (and so read) it."""
        self._seen(response)
        source = self._source(response)
        urls = (
            sitemap_urls_from_robots(response.body, base_url=response.url) if isinstance(response, TextResponse) else []
        )
        self._skip_page(response.url, source, SkipReason.DISCOVERY_FILE, "robots.txt, read for its Sitemap lines")
        yield from self._sitemaps(source, list(urls))

    def on_response(self, response: Response, request: Request, **_: Any) -> None:
        """Notes whether RobotsTxtMiddleware's own robots.txt request was answered 304 (for the ledger)."""
        if request.meta.get("dont_obey_robotstxt") and "twin_source" not in request.meta:
            self._robots_cached[origin(request.url)] = "cached" in response.flags

    def on_robots_parsed(self, robotparser: Any, request: Request) -> None:
        """Scrapy fetched and parsed a site's robots.txt: queue its Sitemap lines for the sources there."""
        site = origin(request.url)
        self._robots[site] = robotparser
        sitemaps = list(getattr(getattr(robotparser, "rp", None), "sitemaps", []) or [])
        readers = [source for source in self.sources if source.type in READS_ROBOTS_SITEMAPS and source.origin == site]
        if not readers:
            return
        self.collected.fetched(unchanged=self._robots_cached.pop(site, False))
        self._skip_page(
            f"{site}/robots.txt", readers[0], SkipReason.DISCOVERY_FILE, f"robots.txt: {len(sitemaps)} sitemaps"
        )
        for source in readers:
            for sitemap_request in self._sitemaps(source, sitemaps):
                self.crawler.engine.crawl(sitemap_request)

    def _sitemaps(self, source: WebSource, urls: list[str]) -> Iterator[Request]:
        for url in urls:
            request = self._request(url, source, "sitemap", 0)
            if request is not None:
                yield request

    def on_idle(self) -> None:
        """Out of requests, so every sitemap has been read: requests still waiting for one go now."""
        self._sitemap_sites = set()
        held, self._held = list(self._held.values()), {}
        for request in held:
            self.crawler.engine.crawl(request)
        if held:
            raise DontCloseSpider

    def on_error(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        self.collected.failed()
        source = self.sources[request.meta["twin_source"]]
        if request.meta.get("twin_role") == "robots":
            # A site without robots.txt allows everything.
            self._skip_page(request.url, source, SkipReason.DISCOVERY_FILE, "no robots.txt")
            return
        reason, detail, status = classify(failure)
        # The URL as linked, before any redirects; the detail names where the chain ended.
        first = [*request.meta.get("redirect_urls", []), request.url][0]
        if first != request.url:
            detail = f"{detail} (after redirects to {request.url})"
        self.collected.quarantined(first, reason, detail, status=status, source_url=source.url, web=True)
