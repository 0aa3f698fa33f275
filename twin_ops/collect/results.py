"""What one crawl gathered: documents, quarantined items, counters, and a progress hook.

Every collector (the spider, git, exports) reports here, so the CLI's progress display and the
final summary see one set of numbers whatever the source type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from twin_ops.domain import QuarantinedItem, QuarantineReason, RawDocument, utc_now


@dataclass
class Counts:
    fetched: int = 0  # pages downloaded
    unchanged: int = 0  # pages the server confirmed unchanged (304, served from the HTTP cache)
    files: int = 0  # repository and export files read
    documents: int = 0
    quarantined: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # links/files not followed, by reason


@dataclass
class Collected:
    author_id: str
    on_progress: Callable[[Counts], None] | None = None
    documents: list[RawDocument] = field(default_factory=list)
    quarantine: list[QuarantinedItem] = field(default_factory=list)
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

    def file_read(self) -> None:
        self.counts.files += 1
        self._changed()

    def document(self, document: RawDocument) -> None:
        self.documents.append(document)
        self.counts.documents += 1
        self._changed()

    def quarantined(
        self,
        url: str,
        reason: QuarantineReason,
        detail: str = "",
        *,
        status: int | None = None,
        source_url: str = "",
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
        self._changed()

    def skipped(self, reason: str) -> None:
        self.counts.skipped[reason] += 1
