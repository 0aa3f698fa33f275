"""A real `airflow dags test` of the smoke DAG against the project's Airflow home."""

from __future__ import annotations

import subprocess

from tests.conftest import BIN


def test_twin_smoke_dag_runs(airflow_env):
    result = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", "twin_smoke"],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "twin-ops params loaded: weaviate v" in output
    assert "state=success" in output
