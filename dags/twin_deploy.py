"""twin_deploy (manual): serve a given model version, or roll back to the previous one.

deploy: production ← the chosen registry version (default: the candidate); rollback: production ←
previous. Either way the running Ray Serve app swaps to it in place, a health check and a smoke
query must pass, and on failure the registry and the served model go back to what they were.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from twin_airflow.defaults import START_DATE, default_args, params, run_stage, timeout
from twin_airflow.links import SERVE_ENDPOINT, push_link

AUTHORS = list(params().project.authors)


@dag(
    dag_id="twin_deploy",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**default_args(), "retries": 0},
    params={
        "author": Param(AUTHORS[0], enum=AUTHORS, title="Author"),
        "action": Param(
            "deploy",
            enum=["deploy", "rollback"],
            values_display={"deploy": "Deploy a version", "rollback": "Roll back to the previous version"},
            title="Action",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="Registry version to deploy (empty = the candidate). Ignored by rollback.",
        ),
    },
    tags=["twin-ops", "serving"],
    doc_md=__doc__,
)
def twin_deploy():
    @task(execution_timeout=timeout("serving"))
    def deploy(**context) -> dict:
        from twin_ops.dag_tasks import deploy as deploy_tasks

        form = context["params"]
        result = run_stage(deploy_tasks.deploy, form["author"], form["action"], form["version"])
        if result["endpoint"]:
            push_link(context, SERVE_ENDPOINT, result["endpoint"] + "/docs")
        return result

    @task(execution_timeout=timeout("serving"))
    def smoke_query(promoted: dict, **context) -> dict:
        from twin_ops.dag_tasks import training

        run = {"author": context["params"]["author"], "overrides": {}}
        return run_stage(training.smoke_query, run, promoted)

    smoke_query(deploy())


twin_deploy()
