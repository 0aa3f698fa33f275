"""Lineage and data versions, read from what DVC and git already record.

``dvc.lock`` holds, for every stage that ran, the command, the exact params it used and the hash
of every input and output. Following an artifact's producing stage back through the stages that
produced its inputs gives its whole chain to the raw crawl — no second bookkeeping to drift.
``git log -- dvc.lock`` gives the versions of each dataset.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from twin_ops.config import Paths
from twin_ops.errors import TwinOpsError


class LineageError(TwinOpsError, LookupError):
    """The artifact is not an output of any stage in dvc.lock."""


@dataclass
class StageRecord:
    name: str
    cmd: str
    params: dict[str, Any]
    deps: dict[str, str]  # path -> md5
    outs: dict[str, str]
    upstream: list[StageRecord] = field(default_factory=list)


def read_lock(text: str) -> dict[str, dict[str, Any]]:
    return (yaml.safe_load(text) or {}).get("stages", {})


def _files(entries: list[dict[str, Any]] | None) -> dict[str, str]:
    return {entry["path"]: entry.get("md5", "") for entry in entries or []}


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    else:
        into[prefix] = value


def _flat_params(params: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Dotted keys (quality.raw_documents.near_empty_chars) from dvc.lock's per-file params."""
    flat: dict[str, Any] = {}
    for values in (params or {}).values():  # keyed by params file
        _flatten("", values, flat)
    return flat


def _contains(output: str, path: str) -> bool:
    out, wanted = PurePosixPath(output), PurePosixPath(path)
    return wanted == out or out in wanted.parents


def _record(name: str, stage: dict[str, Any]) -> StageRecord:
    return StageRecord(
        name=name,
        cmd=stage.get("cmd", ""),
        params=_flat_params(stage.get("params")),
        deps=_files(stage.get("deps")),
        outs=_files(stage.get("outs")),
    )


def lineage(artifact: str, lock: dict[str, dict[str, Any]]) -> StageRecord:
    """The stage that produced ``artifact`` (a path relative to the repo), with its upstream chain."""
    wanted = PurePosixPath(artifact).as_posix().rstrip("/")
    for name, stage in lock.items():
        record = _record(name, stage)
        if any(_contains(out, wanted) for out in record.outs):
            seen = {name}
            _attach_upstream(record, lock, seen)
            return record
    raise LineageError(f"{artifact} is not an output of any stage in dvc.lock (has the pipeline run?)")


def _attach_upstream(record: StageRecord, lock: dict[str, dict[str, Any]], seen: set[str]) -> None:
    for dep in record.deps:
        for name, stage in lock.items():
            if name in seen:
                continue
            upstream = _record(name, stage)
            if any(_contains(out, dep) for out in upstream.outs):
                seen.add(name)
                _attach_upstream(upstream, lock, seen)
                record.upstream.append(upstream)


def lineage_of(artifact: str, paths: Paths) -> dict[str, Any]:
    """JSON-ready lineage for model cards and registries."""

    def as_dict(record: StageRecord) -> dict[str, Any]:
        return {
            "stage": record.name,
            "cmd": record.cmd,
            "params": record.params,
            "deps": record.deps,
            "outs": record.outs,
            "upstream": [as_dict(up) for up in record.upstream],
        }

    return as_dict(lineage(artifact, read_lock(paths.dvc_lock.read_text())))


@dataclass
class DataVersion:
    rev: str  # "workspace" for the current, possibly uncommitted, dvc.lock
    date: str
    subject: str
    outputs: dict[str, str]  # path -> md5 of published datasets
    rows: dict[str, int]  # report path -> validated row count


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def _version(paths: Paths, rev: str, date: str, subject: str, lock_text: str, show) -> DataVersion:
    lock = read_lock(lock_text)
    outputs: dict[str, str] = {}
    rows: dict[str, int] = {}
    for stage in lock.values():
        outputs.update(_files(stage.get("outs")))
    reports = f"{paths.quality_reports.relative_to(paths.root).as_posix()}/"
    for path in outputs:
        if path.startswith(reports) and path.endswith(".json"):
            try:
                rows[path] = int(json.loads(show(path))["rows"])
            except (subprocess.CalledProcessError, FileNotFoundError, KeyError, ValueError):
                continue
    data_dir = f"{paths.data.relative_to(paths.root).as_posix()}/"
    data = {path: md5 for path, md5 in outputs.items() if path.startswith(data_dir)}
    return DataVersion(rev, date, subject, data, rows)


def data_versions(paths: Paths, limit: int = 20) -> list[DataVersion]:
    """Newest first: the workspace's dvc.lock, then each commit that changed it."""
    root = paths.root
    versions = []
    if paths.dvc_lock.exists():
        text = paths.dvc_lock.read_text()
        versions.append(_version(paths, "workspace", "", "(current)", text, lambda p: (root / p).read_text()))
    lock = paths.dvc_lock.relative_to(root).as_posix()
    log = _git(root, "log", f"-{limit}", "--format=%H%x09%ad%x09%s", "--date=short", "--", lock)
    for line in log.splitlines():
        rev, date, subject = line.split("\t", 2)
        text = _git(root, "show", f"{rev}:{lock}")
        versions.append(_version(paths, rev[:10], date, subject, text, lambda p, r=rev: _git(root, "show", f"{r}:{p}")))
    return versions
