"""Crawl throughput (pages/s) against a plain sequential baseline, measured in the same command.

Site: a generated blog of N posts (default 2,000) plus its paginated index and tag pages, rendered
from the demo author's posts by ``twin_ops.demo.site.build_synthetic_site`` and served on
127.0.0.1 by ``twin_ops.demo.server.SiteServer`` in a separate process (so the server never
competes for this process's GIL).

* baseline — ``requests.Session`` fetching the sitemap, then every URL in it one after another,
  running the crawler's own page analysis (``collect.articles.analyse_page``: extraction, the
  article rule, links) on every page, inline.
* twin-ops crawl — ``crawl_author`` with the production params (robots.txt, AutoThrottle, retries,
  RFC 2616 HTTP cache, discovery from robots.txt → sitemap and links, analysis in a process pool
  sized from the cores), an author whose one source is the site root.
* re-crawl — the same crawl again on the unchanged site: no page analysed again; the pages the
  sitemap lists with an unchanged <lastmod> are not even requested, the rest (robots.txt, the
  sitemap, the feed, the source page) are revalidated (304). Its speed-up over the first crawl is
  printed too (target ≥ 5×).
* the same baseline and crawl against a smaller site whose server waits ``--latency-ms`` before
  every answer, as a site across the internet does (target ≥ 2×; on loopback ≥ 1×).
* pools — the analysis alone on the site's pages: inline, in a thread pool and in a process pool
  of the same size (does lxml + trafilatura release the GIL enough for threads? no).

Each crawl runs in its own spawned process (a Twisted reactor runs once per process); its
pages/s counts pages accounted for (downloaded, revalidated, or confirmed unchanged by the sitemap)
over the crawl's wall time, which includes starting the extraction workers and AutoThrottle's
cautious start, not imports.
Run: .venv/bin/python benchmarks/crawl.py [--pages 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from lxml import etree  # noqa: E402
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed  # noqa: E402

from twin_ops.collect.articles import analyse_page  # noqa: E402
from twin_ops.collect.web import extract_workers  # noqa: E402
from twin_ops.config import load_params  # noqa: E402
from twin_ops.demo.site import CONTENT_DIR, build_synthetic_site  # noqa: E402
from twin_ops.domain import Platform  # noqa: E402

AUTHOR = "bench-author"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(root: str, port: int, latency_s: float) -> None:
    from twin_ops.demo.server import SiteServer

    SiteServer(Path(root), port=port, latency_s=latency_s).serve_forever()


def start_site(folder: Path, posts: int, latency_s: float, posts_per_page: int) -> tuple[str, int, Any]:
    """Build an N-post site for a free port and serve it from a spawned process."""
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    pages = build_synthetic_site(folder, site, ROOT / CONTENT_DIR, posts, posts_per_page)
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(str(folder), port, latency_s), daemon=True
    )
    server.start()
    wait_for(site)
    return site, len(pages), server


@retry(retry=retry_if_exception_type(requests.ConnectionError), wait=wait_fixed(0.1), stop=stop_after_delay(30))
def wait_for(site: str) -> None:
    """Until the server accepts connections."""
    requests.get(f"{site}/robots.txt", timeout=5)


def measure(site: str, work: str, workers: int) -> list[tuple[str, int, int, float]]:
    started = time.perf_counter()
    base_pages, base_articles = baseline(site)
    rows = [("requests + analysis, sequential (baseline)", base_pages, base_articles, time.perf_counter() - started)]
    rows.append((f"twin-ops crawl ({workers} extraction processes)", *run_crawl(site, f"{work}/a")))
    rows.append(("re-crawl of the unchanged site", *run_crawl(site, f"{work}/a")))
    return rows


def table(title: str, rows: list[tuple[str, int, int, float]]) -> None:
    base_rate = rows[0][1] / rows[0][3]
    print(f"\n{title}")
    print(f"{'method':<48} {'pages':>6} {'docs':>6} {'seconds':>8} {'pages/s':>8} {'ratio':>6}")
    for name, fetched, documents, seconds in rows:
        rate = fetched / seconds
        print(f"{name:<48} {fetched:>6} {documents:>6} {seconds:>8.1f} {rate:>8.1f} {rate / base_rate:>6.2f}")
    print(f"re-crawl / first crawl: {rows[1][3] / rows[2][3]:.1f}x faster")


def baseline(site: str) -> tuple[int, int]:
    """(pages fetched, articles kept), sequentially, with the crawler's analysis of every page."""
    session = requests.Session()
    sitemap = session.get(f"{site}/sitemap.xml", timeout=30)
    urls = [loc.text for loc in etree.fromstring(sitemap.content).iter("{*}loc")]
    articles = 0
    for url in urls:
        page = session.get(url, timeout=30)
        result = analyse_page(page.text, url, Platform.BLOG)
        articles += result.keep and bool(result.article.body)
    return len(urls) + 1, articles


def pools(site: str, workers: int, sample: int) -> None:
    """The analysis alone, on ``sample`` pages: inline, threads, processes."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    session = requests.Session()
    sitemap = session.get(f"{site}/sitemap.xml", timeout=30)
    urls = [loc.text for loc in etree.fromstring(sitemap.content).iter("{*}loc")][:sample]
    pages = [(session.get(url, timeout=30).text, url, Platform.BLOG) for url in urls]
    print(f"\npage analysis alone, {len(pages)} pages ({workers} workers)")
    started = time.perf_counter()
    for page in pages:
        analyse_page(*page)
    inline = time.perf_counter() - started
    print(f"{'inline':<48} {len(pages) / inline:>8.1f} pages/s")
    context = multiprocessing.get_context("spawn")
    for name, executor in (
        ("thread pool", ThreadPoolExecutor(workers)),
        ("process pool (spawned, warm)", ProcessPoolExecutor(workers, mp_context=context)),
    ):
        with executor:
            list(executor.map(analyse_page, *zip(*pages[:workers], strict=True)))  # warm up
            started = time.perf_counter()
            list(executor.map(analyse_page, *zip(*pages, strict=True), chunksize=1))
            seconds = time.perf_counter() - started
        print(f"{name:<48} {len(pages) / seconds:>8.1f} pages/s ({inline / seconds:.2f}x inline)")


def crawl(site: str, work: str, results: multiprocessing.Queue) -> None:
    # Import time is not crawl time (the baseline's imports happen before its clock starts too):
    # the crawler's modules and the ones Scrapy loads by name when a crawl starts.
    import scrapy.core.downloader.handlers.http11
    import scrapy.crawler
    import scrapy.extensions.httpcache  # noqa: F401

    import twin_ops.collect.web  # noqa: F401
    from twin_ops.collect.authors import parse_author
    from twin_ops.collect.run import crawl_author
    from twin_ops.config import resolve_paths

    overrides = {"project": {"data_dir": f"{work}/data", "state_dir": f"{work}/state"}}
    params = load_params(ROOT / "params.yaml", overrides)
    paths = resolve_paths(params)
    author = parse_author(
        {"id": AUTHOR, "name": "Bench", "sources": [{"type": "article", "url": f"{site}/"}]},
        origin="benchmark",
        variables={},
        root=ROOT,
    )
    started = time.perf_counter()
    report = crawl_author(author, params, paths)
    seconds = time.perf_counter() - started
    kept = report.counts.web_kept
    counts = report.counts
    results.put((counts.fetched + counts.unchanged + counts.listed_unchanged, kept, seconds))


def run_crawl(site: str, work: str) -> tuple[int, int, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=crawl, args=(site, work, results))
    process.start()
    outcome = results.get()
    process.join()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000, help="posts in the generated site")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server delay per answer, second run")
    parser.add_argument("--latency-pages", type=int, default=300, help="posts in the second run's site")
    parser.add_argument("--pool-sample", type=int, default=300, help="pages for the pool comparison (0: skip)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    workers, per_page = extract_workers(params.collect.extract_workers), params.collect.demo_site.posts_per_page
    print(f"{multiprocessing.cpu_count()} CPUs; the server runs in its own process on the same machine")
    with tempfile.TemporaryDirectory(prefix="twin-crawl-bench-") as scratch:
        site, pages, server = start_site(Path(scratch) / "local", args.pages, 0.0, per_page)
        local = measure(site, f"{scratch}/local-work", workers)
        if args.pool_sample:
            pools(site, max(2, workers), args.pool_sample)
        server.terminate()
        site, slow_pages, server = start_site(
            Path(scratch) / "slow", args.latency_pages, args.latency_ms / 1000, per_page
        )
        slow = measure(site, f"{scratch}/slow-work", workers)
        server.terminate()
    table(f"local site: {pages} pages ({args.pages} posts + index and tag pages), no added latency", local)
    table(f"site with {args.latency_ms:.0f} ms latency per answer: {slow_pages} pages", slow)


if __name__ == "__main__":
    main()
