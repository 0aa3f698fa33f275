"""The feature stage against the real Weaviate server: idempotent, incremental, safe on crash."""

from __future__ import annotations

import uuid

import pytest

from twin_ops.demo.content import juno_posts, raw_document, read_post, wren_posts
from twin_ops.domain import write_jsonl
from twin_ops.features import index
from twin_ops.features.embed import Embedder
from twin_ops.features.pipeline import run_features
from twin_ops.features.search import BadQuery, search
from twin_ops.services.weaviate import connect

WREN, JUNO = "wren-halvorsen", "juno-marsh"


@pytest.fixture(scope="module")
def embedder(params):
    return Embedder(params.features.embedding_model, "cpu", params.features.embedding_batch_size)


@pytest.fixture
def client(params):
    with connect(params) as connected:
        yield connected


@pytest.fixture
def project(tmp_path, params, paths, client):
    """Own data dir, reports dir and index aliases, so tests never see each other's objects."""
    suffix = uuid.uuid4().hex[:8].capitalize()
    features = params.features.model_copy(
        update={"documents_alias": f"TestDocs{suffix}", "chunks_alias": f"TestChunks{suffix}"}
    )
    own_params = params.model_copy(update={"features": features})
    own_paths = paths.model_copy(update={"data": tmp_path / "data", "reports": tmp_path / "reports"})
    yield own_params, own_paths
    for alias in (features.documents_alias, features.chunks_alias):
        target = index.alias_target(client, alias)
        client.alias.delete(alias_name=alias)
        if target:
            client.collections.delete(target)


def publish_raw(paths, author, posts, edits=None):
    edits = edits or {}
    documents = [raw_document(post, author, edits.get(post.name)) for post in posts]
    write_jsonl(paths.data / "raw" / author / "blog.jsonl", documents)
    return documents


def chunk_objects(client, alias):
    return {
        str(obj.uuid): obj.properties
        for obj in client.collections.get(alias).iterator(return_properties=["chunk_id", "document_id", "author_id"])
    }


def test_second_run_changes_nothing_and_an_edit_reembeds_only_that_document(project, client, embedder):
    params, paths = project
    posts = wren_posts()[:8]
    publish_raw(paths, WREN, posts)
    first = run_features(WREN, params, paths, client=client, embedder=embedder)
    alias = params.features.chunks_alias
    before = chunk_objects(client, alias)
    assert first.embedded_chunks == first.chunks == len(before) > 8

    second = run_features(WREN, params, paths, client=client, embedder=embedder)
    assert second.embedded_chunks == 0 and second.new_or_changed_documents == 0
    assert chunk_objects(client, alias) == before

    edited = posts[3]
    _, body = read_post(edited)
    new_body = body.replace("\n\n", "\n\nA squall came through the yard that night.\n\n", 1)
    documents = publish_raw(paths, WREN, posts, {edited.name: new_body})
    third = run_features(WREN, params, paths, client=client, embedder=embedder)
    after = chunk_objects(client, alias)
    edited_id = documents[3].id
    old_edited = {u for u, p in before.items() if p["document_id"] == edited_id}
    new_edited = {u for u, p in after.items() if p["document_id"] == edited_id}
    assert third.new_or_changed_documents == 1
    assert 0 < third.embedded_chunks <= len(new_edited)  # only the edited document's chunks
    assert third.stale_chunks_removed == len(old_edited - new_edited) > 0
    # Every other document's chunks are exactly as before; no stale chunk survives.
    assert {u: p for u, p in after.items() if p["document_id"] != edited_id} == {
        u: p for u, p in before.items() if p["document_id"] != edited_id
    }
    assert len(after) == third.chunks

    publish_raw(paths, WREN, posts[:7])  # one document deleted at the source
    fourth = run_features(WREN, params, paths, client=client, embedder=embedder)
    assert fourth.removed_documents == 1
    remaining_documents = {p["document_id"] for p in chunk_objects(client, alias).values()}
    assert documents[7].id not in remaining_documents


def test_hybrid_search_finds_the_signature_and_filters_by_author(project, client, embedder):
    params, paths = project
    posts = wren_posts()
    publish_raw(paths, WREN, posts)
    publish_raw(paths, JUNO, juno_posts())
    run_features(WREN, params, paths, client=client, embedder=embedder)
    run_features(JUNO, params, paths, client=client, embedder=embedder)
    for post in posts[::6]:
        meta, _ = read_post(post)
        hits = search(client, embedder, params.features, meta["signature"], WREN, k=3)
        assert meta["title"] in [hit.title for hit in hits], (meta["signature"], [h.title for h in hits])
    juno_meta, _ = read_post(juno_posts()[0])
    assert search(client, embedder, params.features, juno_meta["signature"], JUNO, k=3)[0].title == juno_meta["title"]
    filtered = search(client, embedder, params.features, juno_meta["signature"], WREN, k=10)
    assert filtered and {hit.author_id for hit in filtered} == {WREN}
    with pytest.raises(BadQuery, match="k must be between"):
        search(client, embedder, params.features, "bilge", WREN, k=0)


class Crash(RuntimeError):
    pass


def crash_after(monkeypatch, batches: int) -> None:
    real = index.insert_batch
    calls = {"n": 0}

    def flaky(collection, objects):
        calls["n"] += 1
        if calls["n"] > batches:
            raise Crash(f"injected crash after {batches} batches")
        real(collection, objects)

    monkeypatch.setattr(index, "insert_batch", flaky)


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "rebuild"])
def test_crash_mid_import_leaves_the_serving_collection_unchanged(project, client, embedder, monkeypatch, rebuild):
    params, paths = project
    params = params.model_copy(update={"features": params.features.model_copy(update={"import_batch_size": 10})})
    posts = wren_posts()[:6]
    publish_raw(paths, WREN, posts)
    run_features(WREN, params, paths, client=client, embedder=embedder)
    alias = params.features.chunks_alias
    serving = index.alias_target(client, alias)
    before = chunk_objects(client, alias)
    files_before = (paths.data / "features" / WREN / "chunks.jsonl").read_bytes()

    publish_raw(paths, WREN, wren_posts()[:12])  # six new documents: several import batches
    crash_after(monkeypatch, 2)
    with pytest.raises(Crash):
        run_features(WREN, params, paths, client=client, embedder=embedder, rebuild=rebuild)

    assert index.alias_target(client, alias) == serving
    assert chunk_objects(client, alias) == before
    assert (paths.data / "features" / WREN / "chunks.jsonl").read_bytes() == files_before
    hits = search(client, embedder, params.features, "bilge pump", WREN, k=3)
    assert hits  # still queryable
    leftovers = [name for name in client.collections.list_all() if name.startswith(alias) and name != serving]
    assert leftovers == []


def test_rebuild_swaps_versions_and_keeps_other_authors(project, client, embedder):
    params, paths = project
    publish_raw(paths, WREN, wren_posts()[:4])
    publish_raw(paths, JUNO, juno_posts()[:2])
    run_features(WREN, params, paths, client=client, embedder=embedder)
    run_features(JUNO, params, paths, client=client, embedder=embedder)
    alias = params.features.chunks_alias
    before = chunk_objects(client, alias)
    old_target = index.alias_target(client, alias)
    summary = run_features(WREN, params, paths, client=client, embedder=embedder, rebuild=True)
    assert summary.rebuilt and summary.embedded_chunks == summary.chunks
    new_target = index.alias_target(client, alias)
    assert new_target != old_target and not client.collections.exists(old_target)
    assert chunk_objects(client, alias) == before  # same ids, both authors
