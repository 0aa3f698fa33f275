"""Cleaning: raw documents → cleaned documents, per document kind.

Prose (articles, posts) is normalised: unicode (NFKC), invisible characters, whitespace inside
lines, boilerplate lines ("Subscribe", cookie notices) and tracking parameters in links. Fenced
code blocks inside prose and whole source files (repositories) are kept byte-for-byte apart from
line endings and trailing spaces: a regex that "cleans" punctuation would break the code.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twin_ops.config import FeaturesParams
from twin_ops.domain import CleanedDocument, DocumentKind, RawDocument

FENCE = re.compile(r"^(```|~~~)")
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
URL = re.compile(r"https?://[^\s)\]>\"']+")


class Cleaner:
    def __init__(self, params: FeaturesParams) -> None:
        self.boilerplate = [re.compile(pattern, re.IGNORECASE) for pattern in params.boilerplate_patterns]
        self.tracking = set(params.tracking_parameters)

    def strip_tracking(self, url: str) -> str:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in self.tracking]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def clean_prose_line(self, line: str) -> str | None:
        """One prose line, or None when it is boilerplate."""
        line = unicodedata.normalize("NFKC", line).translate(INVISIBLE)
        line = re.sub(r"[ \t]+", " ", line).strip()
        if any(pattern.match(line) for pattern in self.boilerplate):
            return None
        return URL.sub(lambda match: self.strip_tracking(match.group(0)), line)

    def clean_prose(self, text: str) -> str:
        """Normalise prose paragraphs; copy fenced code blocks untouched."""
        out: list[str] = []
        in_code = False
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if FENCE.match(line.strip()):
                in_code = not in_code
                out.append(line.strip())
                continue
            if in_code:
                out.append(line.rstrip())
                continue
            cleaned = self.clean_prose_line(line)
            if cleaned is not None:
                out.append(cleaned)
        joined = "\n".join(out)
        return re.sub(r"\n{3,}", "\n\n", joined).strip()

    @staticmethod
    def clean_code(text: str) -> str:
        lines = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return "\n".join(line.rstrip() for line in lines).strip("\n")

    def clean(self, raw: RawDocument) -> CleanedDocument | None:
        """The cleaned document, or None when nothing is left (reported by the caller)."""
        if raw.kind == DocumentKind.REPOSITORY:
            text = self.clean_code(raw.content)
        else:
            text = self.clean_prose(raw.content)
        if not text.strip():
            return None
        return CleanedDocument(
            id=raw.id,
            author_id=raw.author_id,
            kind=raw.kind,
            platform=raw.platform,
            source_url=raw.source_url,
            title=unicodedata.normalize("NFKC", raw.title).strip(),
            text=text,
            raw_content_hash=raw.content_hash,
            published_at=_published_at(raw),
        )


def _published_at(raw: RawDocument) -> datetime | None:
    value = raw.metadata.get("published_at") or raw.metadata.get("date")
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
