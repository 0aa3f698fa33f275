"""One author's whole crawl: web sources, repositories and exports into the crawl store.

``crawl_author`` is what ``twin-ops crawl`` calls (and, later, the collect DAG task through the
same CLI). It runs the web crawl in this process, so call it once per process (see ``web``).
"""

from __future__ import annotations

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


@dataclass
class CrawlReport:
    author_id: str
    store: Path
    quarantine_file: Path
    counts: Counts
    new: list[str] = field(default_factory=list)
    revised: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: int = 0
    total: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        skipped = sum(self.counts.skipped.values())
        return (
            f"crawl {self.author_id}: {self.counts.fetched} pages fetched, {self.counts.unchanged} unchanged (304), "
            f"{self.counts.files} files read, "
            f"{len(self.new)} new, {len(self.revised)} revised, {self.unchanged} same, "
            f"{self.duplicates} duplicates, {self.counts.quarantined} quarantined, {skipped} links/files skipped; "
            f"{self.total} documents in {self.store} ({self.seconds:.1f}s)"
        )


def crawl_author(
    author: Author, params: Params, paths: Paths, on_progress: Callable[[Counts], None] | None = None
) -> CrawlReport:
    started = time.monotonic()
    collected = Collected(author.id, on_progress)
    web = [source for source in author.sources if source.type in WEB_TYPES]
    if web:
        from twin_ops.collect.web import crawl_web  # Scrapy and Twisted load only when needed

        crawl_web(author.id, web, params, paths, collected)
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
    folder = store.store_dir(paths, author.id)
    merged = store.merge(folder, collected.documents)
    quarantine_file = store.write_quarantine(folder, collected.quarantine)
    return CrawlReport(
        author_id=author.id,
        store=folder,
        quarantine_file=quarantine_file,
        counts=collected.counts,
        new=merged.new,
        revised=merged.revised,
        unchanged=merged.unchanged,
        duplicates=merged.duplicates,
        total=merged.total,
        seconds=time.monotonic() - started,
    )
