"""What the last crawl concluded about each page, so a page answered 304 is not analysed again.

The HTTP cache hands the spider the stored body of a page the server confirmed unchanged; without
this memo the spider would parse and extract it again, which is most of a crawl's CPU time. The
memo records, per fetched URL, a hash of the body it judged, the verdict (kept as document X with
content hash H, or skipped with a reason), and the links and feeds it found. A re-crawl replays a
verdict only when the body is byte-identical, the document is still in the crawl store with the
same hash, and the rules and extractor are the ones that made the verdict (``fingerprint``);
anything else is analysed afresh.

Stored as one JSON file per author under ``<state_dir>/collect/pages/``, written atomically at the
end of a crawl (pages this crawl did not reach are dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from twin_ops.domain import SkipReason


@dataclass(frozen=True)
class PageVerdict:
    body_sha256: str
    document_id: str = ""  # kept pages
    content_hash: str = ""
    reason: str = ""  # skipped pages: a SkipReason value
    detail: str = ""
    links: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()

    @property
    def skip_reason(self) -> SkipReason | None:
        return SkipReason(self.reason) if self.reason else None


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def memo_file(state: Path, author_id: str) -> Path:
    return state / "collect" / "pages" / f"{author_id}.json"


class PageMemo:
    def __init__(self, path: Path, fingerprint: str, stored: dict[str, str]) -> None:
        """``stored``: the crawl store's document ids → content hashes."""
        self.path = path
        self.fingerprint = fingerprint
        self.stored = stored
        self.previous: dict[str, PageVerdict] = {}
        self.current: dict[str, PageVerdict] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}
            if data.get("fingerprint") == fingerprint:
                self.previous = {
                    url: PageVerdict(**{**entry, "links": tuple(entry["links"]), "feeds": tuple(entry["feeds"])})
                    for url, entry in data.get("pages", {}).items()
                }

    def replay(self, url: str, body_sha256: str) -> PageVerdict | None:
        """The last verdict on this exact body, if it still holds."""
        verdict = self.previous.get(url)
        if verdict is None or verdict.body_sha256 != body_sha256:
            return None
        if verdict.document_id and self.stored.get(verdict.document_id) != verdict.content_hash:
            return None  # the store lost or changed the document: extract again
        self.current[url] = verdict
        return verdict

    def record(self, url: str, verdict: PageVerdict) -> None:
        self.current[url] = verdict

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pages = {url: asdict(verdict) for url, verdict in sorted(self.current.items())}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps({"fingerprint": self.fingerprint, "pages": pages}), encoding="utf-8")
        os.replace(temporary, self.path)
