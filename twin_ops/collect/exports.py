"""Local exports → documents.

* ``file``: one file, or a folder of them, in Markdown (YAML front matter honoured), plain text
  or HTML (main text extracted like a web page).
* ``linkedin_export``: the folder or ``.zip`` LinkedIn's "download your data" produces. Its
  ``Articles/`` hold one HTML file per article; ``Shares.csv`` holds the posts, one row each
  (``ShareCommentary`` is the text, ``ShareLink`` the post's URL).

Same rules as every collector: extension allow-list, size cap, binary and undecodable files
quarantined with the reason, symlinks leaving the export quarantined.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import frontmatter
import yaml

from twin_ops.collect.extract import extract_article
from twin_ops.collect.results import Collected
from twin_ops.config import FileCollectParams
from twin_ops.domain import (
    DocumentKind,
    Platform,
    QuarantineReason,
    RawDocument,
    Source,
    SourceType,
    sha256_text,
    utc_now,
)

BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first block means binary
HTML_SUFFIXES = frozenset({".html", ".htm"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
LINKEDIN_SHARES = "shares.csv"


def _document(author_id: str, kind: DocumentKind, platform: Platform, url: str, title: str, body: str, **meta: object):
    content = f"{title}\n\n{body}" if title else body
    return RawDocument(
        id=f"{author_id}:{url}",
        author_id=author_id,
        kind=kind,
        platform=platform,
        source_url=url,
        title=title,
        content=content,
        fetched_at=utc_now(),
        content_hash=sha256_text(content),
        metadata=dict(meta),
    )


def _markdown(text: str, fallback_title: str) -> tuple[str, str, dict]:
    """(title, body, front matter) of a Markdown file; a broken front matter block is read as text."""
    try:
        meta, body = frontmatter.parse(text)
    except (yaml.YAMLError, ValueError):
        meta, body = {}, text
    body = body.strip()
    title = str(meta.get("title") or "")
    if not title and body.startswith("# "):
        title, _, body = body.partition("\n")
        title, body = title[2:].strip(), body.strip()
    return title or fallback_title, body, meta


def _shares(path: Path, author_id: str, min_chars: int, collected: Collected, source: Source) -> None:
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    for number, row in enumerate(rows, start=1):
        text = (row.get("ShareCommentary") or "").strip().strip('"')
        link = (row.get("ShareLink") or "").strip()
        url = link if link.startswith(("http://", "https://")) else f"{path.as_uri()}#row-{number}"
        collected.file_read()
        if len(text) < min_chars:
            collected.skipped("share_without_text")  # reshares with no words of the author's own
            continue
        collected.document(
            _document(
                author_id,
                DocumentKind.POST,
                Platform.LINKEDIN,
                url,
                "",
                text,
                published_at=row.get("Date"),
                source_type=source.type.value,
            )
        )


def collect_export(
    source: Source,
    author_id: str,
    settings: FileCollectParams,
    min_content_chars: int,
    scratch: Path,
    collected: Collected,
) -> None:
    linkedin = source.type == SourceType.LINKEDIN_EXPORT
    platform = Platform.LINKEDIN if linkedin else Platform.FILE
    path = Path(source.url)
    if path.is_file() and path.suffix.lower() == ".zip":
        unpacked = scratch / path.stem
        with zipfile.ZipFile(path) as archive:
            archive.extractall(unpacked)  # zipfile drops absolute and ".." member paths
        path = unpacked
    root = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
    extensions = {extension.lower() for extension in settings.extensions}
    for file in files:
        relative = file.relative_to(path) if file != path else Path(file.name)
        if any(part.startswith(".") for part in relative.parts):
            continue  # hidden files and folders (.DS_Store, .git)
        url = file.absolute().as_uri()
        if file.is_symlink() and root not in file.resolve().parents and file.resolve() != root:
            detail = f"symlink to {file.resolve()}, outside the export"
            collected.quarantined(url, QuarantineReason.SYMLINK_OUTSIDE, detail, source_url=source.url)
            continue
        if linkedin and file.name.lower() == LINKEDIN_SHARES:
            _shares(file, author_id, min_content_chars, collected, source)
            continue
        suffix = file.suffix.lower()
        if suffix not in extensions:
            collected.skipped("extension")
            continue
        size = file.stat().st_size
        if size > settings.max_file_bytes:
            detail = f"{size} bytes > {settings.max_file_bytes}"
            collected.quarantined(url, QuarantineReason.TOO_LARGE, detail, source_url=source.url)
            continue
        data = file.read_bytes()
        collected.file_read()
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            collected.quarantined(url, QuarantineReason.NON_TEXT, "binary content", source_url=source.url)
            continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            collected.quarantined(url, QuarantineReason.UNREADABLE, f"not UTF-8: {exc}", source_url=source.url)
            continue
        meta: dict = {}
        if suffix in HTML_SUFFIXES:
            article = extract_article(text, url, platform)
            title, body = article.title or file.stem, article.body
            meta = {"subtitle": article.subtitle, "published_at": article.published_at, "tags": article.tags}
        elif suffix in MARKDOWN_SUFFIXES:
            title, body, front = _markdown(text, file.stem)
            meta = {key: str(front[key]) for key in ("subtitle", "date") if key in front}
        else:
            title, body = file.stem, text.strip()
        if len(body) < min_content_chars:
            detail = f"{len(body)} characters of text"
            collected.quarantined(url, QuarantineReason.EMPTY_EXTRACTION, detail, source_url=source.url)
            continue
        collected.document(
            _document(
                author_id, DocumentKind.ARTICLE, platform, url, title, body, source_type=source.type.value, **meta
            )
        )
