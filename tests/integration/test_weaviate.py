"""Against the real Weaviate server (the one `make test` starts, else an embedded one)."""

from __future__ import annotations

import socket
import uuid

import pytest

from twin_ops.services import weaviate as weaviate_service

VECTORS = {
    "bilge": [1.0, 0.0, 0.0, 0.0],
    "sails": [0.0, 1.0, 0.0, 0.0],
    "pager": [0.0, 0.0, 1.0, 0.0],
}
TEXTS = {
    "bilge": "Pump the bilge before you trust the hull.",
    "sails": "Trim the sails and the boat will tell you the rest.",
    "pager": "The pager went off at three and the queue was full of stuck jobs.",
}


def make_collection(client, name: str):
    from weaviate.classes.config import Configure, DataType, Property

    if client.collections.exists(name):
        client.collections.delete(name)
    return client.collections.create(
        name,
        properties=[
            Property(name="key", data_type=DataType.TEXT),
            Property(name="text", data_type=DataType.TEXT),
        ],
        vector_config=Configure.Vectors.self_provided(),
    )


def insert(collection) -> None:
    with collection.batch.fixed_size(batch_size=10) as batch:
        for key, text in TEXTS.items():
            batch.add_object({"key": key, "text": text}, vector=VECTORS[key], uuid=uuid.uuid5(uuid.NAMESPACE_URL, key))
    assert collection.batch.failed_objects == []


@pytest.fixture
def client(params, settings):
    with weaviate_service.connect(params, settings) as connected:
        yield connected


def test_server_is_the_pinned_version(client, params):
    assert client.get_meta()["version"] == params.weaviate.version


def test_near_vector_and_hybrid_queries(client):
    collection = make_collection(client, "TwinOpsSmokeTest")
    try:
        insert(collection)
        nearest = collection.query.near_vector(near_vector=[0.1, 0.9, 0.0, 0.0], limit=1)
        assert nearest.objects[0].properties["key"] == "sails"
        # BM25 alone finds "pager" by its words; the vector pulls towards "bilge": both must show.
        hybrid = collection.query.hybrid(query="stuck jobs pager", vector=VECTORS["bilge"], alpha=0.5, limit=3)
        keys = [obj.properties["key"] for obj in hybrid.objects]
        assert keys[:2] == ["pager", "bilge"] or keys[:2] == ["bilge", "pager"]
        keyword_only = collection.query.hybrid(query="stuck jobs pager", vector=VECTORS["bilge"], alpha=0.0, limit=1)
        assert keyword_only.objects[0].properties["key"] == "pager"
        # Deterministic ids: inserting again upserts, it does not duplicate.
        insert(collection)
        assert len(collection) == 3
    finally:
        client.collections.delete("TwinOpsSmokeTest")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_embedded_server_persists_across_restarts(params, paths, tmp_path):
    """A separate embedded server (own ports, own data dir), stopped and started again."""
    own = params.model_copy(
        update={"weaviate": params.weaviate.model_copy(update={"http_port": free_port(), "grpc_port": free_port()})}
    )
    data_dir = tmp_path / "weaviate-data"
    with weaviate_service.connect_embedded(own, paths, data_dir=data_dir) as first:
        insert(make_collection(first, "Persisted"))
    assert not weaviate_service.is_ready(f"http://127.0.0.1:{own.weaviate.http_port}")  # really stopped
    with weaviate_service.connect_embedded(own, paths, data_dir=data_dir) as second:
        collection = second.collections.get("Persisted")
        assert len(collection) == 3
        assert (
            collection.query.near_vector(near_vector=VECTORS["pager"], limit=1).objects[0].properties["text"]
            == TEXTS["pager"]
        )


def test_cached_binary_is_where_embedded_mode_looks(params, paths):
    """If this failed, the client would try to download the server (and fail offline)."""
    from weaviate.embedded import EmbeddedV4

    embedded = EmbeddedV4(weaviate_service.embedded_options(params, paths))
    embedded.ensure_weaviate_binary_exists()  # downloads only when the file is missing
    assert embedded._weaviate_binary_path == weaviate_service.binary_file(params, paths)
    assert embedded._weaviate_binary_path.is_file()
