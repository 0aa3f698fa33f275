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
from twin_ops.evaluation import grounding, lm, samples, stylometry
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
        metrics = lm.loss_metrics(model, [(s.instruction, s.answer) for s in held_out], params.training.max_length)
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
        f"evaluate: {contender.label} loss {metrics['loss']:.3f}, {len(generations)} generations "
        f"({time.perf_counter() - started:.0f}s)"
    )
    return ModelScores(contender.role, contender.label, metrics, generations, passages)


def similarity_metrics(embedder, generations: list[str], references: np.ndarray, centroid: np.ndarray) -> dict:
    vectors = embedder.encode(generations)
    return {
        "style_similarity": float(np.mean(np.sum(vectors * references, axis=1))),
        "author_similarity": float(np.mean(vectors @ centroid)),
    }


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
        scores.metrics.update(similarity_metrics(embedder, scores.generations, references, centroid))
        scores.metrics.update(stylometry.style_metrics(reference_style, scores.generations))
        scores.metrics.update(grounding.grounding_metrics(scores.generations, answers, sample_passages))
    if params.evaluation.judge.enabled:
        for scores in models:
            scores.metrics.update(
                llm_judge.judge(params.evaluation.judge, [s.instruction for s in held_out], answers, scores.generations)
            )
    else:
        notes.append("LLM-as-judge off (evaluation.judge.enabled: false)")
    author_style = stylometry.style_metrics(reference_style, answers)
    # The held-out answers against the author's training text: what the author scores (a ceiling).
    # Their style_similarity would be 1 by construction (each answer against itself), so it is left out.
    author_style["author_similarity"] = similarity_metrics(embedder, answers, references, centroid)["author_similarity"]

    mine = models[0]
    against = next((m for m in models if m.role == PRODUCTION), None)
    if production is not None and against is None:  # production IS this candidate: compare with itself
        against = ModelScores(PRODUCTION, mine.label, dict(mine.metrics), mine.generations)
    against = against or next(m for m in models if m.role == "base")
    decision = decide(
        mine.metrics,
        against.metrics,
        params.evaluation,
        candidate_label=mine.label,
        reference_role=against.role,
        reference_label=against.label,
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
