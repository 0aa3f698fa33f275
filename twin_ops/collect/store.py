"""The crawl store: ``<data>/crawl/<author>/<platform>.jsonl`` plus ``quarantine.jsonl``.

The crawl writes here; ``twin-ops validate raw_documents --author <id> --publish`` checks the
folder with Great Expectations and only then copies it to ``<data>/raw/<author>/`` (same file
layout), so a bad crawl never reaches the published raw data (``quality.frames.staged_location``
names this same folder; a unit test keeps the two in step).

Each platform file holds the latest revision of every document ever collected, one line each,
sorted by id, so the same crawl writes the same bytes:

* a document whose content hash is unchanged keeps its stored record as is (not re-emitted);
* a changed one replaces it as ``revision + 1`` under the same id (the id is author + canonical
  URL); DVC keeps the earlier versions of the file;
* a document the crawl did not reach this time is kept: an outage must not delete writing;
* a new document whose content is already stored under another URL is a duplicate, not stored;
* a platform file none of whose documents changed is not rewritten (same bytes, and a re-crawl of
  an unchanged site writes no document file at all).

``quarantine.jsonl`` holds what the latest crawl set aside, with reasons, and ``skipped.jsonl`` the
pages it fetched and left out on purpose (listing pages, feeds, ...), with reasons; both are
rewritten each run.
Every file is written atomically (``domain.write_jsonl``: temp file, fsync, rename).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from twin_ops.config import Paths
from twin_ops.domain import QuarantinedItem, RawDocument, SkippedItem, read_jsonl, write_jsonl

QUARANTINE_FILE = "quarantine.jsonl"
SKIPPED_FILE = "skipped.jsonl"
NOT_DOCUMENTS = frozenset({QUARANTINE_FILE, SKIPPED_FILE})


def store_dir(paths: Paths, author_id: str) -> Path:
    return paths.crawl_store(author_id)


def platform_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.jsonl") if path.name not in NOT_DOCUMENTS)


def load_documents(folder: Path) -> dict[str, RawDocument]:
    return {document.id: document for path in platform_files(folder) for document in read_jsonl(path, RawDocument)}


@dataclass
class MergeResult:
    new: list[str] = field(default_factory=list)  # ids
    revised: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: int = 0
    total: int = 0  # documents in the store after the merge


def merge(folder: Path, collected: list[RawDocument], stored: dict[str, RawDocument] | None = None) -> MergeResult:
    """Fold one crawl's documents into the store and rewrite the platform files that changed.

    ``stored``: the store's documents if the caller has loaded them already (not modified).
    """
    stored = load_documents(folder) if stored is None else dict(stored)
    owner_of_hash = {document.content_hash: document.id for document in stored.values()}
    result = MergeResult()
    changed: set[str] = set()  # platforms whose file must be rewritten
    seen_now: set[str] = set()
    for document in collected:
        if document.id in seen_now:
            result.duplicates += 1  # reached twice in one crawl (two URLs, one canonical)
            continue
        seen_now.add(document.id)
        previous = stored.get(document.id)
        if previous is not None and previous.content_hash == document.content_hash:
            result.unchanged += 1
            continue
        if owner_of_hash.get(document.content_hash, document.id) != document.id:
            result.duplicates += 1  # the same text under another URL
            continue
        if previous is None:
            stored[document.id] = document
            result.new.append(document.id)
        else:
            stored[document.id] = document.model_copy(update={"revision": previous.revision + 1})
            result.revised.append(document.id)
            changed.add(previous.platform.value)  # it may have moved to another platform's file
        changed.add(document.platform.value)
        owner_of_hash[document.content_hash] = document.id
    by_platform: dict[str, list[RawDocument]] = {platform: [] for platform in changed}
    for document in sorted(stored.values(), key=lambda d: d.id):
        if document.platform.value in changed:
            by_platform[document.platform.value].append(document)
    for platform, documents in by_platform.items():
        write_jsonl(folder / f"{platform}.jsonl", documents)
    result.total = len(stored)
    return result


def write_quarantine(folder: Path, items: list[QuarantinedItem]) -> Path:
    path = folder / QUARANTINE_FILE
    write_jsonl(path, sorted(items, key=lambda item: (item.url, item.reason)))
    return path


def write_skipped(folder: Path, items: list[SkippedItem]) -> Path:
    path = folder / SKIPPED_FILE
    write_jsonl(path, sorted(items, key=lambda item: (item.url, item.reason)))
    return path
