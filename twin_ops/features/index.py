"""The Weaviate index: documents and chunks behind aliases, updated incrementally and safely.

Serving always reads the aliases (``TwinDocuments``, ``TwinChunks``); each points at a versioned
collection (``TwinChunks_v3``). Two ways to write:

* **rebuild** fills brand-new versioned collections, then moves the aliases in one step. A crash
  before the move leaves the serving collections untouched; the half-built ones are dropped.
* **incremental** (the nightly default) changes the live collections in an order that never
  loses content: insert the new chunks, then delete the stale ones. If an insert fails, the
  objects this run inserted are deleted again, so the serving collection is as it was.

Object UUIDs are derived from chunk/document ids, so every write is an idempotent upsert.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from twin_ops.domain import Chunk, CleanedDocument
from twin_ops.errors import TwinOpsError

NAMESPACE = uuid.UUID("6f1d2c9e-3b7a-4c55-9a31-8f0e2d7b4a10")  # fixed: UUIDs must be stable forever


class ImportFailed(TwinOpsError, RuntimeError):
    """A batch import reported failed objects; the message lists them."""


def object_uuid(record_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, record_id)


def _properties(kind: str):
    from weaviate.classes.config import DataType, Property, Tokenization

    def text(name: str, search: bool = False) -> Property:
        # Ids are matched whole; prose is searchable by BM25 word tokens.
        tokenization = Tokenization.WORD if search else Tokenization.FIELD
        return Property(name=name, data_type=DataType.TEXT, tokenization=tokenization, index_searchable=search)

    common = [
        text("author_id"),
        text("platform"),
        text("kind"),
        text("document_id"),
        text("title", search=True),
        text("source_url"),
        Property(name="published_at", data_type=DataType.DATE),
    ]
    if kind == "chunks":
        return [
            *common,
            text("chunk_id"),
            text("text", search=True),
            Property(name="position", data_type=DataType.INT),
            Property(name="token_count", data_type=DataType.INT),
            text("model_name"),
            Property(name="embedding_dimension", data_type=DataType.INT),
        ]
    return [*common, text("content_hash"), Property(name="chunk_count", data_type=DataType.INT)]


def _create(client, name: str, kind: str) -> None:
    from weaviate.classes.config import Configure

    client.collections.create(
        name,
        properties=_properties(kind),
        # Vectors are ours (sentence-transformers, normalised): cosine distance, no vectorizer module.
        vector_config=Configure.Vectors.self_provided() if kind == "chunks" else None,
    )


def _next_version(client, alias: str) -> str:
    pattern = re.compile(rf"^{alias}_v(\d+)$")
    versions = [int(m.group(1)) for name in client.collections.list_all() if (m := pattern.match(name))]
    return f"{alias}_v{max(versions, default=0) + 1}"


def ensure_aliases(client, documents_alias: str, chunks_alias: str) -> None:
    """Create version 1 of each collection and its alias on first use."""
    for alias, kind in ((documents_alias, "documents"), (chunks_alias, "chunks")):
        if client.alias.get(alias_name=alias) is None:
            name = _next_version(client, alias)
            _create(client, name, kind)
            client.alias.create(alias_name=alias, target_collection=name)


def alias_target(client, alias: str) -> str | None:
    found = client.alias.get(alias_name=alias)
    return found.collection if found else None


@dataclass
class IndexedState:
    """What the index holds for one author: document hashes and chunk ids."""

    document_hashes: dict[str, str] = field(default_factory=dict)  # document id -> raw content hash
    chunk_ids: set[str] = field(default_factory=set)
    model_names: set[str] = field(default_factory=set)  # models whose vectors the index holds


def indexed_state(client, documents_alias: str, chunks_alias: str, author_id: str) -> IndexedState:
    from weaviate.classes.query import Filter

    state = IndexedState()
    by_author = Filter.by_property("author_id").equal(author_id)
    documents = client.collections.get(documents_alias)
    for obj in _fetch_all(documents, by_author, ["document_id", "content_hash"]):
        state.document_hashes[obj.properties["document_id"]] = obj.properties["content_hash"]
    chunks = client.collections.get(chunks_alias)
    for obj in _fetch_all(chunks, by_author, ["chunk_id", "model_name"]):
        state.chunk_ids.add(obj.properties["chunk_id"])
        state.model_names.add(obj.properties["model_name"])
    return state


def _fetch_all(collection, filters, properties: list[str], page: int = 1000):
    """Every object matching the filter, paged by offset (collections per author stay small)."""
    offset = 0
    while True:
        result = collection.query.fetch_objects(
            filters=filters, return_properties=properties, limit=page, offset=offset
        )
        yield from result.objects
        if len(result.objects) < page:
            return
        offset += page


def _chunk_object(chunk: Chunk, published_at, model_name: str, dimension: int) -> dict:
    return {
        "author_id": chunk.author_id,
        "platform": chunk.platform.value,
        "kind": chunk.kind.value,
        "document_id": chunk.document_id,
        "title": chunk.title,
        "source_url": chunk.source_url,
        "published_at": published_at,
        "chunk_id": chunk.id,
        "text": chunk.text,
        "position": chunk.position,
        "token_count": chunk.token_count,
        "model_name": model_name,
        "embedding_dimension": dimension,
    }


def _document_object(document: CleanedDocument, chunk_count: int) -> dict:
    return {
        "author_id": document.author_id,
        "platform": document.platform.value,
        "kind": document.kind.value,
        "document_id": document.id,
        "title": document.title,
        "source_url": document.source_url,
        "published_at": document.published_at,
        "content_hash": document.raw_content_hash,
        "chunk_count": chunk_count,
    }


def insert_batch(collection, objects: Sequence[tuple[uuid.UUID, dict, list[float] | None]]) -> None:
    """One batch; raises listing every failed object (never a silent partial import)."""
    from weaviate.classes.data import DataObject

    result = collection.data.insert_many(
        [DataObject(uuid=uid, properties=props, vector=vector) for uid, props, vector in objects]
    )
    if result.errors:
        failed = "; ".join(f"{objects[i][0]}: {error.message}" for i, error in result.errors.items())
        raise ImportFailed(f"{len(result.errors)} of {len(objects)} objects failed to import: {failed}")


def _import(collection, objects: list[tuple[uuid.UUID, dict, list[float] | None]], batch_size: int) -> None:
    for start in range(0, len(objects), batch_size):
        insert_batch(collection, objects[start : start + batch_size])


def _delete(collection, uuids: Iterable[uuid.UUID], batch_size: int = 500) -> int:
    from weaviate.classes.query import Filter

    uuids = list(uuids)
    for start in range(0, len(uuids), batch_size):
        collection.data.delete_many(where=Filter.by_id().contains_any(uuids[start : start + batch_size]))
    return len(uuids)


@dataclass
class IndexChanges:
    documents: list[CleanedDocument]  # new or changed documents to upsert
    removed_documents: list[str]  # document ids no longer in the source
    chunks: list[Chunk]  # chunks not yet in the index (to embed and insert)
    stale_chunks: list[str]  # chunk ids in the index that are no longer produced


def plan_changes(documents: list[CleanedDocument], chunks: list[Chunk], state: IndexedState) -> IndexChanges:
    current_docs = {document.id: document for document in documents}
    current_chunks = {chunk.id for chunk in chunks}
    return IndexChanges(
        documents=[d for d in documents if state.document_hashes.get(d.id) != d.raw_content_hash],
        removed_documents=sorted(set(state.document_hashes) - set(current_docs)),
        chunks=[chunk for chunk in chunks if chunk.id not in state.chunk_ids],
        stale_chunks=sorted(state.chunk_ids - current_chunks),
    )


def apply_changes(
    client,
    changes: IndexChanges,
    vectors: np.ndarray,
    all_chunks: list[Chunk],
    documents_by_id: dict[str, CleanedDocument],
    *,
    documents_alias: str,
    chunks_alias: str,
    model_name: str,
    batch_size: int,
) -> None:
    """Incremental update of the live collections: insert, then delete; roll back on failure."""
    chunks_collection = client.collections.get(chunks_alias)
    documents_collection = client.collections.get(documents_alias)
    chunk_objects = [
        (
            object_uuid(chunk.id),
            _chunk_object(chunk, documents_by_id[chunk.document_id].published_at, model_name, len(vector)),
            vector.tolist(),
        )
        for chunk, vector in zip(changes.chunks, vectors, strict=True)
    ]
    inserted: list[uuid.UUID] = []
    try:
        for start in range(0, len(chunk_objects), batch_size):
            batch = chunk_objects[start : start + batch_size]
            inserted.extend(uid for uid, _, _ in batch)  # before the call: a failed batch may be partial
            insert_batch(chunks_collection, batch)
    except BaseException:
        _delete(chunks_collection, inserted)  # the live collection is as it was before this run
        raise
    counts = _chunk_counts(all_chunks)
    document_objects = [(object_uuid(d.id), _document_object(d, counts.get(d.id, 0)), None) for d in changes.documents]
    _import(documents_collection, document_objects, batch_size)
    _delete(chunks_collection, (object_uuid(chunk_id) for chunk_id in changes.stale_chunks))
    _delete(documents_collection, (object_uuid(doc_id) for doc_id in changes.removed_documents))


def _chunk_counts(chunks: list[Chunk]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.document_id] = counts.get(chunk.document_id, 0) + 1
    return counts


def _copy_other_authors(client, source: str | None, target: str, author_id: str, batch_size: int) -> int:
    """Carry every other author's objects (with their vectors) into a rebuilt collection."""
    if source is None:
        return 0
    objects = [
        (obj.uuid, obj.properties, obj.vector.get("default") if obj.vector else None)
        for obj in client.collections.get(source).iterator(include_vector=True)
        if obj.properties.get("author_id") != author_id
    ]
    _import(client.collections.get(target), objects, batch_size)
    return len(objects)


def rebuild(
    client,
    author_id: str,
    documents: list[CleanedDocument],
    chunks: list[Chunk],
    vectors: np.ndarray,
    *,
    documents_alias: str,
    chunks_alias: str,
    model_name: str,
    batch_size: int,
) -> tuple[str, str]:
    """Rebuild one author into new versioned collections, then move the aliases; drop the old.

    Other authors' objects are copied across unchanged, vectors included (nothing re-embedded).
    """
    by_id = {document.id: document for document in documents}
    old_documents, old_chunks = alias_target(client, documents_alias), alias_target(client, chunks_alias)
    new_documents, new_chunks = _next_version(client, documents_alias), _next_version(client, chunks_alias)
    _create(client, new_documents, "documents")
    _create(client, new_chunks, "chunks")
    try:
        _copy_other_authors(client, old_chunks, new_chunks, author_id, batch_size)
        _copy_other_authors(client, old_documents, new_documents, author_id, batch_size)
        chunk_objects = [
            (
                object_uuid(c.id),
                _chunk_object(c, by_id[c.document_id].published_at, model_name, len(v)),
                v.tolist(),
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        _import(client.collections.get(new_chunks), chunk_objects, batch_size)
        counts = _chunk_counts(chunks)
        document_objects = [(object_uuid(d.id), _document_object(d, counts.get(d.id, 0)), None) for d in documents]
        _import(client.collections.get(new_documents), document_objects, batch_size)
    except BaseException:
        client.collections.delete([new_documents, new_chunks])  # serving never saw them
        raise
    client.alias.update(alias_name=documents_alias, new_target_collection=new_documents)
    client.alias.update(alias_name=chunks_alias, new_target_collection=new_chunks)
    client.collections.delete([name for name in (old_documents, old_chunks) if name])
    return new_documents, new_chunks
