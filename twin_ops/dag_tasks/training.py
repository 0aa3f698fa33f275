"""twin_training, for one author: datasets → validate → SFT → DPO → register → evaluate → gate → promote.

A run is described by a small record (``RunSpec``) made once from the trigger — the Params form, or
the feature asset event that scheduled it — and passed to every task, so each task loads the same
params.yaml + overrides. Functions take the records the previous task returned; pydantic's
``validate_call`` turns the JSON Airflow hands over (XCom) back into them.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import validate_call

from twin_ops.config import as_assignments
from twin_ops.dag_tasks.common import StageFailed, load, twin_ops_command
from twin_ops.dag_tasks.records import (
    BACKENDS,
    CandidateRegistered,
    DatasetsValidated,
    EvaluationSummary,
    Promoted,
    RunSpec,
    SmokeAnswer,
    StageTrained,
)

log = logging.getLogger(__name__)


def resolve_run(form: dict[str, Any], asset_events: list[dict[str, Any]]) -> RunSpec:
    """The run's author and params: from the feature asset event when one scheduled the run, else
    from the form. Form fields map onto params.yaml keys; `overrides` adds any other keys."""
    authors = [event["author"] for event in asset_events if event.get("author")]
    author = authors[-1] if authors else form["author"]
    backend = form.get("backend", "local")
    if backend not in BACKENDS:
        raise StageFailed(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    overrides: dict[str, Any] = {
        "training.base_model": form.get("base_model"),
        "training.sft.epochs": form.get("sft_epochs"),
        "training.sft.max_steps": form.get("sft_max_steps"),
        "training.dpo.max_steps": form.get("dpo_max_steps"),
        "training.sft.learning_rate": form.get("learning_rate"),
        "training.lora.r": form.get("lora_rank"),
        "training.container.gpus": form.get("gpus"),
        "datasets.use_feedback": form.get("use_feedback"),
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    overrides.update(form.get("overrides") or {})
    params, paths, _ = load(overrides)  # a bad value fails here, before any work, with the key named
    from twin_ops.collect.authors import author_file

    if not author_file(params, paths, author).exists():
        raise StageFailed(f"unknown author {author!r}: no {author_file(params, paths, author)}")
    spec = RunSpec(author=author, backend=backend, skip_dpo=bool(form.get("skip_dpo")), overrides=overrides)
    log.info("twin_training run: %s", spec.model_dump_json())
    return spec


@validate_call
def datasets(run: RunSpec):
    """Instruction and preference datasets from the author's cleaned documents (GX-validated); with
    ``datasets.use_feedback`` the trace store's feedback is exported first (`twin-ops feedback
    export`) and its trusted corrections become preference pairs."""
    from twin_ops.datasets.build import run_datasets
    from twin_ops.quality.frames import DatasetNotFound
    from twin_ops.quality.validate import ValidationFailed

    params, paths, settings = load(run.overrides)
    try:
        if params.datasets.use_feedback:
            from twin_ops.traces.export import export_feedback

            log.info(export_feedback(run.author, params, paths).line())
        summary = run_datasets(run.author, params, paths, settings)
    except (ValidationFailed, DatasetNotFound) as exc:
        raise StageFailed(f"{exc}; {paths.datasets(run.author)} is unchanged") from exc
    log.info(summary.line())
    return summary


@validate_call
def validate_datasets(run: RunSpec) -> DatasetsValidated:
    """Re-check the published datasets the training stages will read."""
    from twin_ops.quality.validate import validate_dataset

    params, paths, _ = load(run.overrides)
    rows: dict[str, int] = {}
    data_docs = ""
    for dataset in ("instruct_dataset", "preference_dataset"):
        report = validate_dataset(dataset, run.author, params, paths)
        if not report.success:
            raise StageFailed(f"{dataset} failed {len(report.failed)} checks (Data Docs: {report.validation_page})")
        rows[dataset] = report.rows
        data_docs = str(report.validation_page)
    return DatasetsValidated(author=run.author, data_docs=data_docs, **rows)


def _stage_result(run: RunSpec, stage: str) -> StageTrained:
    import json

    _, paths, _ = load(run.overrides)
    return StageTrained(
        stage=stage,
        output_dir=str(paths.training_output(run.author, stage)),
        model_card=str(paths.model_card(run.author, stage)),
        metrics=json.loads(paths.training_metrics(run.author, stage).read_text()),
    )


@validate_call
def train_local(run: RunSpec, stage: str) -> StageTrained:
    """One stage as a local process (`twin-ops train`); a retry resumes from its last checkpoint."""
    overrides = {**run.overrides, "training.runner": "local"}
    sets = [arg for item in as_assignments(overrides) for arg in ("--set", item)]
    twin_ops_command("train", "--stage", stage, "--author", run.author, *sets)
    return _stage_result(run, stage)


@validate_call
def container_kwargs(run: RunSpec, stage: str) -> dict[str, Any]:
    """DockerOperator arguments for one stage: image (built locally when needed), entrypoint,
    mounts, GPU device requests, network_mode="none" (twin_ops.training.container)."""
    from twin_ops.training.container import docker_operator_kwargs

    params, paths, settings = load(run.overrides)
    return docker_operator_kwargs(stage, run.author, params, paths, settings, overrides=as_assignments(run.overrides))


@validate_call
def register_candidate(run: RunSpec) -> CandidateRegistered:
    """The last trained stage (DPO, or SFT when DPO was skipped) becomes the registry's candidate."""
    from twin_ops.evaluation.candidate import register_candidate as register

    params, paths, _ = load(run.overrides)
    version = register(run.author, params, paths, stage="sft" if run.skip_dpo else "dpo")
    return CandidateRegistered(model_name=version.name, version=version.version)


@validate_call
def evaluate(run: RunSpec, candidate: CandidateRegistered) -> EvaluationSummary:
    """Candidate vs production (if any) vs base on the held-out split; writes the report and decision.

    The gate's decision is logged once, by the evaluation itself.
    """
    from twin_ops.evaluation.report import finite
    from twin_ops.evaluation.run import evaluate as evaluate_models

    params, paths, settings = load(run.overrides)
    result = evaluate_models(run.author, params, paths, settings, candidate=candidate.version)
    return EvaluationSummary(
        promote=result.decision.promote,
        reasons=result.decision.reasons,
        output_dir=str(result.output_dir),
        decision_file=str(paths.gate_decision(run.author)),
        report=str(result.files.get("report", result.output_dir / "report.md")),
        # XComs are JSON: a metric that could not be measured (nan, inf) travels as None, as in metrics.json.
        metrics={m.role: {k: finite(v) for k, v in m.metrics.items()} for m in result.models},
    )


@validate_call
def promote(run: RunSpec, evaluation: EvaluationSummary) -> Promoted:
    """Move production to the approved candidate and make the running Ray Serve app serve it; a
    failed health check or smoke query rolls both back and fails the task with the reason."""
    from pathlib import Path

    from twin_ops.config import Settings
    from twin_ops.evaluation.gate import GateDecision
    from twin_ops.evaluation.promote import promote_from_decision
    from twin_ops.serving.ops import serve_url

    params, paths, _ = load(run.overrides)
    decision = GateDecision.load(Path(evaluation.decision_file))
    # The app serves every author's twin: the promoted one swaps, the others keep serving.
    url = serve_url(params)
    # PromotionFailed; RegistryError when production moved since the gate looked
    result = promote_from_decision(decision, params, paths, serve=True, url=url, api_key=Settings().twin_ops_api_key)
    log.info(result.line())
    return Promoted(
        model_name=result.name,
        version=result.promoted.version,
        replaced=result.replaced,
        endpoint=url,
        model_version=result.swap.model_version if result.swap else None,
    )


@validate_call
def smoke_query(run: RunSpec, promoted: Promoted) -> SmokeAnswer:
    """One /rag question through the HTTP API: the answer must come from the promoted version."""
    from twin_ops.config import Settings
    from twin_ops.serving.client import TwinClient

    params, _, _ = load(run.overrides)
    client = TwinClient(promoted.endpoint, Settings().twin_ops_api_key)
    answer = client.rag(params.serving.smoke_query, author=run.author, max_tokens=32)
    expected = f"{promoted.model_name}:v{promoted.version}"
    if answer.get("model_version") != expected:
        raise StageFailed(f"the smoke query was answered by {answer.get('model_version')}, not {expected}")
    log.info("smoke query: %r -> %r", params.serving.smoke_query, answer["answer"][:200])
    for source in answer.get("sources", []):
        log.info("  source: %s %s (%s)", source.get("title"), source.get("url"), source.get("score"))
    return SmokeAnswer(
        model_version=answer["model_version"], answer=answer["answer"], sources=answer.get("sources", [])
    )
