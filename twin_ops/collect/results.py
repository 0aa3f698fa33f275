"""What one crawl gathered: documents, quarantined and skipped items, counters, and a progress hook.

Every collector (the spider, git, exports) reports here, so the CLI's progress display and the
final summary see one set of numbers whatever the source type.

The web crawl keeps a ledger: every URL it requests is answered (``fetched``, or ``unchanged`` =
304) or fails (``failed``: an HTTP error, a timeout, robots.txt, ...), and every page a sitemap
lists with the lastmod it had when last judged is settled without a request (``listed_unchanged``:
the sitemap, not the server, said "not modified"; see ``memo``). Each ends as exactly one of kept
(a document, or a known document confirmed unchanged: "same"), quarantined (with the reason) or
skipped (fetched, but not one piece of writing: a listing page, a feed, ... with the reason; a
settled page keeps its last reason), so
``fetched + unchanged + listed_unchanged + failed == kept + quarantined + skipped``
(``Counts.web_balanced``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from twin_ops.domain import QuarantinedItem, QuarantineReason, RawDocument, SkippedItem, SkipReason, utc_now


@dataclass
class Counts:
    fetched: int = 0  # pages downloaded
    unchanged: int = 0  # pages the server confirmed unchanged (304, served from the HTTP cache)
    files: int = 0  # repository and export files read
    documents: int = 0
    quarantined: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # links/files not followed, by reason
    pages_skipped: Counter[str] = field(default_factory=Counter)  # fetched, not a document, by SkipReason
    same: int = 0  # pages answered 304 or settled by lastmod whose stored document is known unchanged
    listed_unchanged: int = 0  # pages not requested: a sitemap gives the lastmod they had when last judged
    # The web ledger (see the module docstring).
    failed: int = 0
    web_kept: int = 0
    web_quarantined: int = 0

    @property
    def web_outcomes(self) -> int:
        return self.web_kept + self.web_quarantined + sum(self.pages_skipped.values())

    @property
    def web_balanced(self) -> bool:
        return self.fetched + self.unchanged + self.listed_unchanged + self.failed == self.web_outcomes


@dataclass
class Collected:
    author_id: str
    on_progress: Callable[[Counts], None] | None = None
    documents: list[RawDocument] = field(default_factory=list)
    quarantine: list[QuarantinedItem] = field(default_factory=list)
    skipped_pages: list[SkippedItem] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)

    def _changed(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counts)

    def fetched(self, *, unchanged: bool = False) -> None:
        if unchanged:
            self.counts.unchanged += 1
        else:
            self.counts.fetched += 1
        self._changed()

    def listed_unchanged(self) -> None:
        """A page settled by its sitemap lastmod, without a request (its outcome follows)."""
        self.counts.listed_unchanged += 1
        self._changed()

    def file_read(self) -> None:
        self.counts.files += 1
        self._changed()

    def failed(self) -> None:
        """A web request that got no usable answer (its quarantine record follows)."""
        self.counts.failed += 1

    def document(self, document: RawDocument, *, web: bool = False) -> None:
        self.documents.append(document)
        self.counts.documents += 1
        self.counts.web_kept += web
        self._changed()

    def same_document(self) -> None:
        """A page answered 304 (or settled by lastmod) whose document is stored unchanged: kept, not re-extracted."""
        self.counts.same += 1
        self.counts.web_kept += 1
        self._changed()

    def skipped_page(self, url: str, reason: SkipReason, detail: str = "", *, source_url: str = "") -> None:
        """A fetched page that is not a document, recorded in ``skipped.jsonl`` with the reason."""
        item = SkippedItem(
            author_id=self.author_id, url=url, reason=reason, detail=detail[:500], source_url=source_url, at=utc_now()
        )
        self.skipped_pages.append(item)
        self.counts.pages_skipped[reason.value] += 1
        self._changed()

    def quarantined(
        self,
        url: str,
        reason: QuarantineReason,
        detail: str = "",
        *,
        status: int | None = None,
        source_url: str = "",
        web: bool = False,
    ) -> None:
        self.quarantine.append(
            QuarantinedItem(
                author_id=self.author_id,
                url=url,
                reason=reason,
                detail=detail[:500],
                status=status,
                source_url=source_url,
                at=utc_now(),
            )
        )
        self.counts.quarantined += 1
        self.counts.web_quarantined += web
        self._changed()

    def skipped(self, reason: str) -> None:
        self.counts.skipped[reason] += 1
