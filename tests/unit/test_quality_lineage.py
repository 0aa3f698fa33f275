"""Data versions and lineage read from dvc.lock (workspace and git history), through Paths."""

from __future__ import annotations

import json
import subprocess

import yaml

from twin_ops.config import Paths
from twin_ops.quality.lineage import data_versions, lineage_of

LOCK = {
    "schema": "2.0",
    "stages": {
        "validate_raw@wren": {
            "cmd": "twin-ops validate raw_documents --author wren --publish",
            "deps": [{"path": "data/crawl/wren", "md5": "c1"}],
            "outs": [
                {"path": "data/raw/wren", "md5": "r1"},
                {"path": "reports/quality/raw_documents/wren.json", "md5": "q1"},
            ],
        }
    },
}


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_versions_list_the_workspace_then_each_commit_with_validated_rows(tmp_path):
    paths = Paths(
        root=tmp_path, state=tmp_path / ".twin", data=tmp_path / "data", reports=tmp_path / "reports", cache=tmp_path
    )
    report = paths.quality_report("raw_documents", "wren")
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"rows": 34}))
    paths.dvc_lock.write_text(yaml.safe_dump(LOCK))
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.email=t@t.invalid", "-c", "user.name=t", "add", "-A")
    git(tmp_path, "-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-qm", "data v1")

    workspace, committed = data_versions(paths)
    assert workspace.rev == "workspace" and committed.subject == "data v1"
    for version in (workspace, committed):
        assert version.outputs == {"data/raw/wren": "r1"}  # data only, not the reports
        assert version.rows == {"reports/quality/raw_documents/wren.json": 34}
    assert lineage_of("data/raw/wren", paths)["stage"] == "validate_raw@wren"
