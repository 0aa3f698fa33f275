"""Raw documents built straight from the demo site's Markdown sources (no crawl needed).

Feature and quality tests use these so they do not depend on the crawler; the crawl tests check
separately that crawling the served site yields the same texts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from twin_ops.domain import DocumentKind, Platform, RawDocument, sha256_text

CONTENT = Path(__file__).resolve().parents[1] / "include" / "demo_site" / "content"


def read_post(path: Path) -> tuple[dict, str]:
    _, header, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(header), body.strip()


def raw_document(path: Path, author_id: str, body: str | None = None) -> RawDocument:
    meta, text = read_post(path)
    content = f"{meta['title']}\n\n{body if body is not None else text}"
    url = f"http://127.0.0.1:8000/posts/{meta['slug']}/"
    return RawDocument(
        id=f"{author_id}:{url}",
        author_id=author_id,
        kind=DocumentKind.ARTICLE,
        platform=Platform(meta.get("platform", "blog")),
        source_url=url,
        title=meta["title"],
        content=content,
        fetched_at=datetime(2026, 11, 1, tzinfo=UTC),
        content_hash=sha256_text(content),
        metadata={"published_at": str(meta["date"]), "signature": meta.get("signature", "")},
    )


def wren_posts() -> list[Path]:
    return sorted((CONTENT / "posts").glob("*.md"))


def juno_posts() -> list[Path]:
    return sorted((CONTENT / "other_author").glob("*.md"))
