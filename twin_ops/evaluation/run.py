"""evaluate(): the candidate, the production model (if any) and the base model on the same
held-out samples; then the gate's decision and the report.

One model is in memory at a time (load, score, generate, free), so a CPU box evaluating three
SmolLM2-size models needs no more memory than serving one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np

from twin_ops import llm
from twin_ops.config import Params, Paths, Settings
from twin_ops.evaluation import bootstrap, grounding, lm, repetition, samples, stylometry
from twin_ops.evaluation.bootstrap import SampleScores
from twin_ops.evaluation.candidate import model_name
from twin_ops.evaluation.gate import decide
from twin_ops.evaluation.metrics import check_params
from twin_ops.evaluation.records import EvaluationResult, ModelScores
from twin_ops.rag import Passage
from twin_ops.registry.store import CANDIDATE, PRODUCTION, Registry

Log = Callable[[str], None]
REGISTRY_PREFIX = "heldout_"  # the candidate's evaluation metrics in the registry


def _contenders(params: Params, paths: Paths, registry: Registry, name: str, candidate: str | int):
    chosen = registry.get(name, candidate)
    production = registry.alias(name, PRODUCTION)
    contenders = [lm.from_version(CANDIDATE, chosen, paths.root, paths.cache)]
    if production is not None and production.version != chosen.version:
        contenders.append(lm.from_version(PRODUCTION, production, paths.root, paths.cache))
    contenders.append(lm.base_contender(params.training.base_model, paths.cache))
    return chosen, production, contenders


def score_model(
    contender: lm.Contender,
    params: Params,
    held_out: list[samples.Sample],
    retrieve: Callable[[grounding.Expand | None], tuple[dict[str, list[Passage]] | None, str]],
    device: str,
    log: Log,
) -> ModelScores:
    """Loss on the author's answers, then generations for the same samples; the model is freed after.

    Each prompt is the served twin's (twin_ops.rag: the same retrieval, with this contender's model
    writing the query expansions when they are on), and generation uses the served twin's sampling
    defaults (params.llm), greedy so reruns generate the same text.
    """
    from twin_ops.rag.retrieve import expand_query

    started = time.perf_counter()
    model = llm.load(contender.source, device, llm.GenerationDefaults.from_params(params.llm))
    try:
        passages, note = retrieve(lambda question, n, loaded=model: expand_query(loaded, question, n, params))
        log(f"evaluate: {contender.label}: {note}")
        loss = lm.token_loss(model, [(s.instruction, s.answer) for s in held_out], params.training.max_length)
        prompts = [
            grounding.grounded_prompt(model, params, s, passages.get(s.id) if passages else None).input_ids
            for s in held_out
        ]
        generations = model.complete(
            prompts, max_new_tokens=params.evaluation.max_new_tokens, batch_size=params.evaluation.batch_size
        )
    finally:
        del model
        gc.collect()
    log(
        f"evaluate: {contender.label} loss {loss.metrics(np.arange(len(held_out)))['loss']:.3f}, "
        f"{len(generations)} generations ({time.perf_counter() - started:.0f}s)"
    )
    return ModelScores(contender.role, contender.label, SampleScores(len(held_out), [loss]), generations, passages)


def similarity_scores(embedder, texts: list[str], references: np.ndarray, centroid: np.ndarray) -> dict:
    """Per text: cosine similarity to its sample's held-out answer and to the author's centroid."""
    vectors = embedder.encode(texts)
    return {"style_similarity": np.sum(vectors * references, axis=1), "author_similarity": vectors @ centroid}


def text_scores(
    scores: SampleScores, texts: list[str], reference_style: stylometry.StyleReference, params: Params
) -> None:
    """Add what is measured on the texts alone (stylometry, repetition) to ``scores``: the same for
    every model's generations and for the author's own held-out answers."""
    scores.measures.append(stylometry.StyleCounts.of(reference_style, texts))
    scores.add_means(repetition.repetition_scores(texts, params.evaluation.repetition_words))


def evaluate(
    author_id: str,
    params: Params,
    paths: Paths,
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    candidate: str | int = CANDIDATE,
    log: Log = print,
) -> EvaluationResult:
    """Score candidate, production (if any) and base on the same held-out samples; decide; write the report."""
    from twin_ops.evaluation import judge as llm_judge
    from twin_ops.evaluation import report
    from twin_ops.features.embed import Embedder

    started = time.perf_counter()
    check_params(params.evaluation)
    settings = settings or Settings()
    registry = registry or Registry(paths.models)
    name = model_name(params, author_id)
    chosen, production, contenders = _contenders(params, paths, registry, name, candidate)
    held_out = samples.held_out(paths, author_id, params.evaluation.num_samples)
    author_text = samples.training_text(paths, author_id)
    reference_style = stylometry.style_reference(
        author_text, params.evaluation.stylometry_words, params.evaluation.ttr_window
    )
    embedder = Embedder(params.features.embedding_model, params.features.device, params.features.embedding_batch_size)
    if params.rag.query_expansions:  # each contender's model writes its own expansions, as when served

        def retrieve(expand):
            return grounding.retrieve(params, settings, author_id, held_out, embedder, expand)

    else:  # the same passages for every contender: retrieve once
        shared = grounding.retrieve(params, settings, author_id, held_out, embedder)

        def retrieve(expand):
            return shared

    device = llm.pick_device(params.training.device)
    models = [score_model(c, params, held_out, retrieve, device, log) for c in contenders]
    notes = [retrieve(None)[1] if not params.rag.query_expansions else "retrieval: per contender (query expansion)"]

    answers = [s.answer for s in held_out]
    references = embedder.encode(answers)
    centroid = embedder.encode(author_text).mean(axis=0)
    centroid /= np.linalg.norm(centroid) or 1.0
    for scores in models:
        sample_passages = [scores.passages.get(s.id, []) for s in held_out] if scores.passages else None
        scores.samples.add_means(similarity_scores(embedder, scores.generations, references, centroid))
        text_scores(scores.samples, scores.generations, reference_style, params)
        scores.samples.add_means(grounding.grounding_scores(scores.generations, answers, sample_passages))
    if params.evaluation.judge.enabled:
        for scores in models:
            scores.samples.add_means(
                llm_judge.judge(params.evaluation.judge, [s.instruction for s in held_out], answers, scores.generations)
            )
    else:
        notes.append("LLM-as-judge off (evaluation.judge.enabled: false)")
    # The held-out answers against the author's training text: what the author scores (a ceiling).
    # Their style_similarity would be 1 by construction (each answer against itself), so it is left out.
    author = SampleScores(len(held_out))
    similarity = similarity_scores(embedder, answers, references, centroid)
    author.add_means({"author_similarity": similarity["author_similarity"]})
    text_scores(author, answers, reference_style, params)
    author_style = author.metrics()

    # Paired bootstrap: the candidate against production (if any) and base, on the same resamples.
    mine = models[0]
    others = models[1:]
    if production is not None and not any(m.role == PRODUCTION for m in others):
        # production IS this candidate: compare it with itself (no change, so no promotion)
        others.insert(0, ModelScores(PRODUCTION, mine.label, mine.samples, mine.generations))
    against = others[0]  # production if any, else base
    rules = params.evaluation.bootstrap
    indices = bootstrap.resample_indices(len(held_out), rules.resamples, rules.seed)
    comparisons = [
        comparison
        for other in others
        for comparison in bootstrap.compare(mine.samples, other.samples, other.role, indices, rules.confidence)
    ]
    if len(held_out) < params.evaluation.min_samples:
        notes.append(
            f"only {len(held_out)} held-out samples (evaluation.min_samples: {params.evaluation.min_samples}): "
            "the intervals are wide, and a percentile bootstrap on so few samples is optimistic"
        )
    decision = decide(
        comparisons,
        params.evaluation,
        candidate_label=mine.label,
        reference_role=against.role,
        reference_label=against.label,
        samples=len(held_out),
        resamples=rules.resamples,
    )
    log(decision.line())
    registry.update_metrics(
        name, chosen.version, {f"{REGISTRY_PREFIX}{k}": v for k, v in mine.metrics.items() if np.isfinite(v)}
    )
    result = EvaluationResult(
        author_id=author_id,
        model_name=name,
        candidate_version=chosen.version,
        production_version=production.version if production else None,
        samples=held_out,
        models=models,
        author_style=author_style,
        notes=notes,
        decision=decision,
        output_dir=paths.evaluation_output(author_id),
    )
    result.seconds = time.perf_counter() - started
    result.files = report.write_all(result, params)
    log(result.line())
    return result
