"""Airflow's home under the project: the environment every `airflow` command here runs with.

Kept as plain environment variables (Airflow's own AIRFLOW__SECTION__KEY form) so the same
settings reach `airflow dags test`, `airflow standalone` and test subprocesses without an
airflow.cfg to keep in sync. twin_ops never imports airflow; this module only names settings.
"""

from __future__ import annotations

from twin_ops.config import Params, Paths


def airflow_environment(params: Params, paths: Paths) -> dict[str, str]:
    home = paths.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "TWIN_OPS_HOME": str(paths.root),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # A 2-core machine: more parallel tasks only thrash.
        "AIRFLOW__CORE__PARALLELISM": str(params.airflow.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(params.airflow.max_active_tasks_per_dag),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
