"""twin_training, for one author: datasets → validate → SFT → DPO → register → evaluate → gate → promote.

A run is described by a small dict (``RunSpec``) made once from the trigger — the Params form, or
the feature asset event that scheduled it — and passed to every task, so each task loads the same
params.yaml + overrides.
"""

from __future__ import annotations

from typing import Any, TypedDict

from twin_ops.dag_tasks.common import StageFailed, assignments, load, twin_ops_command

BACKENDS = ("local", "docker")


class RunSpec(TypedDict):
    author: str
    backend: str  # "local" process or "docker" container (DockerOperator)
    skip_dpo: bool
    overrides: dict[str, Any]  # dotted params.yaml keys → values, for every stage of this run


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
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    overrides.update(form.get("overrides") or {})
    params, paths, _ = load(overrides)  # a bad value fails here, before any work, with the key named
    from twin_ops.collect.authors import author_file

    if not author_file(params, paths, author).exists():
        raise StageFailed(f"unknown author {author!r}: no {author_file(params, paths, author)}")
    spec = RunSpec(author=author, backend=backend, skip_dpo=bool(form.get("skip_dpo")), overrides=overrides)
    print(f"twin_training run: {spec}", flush=True)
    return spec


def datasets(run: RunSpec) -> dict[str, Any]:
    """Instruction and preference datasets from the author's cleaned documents (GX-validated)."""
    from dataclasses import asdict

    from twin_ops.datasets.build import run_datasets
    from twin_ops.quality.frames import DatasetNotFound
    from twin_ops.quality.validate import ValidationFailed

    params, paths, settings = load(run["overrides"])
    try:
        summary = run_datasets(run["author"], params, paths, settings)
    except (ValidationFailed, DatasetNotFound) as exc:
        raise StageFailed(f"{exc}; data/datasets/{run['author']} is unchanged") from exc
    print(summary.line(), flush=True)
    return asdict(summary)


def validate_datasets(run: RunSpec) -> dict[str, Any]:
    """Re-check the published datasets the training stages will read."""
    from twin_ops.quality.validate import validate_dataset

    params, paths, _ = load(run["overrides"])
    result: dict[str, Any] = {"author": run["author"]}
    for dataset in ("instruct_dataset", "preference_dataset"):
        report = validate_dataset(dataset, run["author"], params, paths)
        if not report.success:
            raise StageFailed(f"{dataset} failed {len(report.failed)} checks (Data Docs: {report.data_docs})")
        result[dataset] = report.rows
        result["data_docs"] = str(report.data_docs)
    return result


def _stage_result(run: RunSpec, stage: str) -> dict[str, Any]:
    import json

    from twin_ops.training.train import stage_dir

    params, paths, _ = load(run["overrides"])
    folder = stage_dir(params, paths, run["author"], stage)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"stage": stage, "output_dir": str(folder), "model_card": str(folder / "README.md"), "metrics": metrics}


def train_local(run: RunSpec, stage: str) -> dict[str, Any]:
    """One stage as a local process (`twin-ops train`); a retry resumes from its last checkpoint."""
    overrides = {**run["overrides"], "training.runner": "local"}
    twin_ops_command("train", "--stage", stage, "--author", run["author"], *_set_args(overrides))
    return _stage_result(run, stage)


def container_kwargs(run: RunSpec, stage: str) -> dict[str, Any]:
    """DockerOperator arguments for one stage: image (built locally when needed), entrypoint,
    mounts, GPU device requests, network_mode="none" (twin_ops.training.container)."""
    from twin_ops.training.container import docker_operator_kwargs

    params, paths, settings = load(run["overrides"])
    return docker_operator_kwargs(
        stage, run["author"], params, paths, settings, overrides=assignments(run["overrides"])
    )


def _set_args(overrides: dict[str, Any]) -> list[str]:
    return [arg for item in assignments(overrides) for arg in ("--set", item)]


def register_candidate(run: RunSpec) -> dict[str, Any]:
    """The last trained stage (DPO, or SFT when DPO was skipped) becomes the registry's candidate."""
    from twin_ops.evaluation.candidate import NoTrainedModel
    from twin_ops.evaluation.candidate import register_candidate as register

    params, paths, _ = load(run["overrides"])
    try:
        version = register(run["author"], params, paths, stage="sft" if run["skip_dpo"] else "dpo")
    except NoTrainedModel as exc:
        raise StageFailed(str(exc)) from exc
    return {"model_name": version.name, "version": version.version}


def evaluate(run: RunSpec, candidate: dict[str, Any]) -> dict[str, Any]:
    """Candidate vs production (if any) vs base on the held-out split; writes the report and decision."""
    from twin_ops.evaluation.run import evaluate as evaluate_models

    params, paths, settings = load(run["overrides"])
    result = evaluate_models(run["author"], params, paths, settings, candidate=candidate["version"])
    print(result.line(), flush=True)
    print(result.decision.line(), flush=True)
    return {
        "promote": result.decision.promote,
        "decision": result.decision.line(),
        "reasons": result.decision.reasons,
        "output_dir": str(result.output_dir),
        "report": str(result.files.get("report", result.output_dir / "report.md")),
        "metrics": {m.role: m.metrics for m in result.models},
    }


def promote(run: RunSpec, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Move production to the approved candidate and make the running Ray Serve app serve it; a
    failed health check or smoke query rolls both back and fails the task with the reason."""
    from pathlib import Path

    from twin_ops.config import Settings
    from twin_ops.evaluation.promote import PromotionFailed, promote_from_decision
    from twin_ops.evaluation.report import read_decision
    from twin_ops.registry.store import RegistryError
    from twin_ops.serving.ops import serve_url

    params, paths, _ = load(run["overrides"])
    decision = read_decision(Path(evaluation["output_dir"]))
    # The app serves one twin (serving.model_name); another author's twin is promoted in the
    # registry only, and served by an app configured for it.
    served = decision["model_name"] == params.serving.model_name
    url = serve_url(params)
    api_key = Settings().twin_ops_api_key
    try:
        result = promote_from_decision(
            decision, params, paths, serve=served, url=url if served else None, api_key=api_key
        )
    except (PromotionFailed, RegistryError) as exc:  # RegistryError: production moved since the gate looked
        raise StageFailed(str(exc)) from exc
    print(result.line(), flush=True)
    return {
        "model_name": result.name,
        "version": result.promoted.version,
        "replaced": result.replaced,
        "endpoint": url if served else None,
        "model_version": result.swap.model_version if result.swap else None,
    }


def smoke_query(run: RunSpec, promoted: dict[str, Any]) -> dict[str, Any]:
    """One /rag question through the HTTP API: the answer must come from the promoted version."""
    from twin_ops.config import Settings
    from twin_ops.serving.client import TwinClient

    params, _, _ = load(run["overrides"])
    if promoted["endpoint"] is None:
        print(f"smoke query: skipped, the app serves {params.serving.model_name}, not {promoted['model_name']}")
        return {"model_version": None, "answer": None, "sources": []}
    client = TwinClient(promoted["endpoint"], Settings().twin_ops_api_key)
    answer = client.rag(params.serving.smoke_query, author=run["author"], max_tokens=32)
    expected = f"{promoted['model_name']}:v{promoted['version']}"
    if answer.get("model_version") != expected:
        raise StageFailed(f"the smoke query was answered by {answer.get('model_version')}, not {expected}")
    print(f"smoke query: {params.serving.smoke_query!r} -> {answer['answer'][:200]!r}", flush=True)
    for source in answer.get("sources", []):
        print(f"  source: {source.get('title')} {source.get('url')} ({source.get('score')})", flush=True)
    return {"model_version": answer["model_version"], "answer": answer["answer"], "sources": answer.get("sources", [])}
