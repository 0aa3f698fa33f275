"""What the last crawl concluded about each page, so a page answered 304 is not analysed again.

The HTTP cache hands the spider the stored body of a page the server confirmed unchanged; without
this memo the spider would parse and extract it again, which is most of a crawl's CPU time. The
memo records, per fetched URL, a hash of the body it judged, the verdict (kept as document X with
content hash H, or skipped with a reason), and the links and feeds it found. A re-crawl replays a
verdict only when the body is byte-identical, the document is still in the crawl store with the
same hash, and the rules and extractor are the ones that made the verdict (``fingerprint``);
anything else is analysed afresh.

A re-crawl need not even ask the server about a page a sitemap lists with the same ``<lastmod>``
as when the page was last judged: ``unchanged_since`` replays its verdict without a request. Each
verdict stores the lastmod this crawl's sitemaps gave its URL when the server answered for it (the
spider reads the sitemaps before it requests any page they list, so a lastmod never postdates the
body it is stored with) and when that was (a 200 or a 304, ``checked_at``); an unchanged lastmod is
trusted for at most ``trust_lastmod_s`` after that (``collect.trust_sitemap_lastmod_days``), since
some sites never update their lastmods. Any other lastmod, earlier ones included, means "ask the
server".

Stored as one JSON file per author under ``<state_dir>/collect/pages/``, written atomically at the
end of a crawl (pages this crawl did not reach are dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
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
    lastmod: str = ""  # the URL's <lastmod> in the sitemaps of the crawl that made or confirmed it
    checked_at: float = 0.0  # when the server last answered for the page (epoch seconds)

    @property
    def skip_reason(self) -> SkipReason | None:
        return SkipReason(self.reason) if self.reason else None


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def memo_file(state: Path, author_id: str) -> Path:
    return state / "collect" / "pages" / f"{author_id}.json"


class PageMemo:
    def __init__(self, path: Path, fingerprint: str, stored: dict[str, str], trust_lastmod_s: float = 0.0) -> None:
        """``stored``: the crawl store's document ids → content hashes; ``trust_lastmod_s``: 0 = never
        skip a request on the strength of a sitemap's lastmod."""
        self.path = path
        self.fingerprint = fingerprint
        self.stored = stored
        self.trust_lastmod_s = trust_lastmod_s
        self.previous: dict[str, PageVerdict] = {}
        self.current: dict[str, PageVerdict] = {}
        self.lastmods: dict[str, str] = {}  # URL → <lastmod> in this crawl's sitemaps
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

    def _holds(self, verdict: PageVerdict | None) -> bool:
        if verdict is None:
            return False
        # A kept page's document must still be in the store unchanged, or it is extracted again.
        return not verdict.document_id or self.stored.get(verdict.document_id) == verdict.content_hash

    def replay(self, url: str, body_sha256: str) -> PageVerdict | None:
        """The last verdict on this exact body (the server answered 304), if it still holds."""
        verdict = self.previous.get(url)
        if verdict is None or verdict.body_sha256 != body_sha256 or not self._holds(verdict):
            return None
        self.record(url, verdict)
        return verdict

    def record(self, url: str, verdict: PageVerdict) -> None:
        """A verdict the server just confirmed (a 200 judged now, or a 304 replayed), with the
        lastmod this crawl's sitemaps give the page (none: no later lastmod can vouch for it)."""
        self.current[url] = replace(verdict, lastmod=self.lastmods.get(url, ""), checked_at=time.time())

    def listed(self, url: str, lastmod: str) -> None:
        """This crawl's sitemap lists ``url`` with ``lastmod`` (before the page is requested)."""
        self.lastmods[url] = lastmod

    def unchanged_since(self, url: str, lastmod: str) -> PageVerdict | None:
        """The last verdict on a page the sitemap lists with the same lastmod as then, if it still
        holds and the server confirmed it recently enough; no request needed."""
        verdict = self.previous.get(url)
        if not lastmod or verdict is None or verdict.lastmod != lastmod or not self._holds(verdict):
            return None
        if time.time() - verdict.checked_at > self.trust_lastmod_s:
            return None  # trusted long enough: ask the server again (a 304 renews the trust)
        self.current[url] = verdict  # the same lastmod, and checked_at kept: the server was not asked
        return verdict

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # vars(), not asdict(): asdict deep-copies every link tuple, a tenth of a re-crawl's time.
        pages = {url: vars(verdict) for url, verdict in sorted(self.current.items())}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps({"fingerprint": self.fingerprint, "pages": pages}), encoding="utf-8")
        os.replace(temporary, self.path)
