"""Retrieval-grounded evaluation against the real Weaviate: the held-out answer's own document is
never in the context (no leakage), and prompts carry the serving template with numbered passages."""

from __future__ import annotations

import pytest

from twin_ops.config import Settings
from twin_ops.demo.content import WREN
from twin_ops.evaluation import grounding
from twin_ops.evaluation.samples import Sample
from twin_ops.features.embed import Embedder


@pytest.fixture
def indexed(params, paths, demo_index):
    """The run's demo index (both demo authors): params naming its aliases, Wren's documents."""
    from twin_ops.config import load_params

    overrides, documents = demo_index
    own = load_params(paths.root / "params.yaml", overrides)
    embedder = Embedder(params.features.embedding_model, "cpu", params.features.embedding_batch_size)
    return own, documents[WREN], embedder


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
