"""The Generator's model code with a tiny random Llama (real tokenizer and chat template): which
model is served, batched generation equal to one-at-a-time, streaming, and the cross-encoder."""

from __future__ import annotations

import pytest

from twin_ops.errors import InvalidRequest
from twin_ops.llm import ModelSource, Sampling
from twin_ops.rag import Passage
from twin_ops.registry.store import Registry, RegistryError
from twin_ops.serving.generation import TextGenerator, choose_model, generate_requests
from twin_ops.serving.records import GenerationRequest, StreamEnd

GREEDY = Sampling(max_tokens=6, temperature=0.0, top_p=1.0)


@pytest.fixture(scope="module")
def generator(params, tiny_model):
    return TextGenerator(params, ModelSource(label="tiny", path=str(tiny_model)), "cpu")


def request(question: str, passages: int = 2, sampling: Sampling = GREEDY) -> GenerationRequest:
    context = tuple(
        Passage(f"c{n}", "wren-halvorsen", f"Post {n}", f"http://x/{n}", f"The bilge pump, part {n}. " * 5, 1.0)
        for n in range(passages)
    )
    return GenerationRequest(messages=(("user", question),), passages=context, sampling=sampling)


def test_a_batch_gives_each_request_what_it_gets_alone(generator):
    # Different prompt lengths: left padding must not change any row's greedy output.
    requests = [request("Why?", 0), request("What about the bilge pump on a wet night?", 3), request("And?", 1)]
    alone = [generate_requests([(generator, r)])[0] for r in requests]
    together = generate_requests([(generator, r) for r in requests])
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.context_used for g in together] == [0, 3, 1]
    assert all(0 < g.completion_tokens <= GREEDY.max_tokens and g.model_version == "tiny" for g in together)


def test_a_request_that_cannot_be_prepared_fails_alone(generator):
    too_long = Sampling(max_tokens=generator.max_positions, temperature=0.0, top_p=1.0)
    results = generate_requests([(generator, request("fine")), (generator, request("too long", sampling=too_long))])
    assert results[0].text is not None
    assert isinstance(results[1], InvalidRequest) and "exceeds the model's context" in results[1].message


def test_streaming_yields_the_same_text_piece_by_piece(generator):
    prepared = generator.prepare(request("Tell me about the bilge."))
    events = list(generator.stream(prepared))
    assert isinstance(events[-1], StreamEnd) and events[-1].completion_tokens <= GREEDY.max_tokens
    streamed = "".join(event for event in events[:-1])
    assert streamed.strip() == generator.generate_batch([prepared])[0].text


def test_closing_a_stream_early_stops_the_generation(generator):
    long = Sampling(max_tokens=200, temperature=0.0, top_p=1.0)
    prepared = generator.prepare(request("Go on.", sampling=long))
    before = generator.llm.streamed_tokens
    whole = list(generator.stream(prepared))  # read to the end: how long this answer runs
    full_steps = generator.llm.streamed_tokens - before
    assert isinstance(whole[-1], StreamEnd) and full_steps >= 50
    before = generator.llm.streamed_tokens
    stream = generator.stream(prepared)
    next(stream)
    stream.close()  # the client went away: the generation must stop, not run its 200 tokens
    assert generator.llm.streamed_tokens - before < full_steps // 2


def test_the_context_goes_into_the_last_user_turn_within_the_budget(params, generator):
    many = request("What about the pump?", passages=40)
    prepared = generator.prepare(many)
    assert 0 < prepared.context_used < 40  # the budget cut the list
    text = generator.tokenizer.decode(list(prepared.input_ids))
    assert "[1] Post 0" in text and "What about the pump?" in text


def test_production_alias_picks_the_model_and_only_a_missing_production_falls_back(params, paths, tiny_model, tmp_path):
    name = params.serving.model_name
    registry = Registry(tmp_path / "models")
    fallback = choose_model(params, paths.root, registry.root, paths.cache, "production")
    assert fallback.label == f"base:{params.training.base_model}"
    registry.register(name, "base", merged_path=tiny_model)
    registry.promote(name)
    chosen = choose_model(params, paths.root, registry.root, paths.cache, "production")
    assert chosen == ModelSource(label=f"{name}:v1", path=str(tiny_model))
    with pytest.raises(RegistryError):  # an explicit version is never silently replaced
        choose_model(params, paths.root, registry.root, paths.cache, "7")
    registry.register(name, "base", merged_path=tmp_path / "deleted")
    with pytest.raises(RegistryError, match="neither its merged model nor its adapter"):
        choose_model(params, paths.root, registry.root, paths.cache, "2")


def test_an_adapter_version_is_loaded_on_its_base_and_merged(params, paths, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    from twin_ops.llm import load_model

    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(load_model(str(tiny_model), "cpu"), lora).save_pretrained(adapter)
    registry = Registry(tmp_path / "models")
    registry.register(params.serving.model_name, str(tiny_model), adapter_path=adapter)
    choice = choose_model(params, paths.root, registry.root, paths.cache, "1")
    assert choice.path == str(tiny_model) and choice.adapter == str(adapter)
    loaded = TextGenerator(params, choice, "cpu")
    assert not hasattr(loaded.model, "peft_config")  # merged: plain model at inference
    assert generate_requests([(loaded, request("Why?"))])[0].completion_tokens > 0


def test_a_configured_cross_encoder_reorders_the_passages(params, tmp_path):
    """A tiny random cross-encoder (built here, offline): the mechanics, not the quality."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from twin_ops.llm import resolve_model
    from twin_ops.rag.retrieve import Retriever

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(params.features.embedding_model))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    folder = tmp_path / "cross-encoder"
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with_reranker = params.model_copy(
        update={"rag": params.rag.model_copy(update={"reranker": str(folder), "device": "cpu"})}
    )
    retriever = Retriever(with_reranker, [])
    passages = [Passage(str(n), "a", f"T{n}", "u", f"text number {n} about boats", 1.0 - n / 10) for n in range(5)]
    reranked = retriever.rerank("boats", passages)
    assert sorted(p.chunk_id for p in reranked) == [p.chunk_id for p in passages]
    assert [p.score for p in reranked] == sorted((p.score for p in reranked), reverse=True)
    assert {p.score for p in reranked} != {p.score for p in passages}  # the cross-encoder's scores
