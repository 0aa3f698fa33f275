"""Task defaults every twin-ops DAG uses: retries with backoff, timeouts, a failure summary.

Read at parse time, so only params.yaml (a YAML file) is loaded here: no stage code, no heavy
libraries (the DAG-integrity test checks that).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from typing import Any

import pendulum

from twin_ops.config import Params, load_params

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
log = logging.getLogger("twin_ops.airflow")


@cache
def params() -> Params:
    return load_params()


def timeout(kind: str) -> timedelta:
    """execution_timeout for a kind of task (airflow.timeouts_s in params.yaml)."""
    return timedelta(seconds=getattr(params().airflow.timeouts_s, kind))


def default_args() -> dict[str, Any]:
    a = params().airflow
    return {
        "owner": "twin-ops",
        "retries": a.retries,
        "retry_delay": timedelta(seconds=a.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=a.max_retry_delay_s),
        "execution_timeout": timeout("default"),
        "on_failure_callback": log_failure,
    }


def feature_asset_name(author_id: str) -> str:
    return f"twin_features_{author_id.replace('-', '_')}"


def feature_asset_uri(author_id: str) -> str:
    return f"twin-ops://features/{author_id}"


def log_failure(context: dict[str, Any]) -> None:
    """One line saying which task failed, for which author, why, and where its log is."""
    from twin_ops.dag_tasks.common import failure_summary

    ti = context["ti"]
    error = context.get("exception") or "unknown error"
    line = failure_summary(
        ti.dag_id, ti.task_id, getattr(ti, "map_index", -1), getattr(ti, "try_number", 0), error, ti.log_url
    )
    log.error(line)
    print(line, flush=True)


@contextmanager
def stage_errors() -> Iterator[None]:
    """Around every task body: services from Airflow connections, and the right kind of failure.

    A failed check or bad input fails the task at once (retrying cannot fix it); anything else (a
    crashed process, a service not up yet) raises as is and is retried.
    """
    import os

    from airflow.sdk.exceptions import AirflowFailException

    from twin_airflow.connections import service_environment
    from twin_ops.config import ConfigError
    from twin_ops.dag_tasks.common import StageFailed

    os.environ.update(service_environment())  # stage code and its child processes read these
    try:
        yield
    except (StageFailed, ConfigError) as exc:
        raise AirflowFailException(str(exc)) from exc
