"""Task defaults every twin-ops DAG uses: retries with backoff, timeouts, a failure summary.

Read at parse time, so only params.yaml (a YAML file) is loaded here: no stage code, no heavy
libraries (the DAG-integrity test checks that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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
    """The one place a twin-ops error becomes an Airflow outcome (twin_ops never imports Airflow).

    Services come from Airflow connections first. A TwinOpsError that is not ``retryable`` (a failed
    check, bad input or config) fails the task at once: retrying cannot fix it. A retryable one (a
    service not up yet) and anything unexpected (a crashed process) raise as they are, so Airflow
    retries them with backoff.
    """
    import os

    from airflow.sdk.exceptions import AirflowFailException

    from twin_airflow.connections import service_environment
    from twin_ops.errors import TwinOpsError

    os.environ.update(service_environment())  # stage code and its child processes read these
    try:
        yield
    except TwinOpsError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def run_stage(function: Callable[..., Any], *args: Any) -> Any:
    """Call one twin_ops.dag_tasks function for a task: errors mapped (stage_errors), and its
    typed record returned as JSON for XCom (``model_dump(mode="json")``, via pydantic)."""
    from pydantic import TypeAdapter

    with stage_errors():
        result = function(*args)
    return TypeAdapter(type(result)).dump_python(result, mode="json")
