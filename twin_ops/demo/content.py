"""The demo authors' writing as raw documents, straight from the demo site's Markdown sources (no
crawl needed), and indexing it: for benchmarks, tests and a quick look at retrieval.

The crawl tests check separately that crawling the served site yields the same texts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import frontmatter
import yaml
from pydantic import BaseModel, ConfigDict, Field

from twin_ops.config import Params, Paths, project_root
from twin_ops.demo.site import CONTENT_DIR
from twin_ops.domain import DocumentKind, Platform, RawDocument, sha256_text, write_jsonl

WREN, JUNO = "wren-halvorsen", "juno-marsh"
FETCHED_AT = datetime(2026, 11, 1, tzinfo=UTC)  # fixed: the same documents hash the same every run


def content_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / CONTENT_DIR


def read_post(path: Path) -> tuple[dict, str]:
    """(front matter, Markdown body) of one post."""
    post = frontmatter.load(path)
    return dict(post.metadata), post.content.strip()


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
        fetched_at=FETCHED_AT,
        content_hash=sha256_text(content),
        metadata={"published_at": str(meta["date"]), "signature": meta.get("signature", "")},
    )


def wren_posts(root: Path | None = None) -> list[Path]:
    return sorted((content_dir(root) / "posts").glob("*.md"))


def juno_posts(root: Path | None = None) -> list[Path]:
    return sorted((content_dir(root) / "other_author").glob("*.md"))


def demo_documents(root: Path | None = None) -> dict[str, list[RawDocument]]:
    """Both demo authors' posts, by author id."""
    return {
        WREN: [raw_document(post, WREN) for post in wren_posts(root)],
        JUNO: [raw_document(post, JUNO) for post in juno_posts(root)],
    }


def index_demo_authors(params: Params, paths: Paths, work: Path, embedder=None) -> dict[str, list[RawDocument]]:
    """Both demo authors' posts into params' aliases, through the feature stage as in production
    (raw data staged under ``work``, never the project's data folder). Returns the documents."""
    from twin_ops.features.embed import Embedder
    from twin_ops.features.pipeline import run_features
    from twin_ops.services.weaviate import connect

    own_paths = paths.model_copy(update={"data": work / "data", "reports": work / "reports"})
    embedder = embedder or Embedder(params.features.embedding_model, "cpu", params.features.embedding_batch_size)
    documents = demo_documents(paths.root)
    with connect(params) as client:
        for author, docs in documents.items():
            write_jsonl(own_paths.raw_documents(author) / "blog.jsonl", docs)
            run_features(author, params, own_paths, client=client, embedder=embedder)
    return documents


def drop_index(params: Params) -> None:
    """Delete params' feature aliases and the collections behind them."""
    from twin_ops.features import index
    from twin_ops.services.weaviate import connect

    with connect(params) as client:
        for alias in (params.features.documents_alias, params.features.chunks_alias):
            target = index.alias_target(client, alias)
            client.alias.delete(alias_name=alias)
            if target:
                client.collections.delete(target)


class Conversation(BaseModel):
    """A two-turn chat with a demo author's twin and the post (its slug) the second question should
    be answered from. ``follow_up``: the second question only makes sense with the first;
    ``new_topic``: it stands alone, about another post (the first must not pull retrieval back)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    author: str
    kind: Literal["follow_up", "new_topic"] = "follow_up"
    article: str
    first: str = Field(min_length=1)
    follow_up: str = Field(min_length=1)

    def url(self) -> str:
        return f"http://127.0.0.1:8000/posts/{self.article}/"


def demo_conversations(root: Path | None = None) -> list[Conversation]:
    """include/demo/conversations.yaml: the set conversation-aware retrieval is measured on."""
    raw = yaml.safe_load(((root or project_root()) / "include" / "demo" / "conversations.yaml").read_text())
    return [Conversation.model_validate(item) for item in raw]
