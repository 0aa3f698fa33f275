"""Hybrid search (BM25 + vector) over the chunks alias, filtered to one author."""

from __future__ import annotations

from dataclasses import dataclass

from twin_ops.config import FeaturesParams
from twin_ops.errors import InputError


class BadQuery(InputError, ValueError):
    """The query or its options are invalid; the message says which."""


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    document_id: str
    author_id: str
    title: str
    url: str
    text: str
    position: int
    score: float


def search(
    client,
    embedder,
    params: FeaturesParams,
    query: str,
    author: str | None,
    k: int | None = None,
    alpha: float | None = None,
    *,
    exclude_document: str | None = None,
) -> list[SearchHit]:
    """Top-k chunks for the query; ``alpha`` 0 is keyword only, 1 vector only.

    ``exclude_document`` leaves one document's chunks out (evaluation's held-out post).
    """
    from weaviate.classes.query import MetadataQuery

    k = params.search.default_k if k is None else k
    alpha = params.search.default_alpha if alpha is None else alpha
    if not query.strip():
        raise BadQuery("query is empty")
    if not 1 <= k <= params.search.max_k:
        raise BadQuery(f"k must be between 1 and {params.search.max_k}, got {k}")
    if not 0 <= alpha <= 1:
        raise BadQuery(f"alpha must be between 0 and 1, got {alpha}")
    vector = embedder.encode([query])[0].tolist()
    result = client.collections.get(params.chunks_alias).query.hybrid(
        query=query,
        vector=vector,
        alpha=alpha,
        limit=k,
        query_properties=["text", "title"],
        filters=_filters(author, exclude_document),
        return_metadata=MetadataQuery(score=True),
    )
    return [
        SearchHit(
            chunk_id=obj.properties["chunk_id"],
            document_id=obj.properties["document_id"],
            author_id=obj.properties["author_id"],
            title=obj.properties["title"],
            url=obj.properties["source_url"],
            text=obj.properties["text"],
            position=int(obj.properties["position"]),
            score=float(obj.metadata.score or 0.0),
        )
        for obj in result.objects
    ]


def _filters(author: str | None, exclude_document: str | None):
    from weaviate.classes.query import Filter

    parts = []
    if author:
        parts.append(Filter.by_property("author_id").equal(author))
    if exclude_document:
        parts.append(Filter.by_property("document_id").not_equal(exclude_document))
    return Filter.all_of(parts) if len(parts) > 1 else parts[0] if parts else None
