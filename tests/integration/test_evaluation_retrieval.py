"""Retrieval-grounded evaluation against the real Weaviate: the held-out answer's own document is
never in the context (no leakage), and prompts carry the serving template with numbered passages."""

from __future__ import annotations

import uuid

import pytest

from tests.demo_content import raw_document, wren_posts
from twin_ops.config import Settings
from twin_ops.domain import write_jsonl
from twin_ops.evaluation import grounding
from twin_ops.evaluation.samples import Sample
from twin_ops.features import index
from twin_ops.features.embed import Embedder
from twin_ops.features.pipeline import run_features
from twin_ops.services.weaviate import connect

WREN = "wren-halvorsen"


@pytest.fixture
def indexed(tmp_path, params, paths):
    """Five of Wren's posts in aliases of their own (deleted afterwards)."""
    suffix = uuid.uuid4().hex[:8].capitalize()
    features = params.features.model_copy(
        update={"documents_alias": f"EvalDocs{suffix}", "chunks_alias": f"EvalChunks{suffix}"}
    )
    own = params.model_copy(update={"features": features})
    own_paths = paths.model_copy(update={"data": tmp_path / "data", "reports": tmp_path / "reports"})
    documents = [raw_document(post, WREN) for post in wren_posts()[:5]]
    write_jsonl(own_paths.data / "raw" / WREN / "blog.jsonl", documents)
    embedder = Embedder(params.features.embedding_model, "cpu", params.features.embedding_batch_size)
    with connect(own) as client:
        run_features(WREN, own, own_paths, client=client, embedder=embedder)
        yield own, documents, embedder
        for alias in (features.documents_alias, features.chunks_alias):
            target = index.alias_target(client, alias)
            client.alias.delete(alias_name=alias)
            if target:
                client.collections.delete(target)


def test_context_comes_from_other_documents_of_the_author(indexed, base_model_dir):
    from twin_ops import llm

    params, documents, embedder = indexed
    held_out = documents[0]
    sample = Sample("s1", f"Write about {held_out.title}.", held_out.content[:400], held_out.id)
    found, note = grounding.retrieve(params, Settings(), WREN, [sample], embedder)
    assert found is not None, note
    assert note.startswith("retrieval:")
    passages = found["s1"]
    assert 1 <= len(passages) <= params.rag.default_k
    assert all(p.document_id != held_out.id for p in passages)  # the answer's own post is excluded
    assert {p.document_id for p in passages} <= {d.id for d in documents[1:]}
    model = llm.load(llm.ModelSource("base", base_model_dir), "cpu")
    prompt = grounding.grounded_prompt(model, params, sample, passages)
    text = model.tokenizer.decode(list(prompt.input_ids))
    assert f"[1] {passages[0].title}" in text and sample.instruction in text
    template = model.count_tokens(params.rag.prompt_template) + model.count_tokens(sample.instruction)
    assert len(prompt.input_ids) <= params.rag.context_token_budget + template + 32  # + the chat template's tokens

    # The same sample with leakage allowed gets its own post back (what exclusion prevents).
    leaky = params.model_copy(
        update={"evaluation": params.evaluation.model_copy(update={"exclude_source_document": False})}
    )
    found, _ = grounding.retrieve(leaky, Settings(), WREN, [sample], embedder)
    assert held_out.id in {p.document_id for p in found["s1"]}
