"""Scrapy components for polite, bounded crawling that Scrapy does not ship as-is.

* ``ScopeMiddleware`` — every outgoing request, redirects included, must stay inside the scope of
  the source it came from. Scrapy's OffsiteMiddleware compares host names only (another port on
  the same host passes) and cannot know a source's path prefix (``medium.com/@wren`` must not
  wander into other authors' pages).
* ``BackoffRetryMiddleware`` — Scrapy retries immediately; this waits before each retry with
  exponential backoff and full jitter, so a struggling server gets room to recover.
* ``LoopAwareRedirectMiddleware`` — a redirect back to a URL already in the chain is a loop. Scrapy
  would hand it to the duplicate filter, which drops it without a trace; here it fails the
  request, so the page lands in quarantine with its reason.
* ``RevalidationAwareAutoThrottle`` — AutoThrottle only lets a 200 lower the delay. On a nightly
  re-crawl nearly every answer is a 304 (cheap revalidation), which would pin the delay at its
  start value for the whole run; a 304 is a normal answer here and counts like a 200.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response
from w3lib.url import canonicalize_url

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class OutOfScope(IgnoreRequest):
    """A request (typically a redirect target) outside its source's scope."""


class RedirectLoop(IgnoreRequest):
    """A redirect to a URL already visited in the same redirect chain."""


class ScopeMiddleware:
    """Refuse requests the spider's ``in_scope(request)`` rejects (runs before robots.txt)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ScopeMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        spider = self.crawler.spider
        if spider is not None and hasattr(spider, "in_scope") and not spider.in_scope(request):
            raise OutOfScope(f"{request.url} is outside the source's scope")


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that sleeps uniform(0, min(max, base * 2^(n-1))) before retry n."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.base = settings.getfloat("TWIN_RETRY_BACKOFF_BASE")
        self.cap = settings.getfloat("TWIN_RETRY_BACKOFF_MAX")

    async def _after_backoff(self, result: Request | Response | None) -> Request | Response | None:
        if isinstance(result, Request):
            attempt = result.meta.get("retry_times", 1)
            # Sleeping here holds one of the crawl's concurrent slots; retries are rare, and
            # slowing down while a server struggles is the point.
            await asyncio.sleep(random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1))))
        return result

    async def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        result = super().process_response(request, response)
        await self._after_backoff(result)
        return result

    async def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:  # type: ignore[override]
        result = super().process_exception(request, exception)
        await self._after_backoff(result)
        return result


class LoopAwareRedirectMiddleware(RedirectMiddleware):
    def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        result = super().process_response(request, response)
        if isinstance(result, Request):
            chain = {canonicalize_url(url) for url in [*request.meta.get("redirect_urls", []), request.url]}
            if canonicalize_url(result.url) in chain:
                raise RedirectLoop(f"redirect loop: {result.url} redirects back into its own chain")
        return result


class RevalidationAwareAutoThrottle(AutoThrottle):
    def _adjust_delay(self, slot: Any, latency: float, response: Response) -> None:
        if response.status == 304:
            response = response.replace(status=200)
        super()._adjust_delay(slot, latency, response)
