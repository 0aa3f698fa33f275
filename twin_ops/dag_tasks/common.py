"""Shared by the DAG task functions: params with a run's overrides, child `twin-ops` commands, DVC
commits, failure summaries."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from twin_ops.config import Params, Paths, Settings, load_params, resolve_paths
from twin_ops.errors import TwinOpsError

log = logging.getLogger(__name__)


class StageFailed(TwinOpsError, RuntimeError):
    """A stage failed for a reason a retry cannot fix (failed check, bad config, bad input)."""


def load(overrides: Mapping[str, Any] | None = None) -> tuple[Params, Paths, Settings]:
    """params.yaml with the run's dotted overrides (``{"training.sft.max_steps": 20}``), paths, settings."""
    params = load_params(overrides=overrides or {})
    settings = Settings()
    return params, resolve_paths(params, settings), settings


def twin_ops_command(*args: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``python -m twin_ops <args>`` in a child process; its output goes to the task log.

    A child process, not a call: Scrapy's reactor and a training run's memory die with it.
    """
    command = [sys.executable, "-m", "twin_ops", *args]
    log.info("running: %s", " ".join(command))
    result = subprocess.run(command, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise StageFailed(f"`twin-ops {' '.join(args)}` exited with status {result.returncode} (see the log above)")


def dvc_commit(paths: Paths, stages: list[str]) -> list[str]:
    """Record the stages' current outputs in dvc.lock and the DVC cache (a new data version).

    DVC refuses a second command while one holds the repo, so mapped tasks take turns on a file lock.
    """
    if not paths.dvc_repo.is_dir():
        raise StageFailed(f"{paths.root} is not a DVC repository (run `dvc init` there)")
    command = [str(Path(sys.executable).parent / "dvc"), "commit", "--force", *stages]
    paths.dvc_commit_lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(paths.dvc_commit_lock):
        result = subprocess.run(command, cwd=paths.root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StageFailed(f"`dvc commit {' '.join(stages)}` failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    log.info("dvc commit: %s recorded in %s", ", ".join(stages), paths.dvc_lock)
    return stages


def failure_summary(dag_id: str, task_id: str, map_index: int, try_number: int, error: object, log_url: str) -> str:
    """One line a person can act on, for the task log and alerting."""
    where = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
    return f"{dag_id}: task {where} failed on try {try_number}: {type(error).__name__}: {error} (log: {log_url})"
