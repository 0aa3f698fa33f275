"""Feature-stage throughput, measured against its own bounds in the same process.

1. chunks/s of the whole stage (clean → validate → chunk → validate → embed → index, full rebuild)
   as a ratio to the embedding-only bound: sentence-transformers ``encode`` of the same chunk texts
   with the same batch size. Target >= 0.8.
2. the wall time of a nightly refresh where 1% of documents changed, as a ratio to a full rebuild.
   Target <= 0.05.

Corpus: 2,000 documents generated from the demo author's paragraphs (each with a unique line).
Imports, the model and GX are warmed up first, so neither side pays a one-off start-up cost.
Needs a Weaviate server (`twin-ops services up`). Run: .venv/bin/python benchmarks/features.py
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin_ops.config import load_params, resolve_paths  # noqa: E402
from twin_ops.demo.content import read_post, wren_posts  # noqa: E402
from twin_ops.domain import DocumentKind, Platform, RawDocument, sha256_text, write_jsonl  # noqa: E402
from twin_ops.features import index  # noqa: E402
from twin_ops.features.embed import Embedder  # noqa: E402
from twin_ops.features.pipeline import run_features  # noqa: E402
from twin_ops.services.weaviate import connect  # noqa: E402

AUTHOR = "bench-author"


def corpus(n: int, seed: int = 7, changed: set[int] | None = None) -> list[RawDocument]:
    pool = [p for post in wren_posts() for p in read_post(post)[1].split("\n\n") if len(p.split()) > 25]
    documents = []
    for i in range(n):
        rng = random.Random(seed * 100_003 + i)
        # A line of its own in every paragraph keeps generated chunks distinct (the chunks suite checks).
        body = "\n\n".join(f"{paragraph} (Yard log {i}.{j}.)" for j, paragraph in enumerate(rng.sample(pool, 4)))
        if changed and i in changed:
            body += "\n\nA late edit: the tide turned before the pump did."
        content = f"Generated post {i}\n\nLedger entry {i}: the yard log for day {i}.\n\n{body}"
        url = f"http://127.0.0.1:9/generated/{i}/"
        documents.append(
            RawDocument(
                id=f"{AUTHOR}:{url}",
                author_id=AUTHOR,
                kind=DocumentKind.ARTICLE,
                platform=Platform.BLOG,
                source_url=url,
                title=f"Generated post {i}",
                content=content,
                fetched_at="2026-11-01T00:00:00Z",
                content_hash=sha256_text(content),
            )
        )
    return documents


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--changed-share", type=float, default=0.01)
    args = parser.parse_args()

    base = load_params(ROOT / "params.yaml")
    features = base.features.model_copy(update={"documents_alias": "BenchDocuments", "chunks_alias": "BenchChunks"})
    params = base.model_copy(update={"features": features})
    work = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    paths = resolve_paths(params).model_copy(update={"data": work / "data", "reports": work / "reports"})
    raw_file = paths.data / "raw" / AUTHOR / "blog.jsonl"

    embedder = Embedder(features.embedding_model, features.device, features.embedding_batch_size)
    with connect(params) as client:
        for alias in (features.documents_alias, features.chunks_alias):
            if (target := index.alias_target(client, alias)) is not None:
                client.alias.delete(alias_name=alias)
                client.collections.delete(target)
        # Warm-up on a small corpus: imports, model, GX context, index collections.
        write_jsonl(raw_file, corpus(20, seed=1))
        run_features(AUTHOR, params, paths, client=client, embedder=embedder)

        write_jsonl(raw_file, corpus(args.documents))
        started = time.perf_counter()
        full = run_features(AUTHOR, params, paths, client=client, embedder=embedder, rebuild=True)
        full_seconds = time.perf_counter() - started

        texts = [obj.properties["text"] for obj in _chunks(client, features.chunks_alias)]
        started = time.perf_counter()
        embedder.encode(texts)
        bound_seconds = time.perf_counter() - started

        changed = set(random.Random(3).sample(range(args.documents), int(args.documents * args.changed_share)))
        write_jsonl(raw_file, corpus(args.documents, changed=changed))
        started = time.perf_counter()
        nightly = run_features(AUTHOR, params, paths, client=client, embedder=embedder)
        nightly_seconds = time.perf_counter() - started

        for alias in (features.documents_alias, features.chunks_alias):
            target = index.alias_target(client, alias)
            client.alias.delete(alias_name=alias)
            client.collections.delete(target)

    stage_rate, bound_rate = full.chunks / full_seconds, len(texts) / bound_seconds
    print(f"corpus: {args.documents} documents, {full.chunks} chunks; {len(changed)} documents changed for the refresh")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'whole stage, full rebuild (chunks/s)':<44}{stage_rate:>12.1f}")
    print(f"{'embedding-only bound (chunks/s)':<44}{bound_rate:>12.1f}")
    print(f"{'ratio stage / bound (target >= 0.8)':<44}{stage_rate / bound_rate:>12.3f}")
    print(f"{'full rebuild (s)':<44}{full_seconds:>12.1f}")
    print(f"{'nightly refresh, 1% changed (s)':<44}{nightly_seconds:>12.1f}")
    print(f"{'ratio refresh / rebuild (target <= 0.05)':<44}{nightly_seconds / full_seconds:>12.3f}")
    print(f"full stages: {full.line()}")
    print(f"refresh stages: {nightly.line()}")


def _chunks(client, alias):
    return client.collections.get(alias).iterator(return_properties=["text"])


if __name__ == "__main__":
    main()
