"""twin_smoke: proves Airflow, the project's dags/ folder and twin_ops are wired together.

Temporary: it is deleted when the real DAGs (twin_nightly_refresh, twin_training, twin_deploy)
land. Heavy imports stay inside the task, as in every DAG here.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="twin_smoke",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["twin-ops", "smoke"],
)
def twin_smoke():
    @task
    def check_config() -> dict:
        from twin_ops.config import load_params

        params = load_params()
        print(f"twin-ops params loaded: weaviate v{params.weaviate.version}")
        return {"weaviate_version": params.weaviate.version}

    @task
    def check_weaviate(config: dict) -> int:
        from twin_ops.services.weaviate import connect

        with connect() as client:
            version = client.get_meta()["version"]
            if version != config["weaviate_version"]:
                raise RuntimeError(f"Weaviate is v{version}, params.yaml pins v{config['weaviate_version']}")
            return len(client.collections.list_all())

    check_weaviate(check_config())


twin_smoke()
