"""Conversation-aware retrieval against the real index of the demo authors (real Weaviate, the real
embedder): a follow-up finds its article with the conversation where the follow-up alone does not;
query expansion written by the real base model (SmolLM2-135M, offline) runs through the same path."""

from __future__ import annotations

import asyncio

import pytest

from twin_ops.demo.content import Conversation, demo_conversations

ARTICLE = "rot-under-the-mast-step"  # "What does that teach about observability?" alone finds other posts


@pytest.fixture(scope="module")
def indexed(paths, demo_index):
    from twin_ops.config import load_params
    from twin_ops.features.embed import Embedder

    overrides, _ = demo_index
    params = load_params(paths.root / "params.yaml", overrides)
    return overrides, Embedder(params.features.embedding_model, "cpu")


def retrieve(paths, indexed, conversation: Conversation, overrides: dict, expand=None):
    from twin_ops.config import load_params
    from twin_ops.rag.retrieve import Retriever, known_authors

    index, embedder = indexed
    params = load_params(paths.root / "params.yaml", {**index, **overrides})
    retriever = Retriever(params, known_authors(paths.root / params.collect.authors_dir))

    async def embed(texts: list[str]) -> list[list[float]]:
        return embedder.encode(texts).tolist()

    async def no_expansion(question: str, n: int) -> list[str]:
        raise AssertionError("query expansion is off")

    try:
        return asyncio.run(
            retriever.retrieve(
                conversation.follow_up,
                conversation.author,
                params.rag.default_k,
                embed,
                expand or no_expansion,
                history=(("user", conversation.first), ("assistant", "…")),
            )
        )
    finally:
        retriever.close()


def test_a_follow_up_finds_its_article_with_the_conversation_and_not_alone(params, paths, indexed):
    conversation = next(c for c in demo_conversations() if c.article == ARTICLE)
    assert params.rag.conversation.method != "last"
    alone = retrieve(paths, indexed, conversation, {"rag": {"conversation": {"method": "last"}}})
    assert conversation.url() not in [passage.url for passage in alone.passages]
    assert alone.queries == (conversation.follow_up,)
    with_history = retrieve(paths, indexed, conversation, {})  # params.yaml's method: what the app serves
    assert with_history.passages[0].url == conversation.url()
    assert conversation.first in with_history.queries[0] or params.rag.conversation.method == "condense"


def test_query_expansion_by_the_base_model_is_searched_too(params, paths, indexed, base_model_dir):
    from twin_ops.llm import GenerationDefaults, ModelSource, load
    from twin_ops.rag.retrieve import expand_query

    expanding = {"rag": {"query_expansions": 2}}
    model = load(ModelSource("base", base_model_dir), "cpu", GenerationDefaults.from_params(params.llm))
    written: list[str] = []

    async def expand(question: str, n: int) -> list[str]:
        phrasings = expand_query(model, question, n, params)
        written.extend(phrasings)
        return phrasings

    conversation = next(c for c in demo_conversations() if c.article == ARTICLE)
    found = retrieve(paths, indexed, conversation, expanding, expand)
    assert len(written) == 2
    assert len(found.queries) >= 2 and set(found.queries[1:]) <= set(written)  # the rephrasings were searched
    assert conversation.url() in [passage.url for passage in found.passages]
