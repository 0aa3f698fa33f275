"""One author's whole crawl: web sources, repositories and exports into the crawl store.

``crawl_author`` is what ``twin-ops crawl`` calls (and, later, the collect DAG task through the
same CLI). It runs the web crawl in this process, so call it once per process (see ``web``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twin_ops.collect import store
from twin_ops.collect.authors import LOCAL_TYPES, REPO_TYPES, WEB_TYPES
from twin_ops.collect.exports import collect_export
from twin_ops.collect.repos import collect_repository
from twin_ops.collect.results import Collected, Counts
from twin_ops.config import Params, Paths
from twin_ops.domain import Author

logger = logging.getLogger(__name__)


@dataclass
class CrawlReport:
    author_id: str
    store: Path
    quarantine_file: Path
    skipped_file: Path
    counts: Counts
    new: list[str] = field(default_factory=list)
    revised: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: int = 0
    total: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line. For the web crawl, fetched + unchanged (304) + unchanged per sitemap + failed
        = kept + quarantined + skipped."""
        c = self.counts
        kept = len(self.new) + len(self.revised) + self.unchanged + self.duplicates
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(c.pages_skipped.items()))
        passed = ", ".join(f"{n} {reason}" for reason, n in sorted(c.skipped.items()))
        return (
            f"crawl {self.author_id}: {c.fetched} pages fetched, {c.unchanged} unchanged (304), "
            f"{c.listed_unchanged} unchanged per sitemap (not requested), {c.failed} failed, "
            f"{c.files} files read; {kept} kept ({len(self.new)} new, {len(self.revised)} revised, "
            f"{self.unchanged} same, {self.duplicates} duplicates), {c.quarantined} quarantined, "
            f"{sum(c.pages_skipped.values())} skipped ({skipped or 'none'}; see {self.skipped_file.name}), "
            f"{sum(c.skipped.values())} links/files not followed ({passed or 'none'}); "
            f"{self.total} documents in {self.store} ({self.seconds:.1f}s)"
        )


def crawl_author(
    author: Author, params: Params, paths: Paths, on_progress: Callable[[Counts], None] | None = None
) -> CrawlReport:
    started = time.monotonic()
    collected = Collected(author.id, on_progress)
    folder = store.store_dir(paths, author.id)
    documents = store.load_documents(folder)  # read once: the crawl's memo and the merge both need it
    web = [source for source in author.sources if source.type in WEB_TYPES]
    if web:
        from twin_ops.collect.web import crawl_web  # Scrapy and Twisted load only when needed

        stored = {document.id: document.content_hash for document in documents.values()}
        crawl_web(author.id, web, params, paths, collected, stored)
    clones = paths.state / "collect" / "repos" / author.id
    for source in author.sources:
        if source.type in REPO_TYPES:
            collect_repository(source, author.id, params.collect.git, clones, collected)
    paths.state.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.state, prefix="collect-") as scratch:
        for index, source in enumerate(author.sources):
            workdir = Path(scratch) / str(index)  # a zipped export is unpacked here
            workdir.mkdir()
            if source.type in LOCAL_TYPES:
                collect_export(
                    source, author.id, params.collect.files, params.collect.min_content_chars, workdir, collected
                )
    merged = store.merge(folder, collected.documents, documents)
    report = CrawlReport(
        author_id=author.id,
        store=folder,
        quarantine_file=store.write_quarantine(folder, collected.quarantine),
        skipped_file=store.write_skipped(folder, collected.skipped_pages),
        counts=collected.counts,
        new=merged.new,
        revised=merged.revised,
        # Pages answered 304 or settled by their sitemap lastmod whose stored document is unchanged
        # were not extracted again.
        unchanged=merged.unchanged + collected.counts.same,
        duplicates=merged.duplicates,
        total=merged.total,
        seconds=time.monotonic() - started,
    )
    logger.info(report.summary())
    return report
