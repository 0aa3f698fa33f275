"""Shared by the DAG task functions: params with a run's overrides, DVC commits, failure summaries."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from twin_ops.config import Params, Paths, Settings, load_params, resolve_paths


class StageFailed(RuntimeError):
    """A stage failed for a reason a retry cannot fix (failed check, bad config, bad input)."""


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"training.sft.max_steps": 20}`` → ``{"training": {"sft": {"max_steps": 20}}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return tree


def assignments(flat: Mapping[str, Any]) -> list[str]:
    """The same overrides as ``--set section.key=value`` arguments for a `twin-ops` subprocess."""
    return [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        for key, value in flat.items()
    ]


def load(overrides: Mapping[str, Any] | None = None) -> tuple[Params, Paths, Settings]:
    params = load_params(overrides=nested(overrides or {}))
    settings = Settings()
    return params, resolve_paths(params, settings), settings


def twin_ops_command(*args: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``python -m twin_ops <args>`` in a child process; its output goes to the task log.

    A child process, not a call: Scrapy's reactor and a training run's memory die with it.
    """
    command = [sys.executable, "-m", "twin_ops", *args]
    print("running:", " ".join(command), flush=True)
    result = subprocess.run(command, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise StageFailed(f"`twin-ops {' '.join(args)}` exited with status {result.returncode} (see the log above)")


@contextmanager
def _repo_lock(paths: Paths) -> Iterator[None]:
    """DVC refuses a second command while one holds the repo: mapped tasks take turns here."""
    paths.state.mkdir(parents=True, exist_ok=True)
    with open(paths.state / "dvc-commit.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dvc_commit(paths: Paths, stages: list[str]) -> list[str]:
    """Record the stages' current outputs in dvc.lock and the DVC cache (a new data version)."""
    if not (paths.root / ".dvc").is_dir():
        raise StageFailed(f"{paths.root} is not a DVC repository (run `dvc init` there)")
    command = [str(Path(sys.executable).parent / "dvc"), "commit", "--force", *stages]
    with _repo_lock(paths):
        result = subprocess.run(command, cwd=paths.root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StageFailed(f"`dvc commit {' '.join(stages)}` failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    print(f"dvc commit: {', '.join(stages)} recorded in {paths.root / 'dvc.lock'}", flush=True)
    return stages


def failure_summary(dag_id: str, task_id: str, map_index: int, try_number: int, error: object, log_url: str) -> str:
    """One line a person can act on, for the task log and alerting."""
    where = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
    return f"{dag_id}: task {where} failed on try {try_number}: {type(error).__name__}: {error} (log: {log_url})"
