"""Run the spider in-process, with Scrapy settings derived from params.yaml.

Reactor: ``CrawlerProcess`` starts Twisted's (asyncio) reactor, and a Twisted reactor cannot be
restarted in the same process. So one process runs at most one crawl: the CLI (``twin-ops crawl``)
is that process, tests and the DAG run crawls through it as subprocesses, and a second call in one
interpreter raises ``CrawlError`` instead of hanging. All web sources of an author share that one
crawl (one spider, one politeness budget per site, one duplicate filter).

Page analysis (parsing, trafilatura's extraction, the article rule, link extraction: 5-10 ms a
page) is CPU-bound, and Scrapy runs callbacks on the reactor's single thread, where it would stall
the downloads. So it runs in a process pool beside the reactor: ``collect.extract_workers``
processes, or with 0 one per core the crawler does not use itself (at least one). Not a thread
pool: trafilatura is mostly Python and holds the GIL (``benchmarks/crawl.py`` measures the analysis
alone in both pools: neither beats one thread on 2 busy cores), and analysis threads would take the
GIL from the reactor thread, which must keep reading sockets.
Workers are spawned, not forked — forking a process with a running reactor is unsafe — so, as with
any spawning code, the calling program's main module must be import-safe (``__main__`` guard).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twin_ops.collect.articles import ArticleRules, PageResult, analyse_page
from twin_ops.collect.memo import PageMemo, memo_file
from twin_ops.collect.results import Collected
from twin_ops.collect.spider import Extract, TwinSpider, WebSource
from twin_ops.config import Params, Paths
from twin_ops.domain import Platform, QuarantineReason, Source
from twin_ops.errors import TwinOpsError

POLITENESS = "twin_ops.collect.politeness"
# Bump when extraction or the article rule changes in a way the settings do not show: page verdicts
# remembered from earlier crawls are then recomputed.
EXTRACTION_VERSION = 2
logger = logging.getLogger(__name__)
_crawled_in_this_process = False


class CrawlError(TwinOpsError, RuntimeError):
    """A crawl that cannot run (e.g. a second one in the same process)."""


def http_cache_dir(paths: Paths, author_id: str) -> Path:
    return paths.state / "collect" / "httpcache" / author_id


def scrapy_settings(params: Params, cache_dir: Path) -> dict[str, Any]:
    c = params.collect
    return {
        "BOT_NAME": "twin-ops",
        "USER_AGENT": c.user_agent,
        "ROBOTSTXT_OBEY": c.obey_robots_txt,
        "ROBOTSTXT_USER_AGENT": c.robots_user_agent,
        "CONCURRENT_REQUESTS": c.concurrent_requests,
        "CONCURRENT_REQUESTS_PER_DOMAIN": c.concurrent_requests_per_domain,
        # Callbacks return requests, never items; Scrapy still starts CONCURRENT_ITEMS tasks to
        # process each response's output, which at its default (100) costs more than the page.
        "CONCURRENT_ITEMS": 1,
        "DOWNLOAD_DELAY": c.download_delay_s,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": c.autothrottle_start_delay_s,
        "AUTOTHROTTLE_MAX_DELAY": c.autothrottle_max_delay_s,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": c.autothrottle_target_concurrency,
        "DOWNLOAD_TIMEOUT": c.download_timeout_s,
        "DOWNLOAD_MAXSIZE": c.max_page_bytes,
        "DOWNLOAD_WARNSIZE": c.max_page_bytes,  # no warning short of the limit; over it = quarantine
        "RETRY_ENABLED": True,
        "RETRY_TIMES": c.retry_times,
        "RETRY_GIVE_UP_LOG_LEVEL": "INFO",  # a page that gives up is in the quarantine file
        "TWIN_RETRY_BACKOFF_BASE": c.retry_backoff_base_s,
        "TWIN_RETRY_BACKOFF_MAX": c.retry_backoff_max_s,
        "REDIRECT_MAX_TIMES": c.max_redirects,
        "HTTPCACHE_ENABLED": c.http_cache,
        "HTTPCACHE_POLICY": "scrapy.extensions.httpcache.RFC2616Policy",
        # One SQLite file per author instead of seven files per page (see collect.sqlite_dbm).
        "HTTPCACHE_STORAGE": "scrapy.extensions.httpcache.DbmCacheStorage",
        "HTTPCACHE_DBM_MODULE": "twin_ops.collect.sqlite_dbm",
        "HTTPCACHE_DIR": str(cache_dir),
        "COOKIES_ENABLED": False,  # public pages only; no session state between requests
        "TELNETCONSOLE_ENABLED": False,  # it would open a port
        "LOG_LEVEL": c.log_level,
        "DOWNLOADER_MIDDLEWARES": {
            f"{POLITENESS}.ScopeMiddleware": 50,  # before robots.txt (100): no foreign robots fetches
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            f"{POLITENESS}.BackoffRetryMiddleware": 550,
            "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
            f"{POLITENESS}.LoopAwareRedirectMiddleware": 600,
        },
        "EXTENSIONS": {
            "scrapy.extensions.throttle.AutoThrottle": None,
            f"{POLITENESS}.RevalidationAwareAutoThrottle": 0,
        },
    }


def extract_workers(configured: int) -> int:
    """``collect.extract_workers``, with 0 meaning one per core beyond the reactor's own (at least one)."""
    return configured or max(1, (os.cpu_count() or 1) - 1)


@contextmanager
def extractor(workers: int, rules: ArticleRules) -> Iterator[Extract]:
    """An awaitable ``analyse_page`` running in a pool of ``workers`` spawned processes.

    The pool starts on the first page that needs analysing: a re-crawl that only meets pages
    answered 304 (replayed from the memo) never starts it.
    """
    pools: list[ProcessPoolExecutor] = []

    def pool() -> ProcessPoolExecutor:
        if not pools:
            pools.append(ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")))
        return pools[0]

    async def pooled(html: str, url: str, platform: Platform, feed_item: bool) -> PageResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool(), analyse_page, html, url, platform, feed_item, rules)

    try:
        yield pooled
    finally:
        for started in pools:
            started.shutdown(cancel_futures=True)


def fingerprint(params: Params, rules: ArticleRules) -> str:
    """What a page verdict depends on besides the page: a memo made under other rules is ignored."""
    import trafilatura

    facts = [repr(rules), params.collect.min_content_chars, trafilatura.__version__, EXTRACTION_VERSION]
    return hashlib.sha256(repr(facts).encode()).hexdigest()[:16]


def crawl_web(
    author_id: str,
    sources: list[Source],
    params: Params,
    paths: Paths,
    collected: Collected,
    stored: dict[str, str] | None = None,
) -> None:
    """Crawl the author's web sources into ``collected``; blocks until the crawl is done.

    ``stored`` maps the crawl store's document ids to content hashes: a page answered 304 whose
    document is there unchanged is counted as kept without being analysed again (``memo``).
    """
    global _crawled_in_this_process
    if _crawled_in_this_process:
        raise CrawlError("a Twisted reactor cannot restart: run each crawl in its own process (`twin-ops crawl`)")
    _crawled_in_this_process = True
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess

    def on_spider_error(failure: Any, response: Any, spider: Any) -> None:
        # A bug or an unexpected page while handling a response: recorded, never lost.
        detail = f"{type(failure.value).__name__}: {failure.value}"
        collected.quarantined(response.url, QuarantineReason.PROCESSING_ERROR, detail, status=response.status, web=True)

    c = params.collect
    rules = ArticleRules(**c.articles.model_dump())
    memo = PageMemo(
        memo_file(paths.state, author_id),
        fingerprint(params, rules),
        stored or {},
        trust_lastmod_s=c.trust_sitemap_lastmod_days * 86400,
    )
    process = CrawlerProcess(scrapy_settings(params, http_cache_dir(paths, author_id)))
    with extractor(extract_workers(c.extract_workers), rules) as extract:
        crawler = process.create_crawler(TwinSpider)
        crawler.signals.connect(on_spider_error, signal=signals.spider_error)
        process.crawl(
            crawler,
            author_id=author_id,
            sources=[WebSource(index, source.type, source.url) for index, source in enumerate(sources)],
            max_depth=c.max_depth,
            max_pages=c.max_pages,
            max_page_bytes=c.max_page_bytes,
            min_content_chars=c.min_content_chars,
            collected=collected,
            extract=extract,
            memo=memo,
        )
        process.start()
    memo.save()
    if not collected.counts.web_balanced:
        counts = collected.counts
        logger.warning(
            "crawl ledger does not balance: %d fetched + %d unchanged + %d unchanged per sitemap + %d failed"
            " != %d outcomes",
            counts.fetched,
            counts.unchanged,
            counts.listed_unchanged,
            counts.failed,
            counts.web_outcomes,
        )
