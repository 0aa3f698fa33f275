"""The Generator's model code with a tiny random Llama (real tokenizer and chat template): which
model is served, batched generation equal to one-at-a-time, streaming, and the cross-encoder."""

from __future__ import annotations

import asyncio
import time

import pytest

from twin_ops.errors import InvalidRequest, TooManyRequests
from twin_ops.llm import ModelSource, Sampling
from twin_ops.rag import Passage
from twin_ops.registry.store import Registry, RegistryError
from twin_ops.serving.generation import TextGenerator, choose_model, default_twin, generate_with, stream_with
from twin_ops.serving.records import GenerationRequest, StreamEnd, StreamStart
from twin_ops.serving.scheduler import Scheduler

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


def scheduler(**limits) -> Scheduler:
    settings = {"token_budget": 4096, "max_rows": 8, "max_queued": 16, **limits}
    return Scheduler(**settings)


def submit_to(queue: Scheduler, deadline_s: float = 60.0):
    def submit(generator, row, request):
        ticket = queue.admit(generator, row, time.monotonic() + deadline_s, "tiny")
        return ticket.done, ticket.cancel

    return submit


def test_a_batch_gives_each_request_what_it_gets_alone(generator):
    # Different prompt lengths: left padding must not change any row's greedy output.
    requests = [request("Why?", 0), request("What about the bilge pump on a wet night?", 3), request("And?", 1)]
    alone = [generator.generate_alone(r) for r in requests]

    async def together():
        queue = scheduler(gather_s=0.05)  # the burst arrives within the gather window: one batch
        results = await asyncio.gather(*(generate_with(submit_to(queue), generator, r) for r in requests))
        return results, list(queue.batch_sizes)

    results, sizes = asyncio.run(together())
    assert [g.text for g in results] == [g.text for g in alone]
    assert sizes == [3]
    assert [g.context_used for g in results] == [0, 3, 1]
    assert all(0 < g.completion_tokens <= GREEDY.max_tokens and g.model_version == "tiny" for g in results)


def test_batches_are_bounded_by_their_token_budget(generator):
    requests = [request(f"Question {n} about the bilge?", 2) for n in range(4)]
    cost = len(generator.prepare(requests[0]).input_ids) + GREEDY.max_tokens

    async def run():
        queue = scheduler(gather_s=0.05, token_budget=2 * cost + 2)  # room for two rows a batch
        await asyncio.gather(*(generate_with(submit_to(queue), generator, r) for r in requests))
        return list(queue.batch_sizes)

    assert asyncio.run(run()) == [2, 2]


def test_a_request_that_cannot_be_prepared_fails_alone(generator):
    too_long = Sampling(max_tokens=generator.max_positions, temperature=0.0, top_p=1.0)

    async def run():
        queue = scheduler()
        return await asyncio.gather(
            generate_with(submit_to(queue), generator, request("fine")),
            generate_with(submit_to(queue), generator, request("too long", sampling=too_long)),
            return_exceptions=True,
        )

    fine, failed = asyncio.run(run())
    assert fine.text is not None
    assert isinstance(failed, InvalidRequest) and "exceeds the model's context" in failed.message


def test_streaming_yields_the_same_text_piece_by_piece(generator):
    async def run():
        return [
            event async for event in stream_with(submit_to(scheduler()), generator, request("Tell me about the bilge."))
        ]

    events = asyncio.run(run())
    assert isinstance(events[0], StreamStart) and isinstance(events[-1], StreamEnd)
    assert events[-1].completion_tokens <= GREEDY.max_tokens
    streamed = "".join(event for event in events[1:-1])
    assert streamed.strip() == generator.generate_alone(request("Tell me about the bilge.")).text


LONG = Sampling(max_tokens=200, temperature=0.0, top_p=1.0)


def test_a_caller_that_goes_away_stops_its_row_and_the_others_go_on(generator):
    """Plain and streaming: a cancelled call's row leaves the running batch at the next step."""

    async def run():
        queue = scheduler(gather_s=0.05)
        kept = asyncio.create_task(generate_with(submit_to(queue), generator, request("Go on.", sampling=LONG)))
        gone = asyncio.create_task(generate_with(submit_to(queue), generator, request("And on.", sampling=LONG)))
        stream = stream_with(submit_to(queue), generator, request("Stream on.", sampling=LONG))
        await anext(stream)  # StreamStart: admitted
        await asyncio.sleep(0.3)  # the batch is decoding
        gone.cancel()
        await stream.aclose()  # the streaming client went away
        answer = await kept
        with pytest.raises(asyncio.CancelledError):
            await gone
        return answer, queue.counters

    answer, counters = asyncio.run(run())
    assert answer.completion_tokens > 0 and answer.finish_reason in ("stop", "length")
    assert counters.cancelled == 2 and counters.stopped_rows == 2 and counters.completed == 1
    # The two abandoned rows stopped early: far fewer tokens than 3 full answers.
    assert counters.decoded_tokens < answer.completion_tokens + LONG.max_tokens


def test_an_overloaded_scheduler_refuses_at_once_with_retry_after_then_admits_again(generator):
    async def run():
        queue = scheduler(max_queued=64)
        queue.seed(generator.warm_up())
        # A deadline with room for about three such requests at the measured rate: a burst overflows it.
        deadline_s = queue.estimate_s(len(generator.prepare(request("Go on.")).input_ids), 8) * 3
        short = Sampling(max_tokens=8, temperature=0.0, top_p=1.0)
        burst = [
            generate_with(submit_to(queue, deadline_s), generator, request("Go on.", sampling=short)) for _ in range(40)
        ]
        results = await asyncio.gather(*burst, return_exceptions=True)
        again = await generate_with(submit_to(queue, deadline_s), generator, request("Go on.", sampling=short))
        return queue.counters, results, again

    counters, results, again = asyncio.run(run())
    refused = [r for r in results if isinstance(r, TooManyRequests)]
    assert counters.refused >= 1 and refused and all(r.retry_after >= 1 and r.status == 429 for r in refused)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, TooManyRequests)]
    assert again.completion_tokens > 0  # the queue drained: admitted again


def test_a_caller_that_left_frees_its_share_of_the_estimate_at_once(generator):
    async def run():
        queue = scheduler(max_queued=4)
        queue.seed(generator.warm_up())
        prepared = generator.prepare(request("Go on.", sampling=LONG))
        alone = queue.estimate_s(len(prepared.input_ids), LONG.max_tokens)
        tickets = [queue.admit(generator, generator.row(prepared), time.monotonic() + 600, "tiny") for _ in range(4)]
        busy = queue.estimate_s(len(prepared.input_ids), LONG.max_tokens)
        for ticket in tickets:
            ticket.cancel()  # every caller hung up: the queue is empty for admission at once
        freed = queue.estimate_s(len(prepared.input_ids), LONG.max_tokens)
        queue.check(len(prepared.input_ids), LONG.max_tokens, time.monotonic() + 600, "tiny")  # not full any more
        await asyncio.gather(*(ticket.done for ticket in tickets))
        return alone, busy, freed

    alone, busy, freed = asyncio.run(run())
    assert busy > 3 * alone and freed == pytest.approx(alone)


def test_a_full_queue_refuses_the_next_request(generator):
    async def run():
        queue = scheduler(max_queued=1)
        first = asyncio.ensure_future(generate_with(submit_to(queue), generator, request("one", sampling=LONG)))
        second = asyncio.ensure_future(generate_with(submit_to(queue), generator, request("two", sampling=LONG)))
        third = asyncio.ensure_future(generate_with(submit_to(queue), generator, request("three", sampling=LONG)))
        return await asyncio.gather(first, second, third, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert sum(isinstance(o, TooManyRequests) for o in outcomes) == 1
    assert any("queue is full" in o.message for o in outcomes if isinstance(o, TooManyRequests))


def test_the_context_goes_into_the_last_user_turn_within_the_budget(params, generator):
    many = request("What about the pump?", passages=40)
    prepared = generator.prepare(many)
    assert 0 < prepared.context_used < 40  # the budget cut the list
    text = generator.tokenizer.decode(list(prepared.input_ids))
    assert "[1] Post 0" in text and "What about the pump?" in text


def test_production_alias_picks_the_model_and_only_a_missing_production_falls_back(params, paths, tiny_model, tmp_path):
    name = default_twin(params)
    registry = Registry(tmp_path / "models")
    fallback = choose_model(params, name, paths.root, registry.root, paths.cache, "production")
    assert fallback.label == f"base:{params.training.base_model}"
    registry.register(name, "base", merged_path=tiny_model)
    registry.promote(name)
    chosen = choose_model(params, name, paths.root, registry.root, paths.cache, "production")
    assert chosen == ModelSource(label=f"{name}:v1", path=str(tiny_model))
    with pytest.raises(RegistryError):  # an explicit version is never silently replaced
        choose_model(params, name, paths.root, registry.root, paths.cache, "7")
    registry.register(name, "base", merged_path=tmp_path / "deleted")
    with pytest.raises(RegistryError, match="neither its merged model nor its adapter"):
        choose_model(params, name, paths.root, registry.root, paths.cache, "2")


def test_an_adapter_version_is_loaded_on_its_base_and_merged(params, paths, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    from twin_ops.llm import load_model

    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(load_model(str(tiny_model), "cpu"), lora).save_pretrained(adapter)
    registry = Registry(tmp_path / "models")
    name = default_twin(params)
    registry.register(name, str(tiny_model), adapter_path=adapter)
    choice = choose_model(params, name, paths.root, registry.root, paths.cache, "1")
    assert choice.path == str(tiny_model) and choice.adapter == str(adapter)
    loaded = TextGenerator(params, choice, "cpu")
    assert not hasattr(loaded.model, "peft_config")  # merged: plain model at inference
    assert loaded.generate_alone(request("Why?")).completion_tokens > 0


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


def test_the_app_serves_a_twin_per_known_author(params, paths):
    from twin_ops.serving.generation import Catalog, twin_names

    names = twin_names(params, paths.root)
    assert names["wren-halvorsen-twin"] == "wren-halvorsen" and names["juno-marsh-twin"] == "juno-marsh"
    assert default_twin(params) == "wren-halvorsen-twin"
    versions = Catalog(params, paths.root, paths.root / "no-registry", paths.cache).versions()
    assert set(versions) == set(names)  # no registry yet: every twin is the base model
    assert all(label == f"base:{params.training.base_model}" for label in versions.values())


def test_the_decode_loop_generates_what_transformers_generate_does(generator):
    """The project's own loop over the KV cache (rows leave the batch as they end) against
    transformers' generate, row by row: greedy, with the repetition penalty, prompts of different
    lengths decoded in one padded batch."""
    import torch

    from twin_ops.llm import GenerationDefaults
    from twin_ops.llm.model import LoadedModel

    llm = LoadedModel(generator.llm.source, generator.tokenizer, generator.model, GenerationDefaults(1.3, 0))
    prompts = [llm.render([("user", q)]) for q in ("Why?", "What about the bilge pump on a wet night?", "And?")]
    ours = llm.generate(prompts, [Sampling(max_tokens=12, temperature=0.0, top_p=1.0)] * len(prompts))
    for prompt, completion in zip(prompts, ours, strict=True):
        output = llm.model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=12,
            do_sample=False,
            repetition_penalty=1.3,
            pad_token_id=llm.pad_id,
            eos_token_id=llm.eos_ids,
        )
        reference = output[0, len(prompt) :].tolist()
        stop = next((i for i, token in enumerate(reference) if token in llm.eos_ids), len(reference))
        assert list(completion.tokens) == reference[:stop]
