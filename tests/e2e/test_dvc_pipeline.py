"""The DVC pipeline end to end in a scratch git repo: crawl the demo site, validate, index.

Real `dvc repro` runs the real `twin-ops` commands against the demo site on 127.0.0.1 and the
Weaviate server the test run uses. The tests run in order and share the repo: each step builds on
the state the previous one left, as a user's repo would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from twin_ops.demo.server import SiteServer
from twin_ops.demo.site import build_site
from twin_ops.domain import RawDocument, read_jsonl, write_jsonl
from twin_ops.features import index
from twin_ops.services.weaviate import connect

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTHOR = "wren-halvorsen"
SUFFIX = uuid.uuid4().hex[:6].capitalize()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("site")
    content = work / "content"
    shutil.copytree(ROOT / "include" / "demo_site" / "content", content)
    out = work / "public"
    server = SiteServer(out)
    build_site(out, server.url, content, ROOT / "include" / "demo_site" / "repo", posts_per_page=10)
    with server:
        yield server, content, out


@pytest.fixture(scope="module")
def repo(tmp_path_factory, site):
    server, _, _ = site
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "include" / "authors", repo / "include" / "authors")
    # The demo author's export source is a folder in the repository (relative to it).
    shutil.copytree(ROOT / "include" / "demo_site" / "export", repo / "include" / "demo_site" / "export")
    shutil.copytree(ROOT / "twin_ops", repo / "twin_ops", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["features"]["documents_alias"] = f"DvcDocs{SUFFIX}"  # never touch the real index
    params["features"]["chunks_alias"] = f"DvcChunks{SUFFIX}"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/.twin/\n/reports/gx/\n__pycache__/\n")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TWIN_OPS_HOME": str(repo),
        "DEMO_SITE_URL": server.url,
    }
    env.pop("TWIN_OPS_PARAM__features__chunks_alias", None)
    git(repo, env, "init", "-q")
    git(repo, env, "config", "user.email", "ci@twin-ops.invalid")
    git(repo, env, "config", "user.name", "ci")
    run(repo, env, "dvc", "init", "-q")
    run(repo, env, "dvc", "config", "core.analytics", "false")
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", "pipeline")
    yield repo, env
    with connect() as client:
        for alias in (params["features"]["documents_alias"], params["features"]["chunks_alias"]):
            target = index.alias_target(client, alias)
            if target:
                client.alias.delete(alias_name=alias)
                client.collections.delete(target)


def run(repo: Path, env: dict, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def git(repo: Path, env: dict, *args: str) -> str:
    return run(repo, env, "git", *args).stdout


def ran_stages(result: subprocess.CompletedProcess) -> list[str]:
    return sorted(
        line.split("'")[1] for line in (result.stdout + result.stderr).splitlines() if line.startswith("Running stage")
    )


def commit(repo: Path, env: dict, message: str) -> str:
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-qm", message)
    return git(repo, env, "rev-parse", "HEAD").strip()


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def index_counts(repo: Path) -> dict[str, int]:
    params = yaml.safe_load((repo / "params.yaml").read_text())["features"]
    with connect() as client:
        return {
            alias: len(client.collections.get(alias)) for alias in (params["documents_alias"], params["chunks_alias"])
        }


STAGES = [f"crawl@{AUTHOR}", f"features@{AUTHOR}", f"validate_raw@{AUTHOR}"]


def test_repro_runs_every_stage_once_then_none(repo):
    repo, env = repo
    first = run(repo, env, "dvc", "repro", "features")
    assert ran_stages(first) == STAGES
    assert (repo / "data" / "raw" / AUTHOR / "blog.jsonl").exists()
    assert index_counts(repo)[f"DvcChunks{SUFFIX}"] > 100
    commit(repo, env, "data v1")
    second = run(repo, env, "dvc", "repro", "features")
    assert ran_stages(second) == []


def test_a_changed_param_reruns_only_the_stages_that_use_it(repo):
    repo, env = repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["quality"]["raw_documents"]["near_empty_chars"] = 150
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(repo, env, "dvc", "repro", "features")
    # validate_raw reruns; its output is byte-identical, so features is skipped by hash.
    assert ran_stages(result) == [f"validate_raw@{AUTHOR}"]
    commit(repo, env, "stricter near-empty threshold")


def test_lineage_traces_features_back_to_the_crawl(repo):
    repo, env = repo
    output = run(repo, env, "twin-ops", "lineage", f"data/features/{AUTHOR}").stdout
    for expected in (
        f"features@{AUTHOR}",
        f"validate_raw@{AUTHOR}",
        f"crawl@{AUTHOR}",
        "quality.raw_documents.near_empty_chars = 150",
    ):
        assert expected in output, output
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    raw_md5 = next(o["md5"] for o in lock[f"validate_raw@{AUTHOR}"]["outs"] if o["path"] == f"data/raw/{AUTHOR}")
    assert raw_md5 in output  # the exact input version of the features


def test_a_defective_batch_stops_at_validation_and_changes_nothing(repo):
    repo, env = repo
    published = tree_bytes(repo / "data" / "raw" / AUTHOR)
    features = tree_bytes(repo / "data" / "features" / AUTHOR)
    counts = index_counts(repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]

    store = repo / "data" / "crawl" / AUTHOR / "blog.jsonl"
    documents = read_jsonl(store, RawDocument)
    documents[0] = documents[0].model_copy(update={"author_id": "juno-marsh"})  # a wrong-author record
    write_jsonl(store, documents)
    result = run(repo, env, "dvc", "repro", "features", check=False)
    assert result.returncode != 0
    assert "author matches config" in result.stdout + result.stderr
    assert tree_bytes(repo / "data" / "raw" / AUTHOR) == published
    assert tree_bytes(repo / "data" / "features" / AUTHOR) == features
    assert index_counts(repo) == counts
    # The crawl stage itself succeeded (it records the batch it made); the published data version
    # and everything after it are as they were.
    after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in (f"validate_raw@{AUTHOR}", f"features@{AUTHOR}"):
        assert after[stage] == lock[stage]
    git(repo, env, "checkout", "--", "dvc.lock")  # back to the last good crawl
    run(repo, env, "dvc", "checkout", "--force", f"data/crawl/{AUTHOR}")
    assert ran_stages(run(repo, env, "dvc", "repro", "features")) == []


def test_versions_are_listed_and_an_old_one_restores(repo, site):
    repo, env = repo
    server, content, out = site
    v1 = git(repo, env, "rev-parse", "HEAD").strip()
    v1_raw = tree_bytes(repo / "data" / "raw" / AUTHOR)
    post = content / "posts" / "retries-with-manners.md"
    post.write_text(post.read_text().replace("The harbour office opens at nine.", "The harbour office opens at ten."))
    build_site(out, server.url, content, ROOT / "include" / "demo_site" / "repo", posts_per_page=10)
    run(repo, env, "dvc", "repro", "--force", "--single-item", f"crawl@{AUTHOR}")
    result = run(repo, env, "dvc", "repro", "features")
    assert ran_stages(result) == [f"features@{AUTHOR}", f"validate_raw@{AUTHOR}"]
    v2 = commit(repo, env, "data v2: one article edited")

    versions = run(repo, env, "twin-ops", "data", "versions").stdout
    assert v1[:10] in versions and v2[:10] in versions
    report = json.loads((repo / "reports" / "quality" / "raw_documents" / f"{AUTHOR}.json").read_text())
    assert str(report["rows"]) in versions

    git(repo, env, "checkout", v1, "--", "dvc.lock")
    run(repo, env, "dvc", "checkout", "--force", "--with-deps", "features")  # training has not run here
    assert tree_bytes(repo / "data" / "raw" / AUTHOR) == v1_raw
    git(repo, env, "checkout", v2, "--", "dvc.lock")
    run(repo, env, "dvc", "checkout", "--force", "--with-deps", "features")
    assert tree_bytes(repo / "data" / "raw" / AUTHOR) != v1_raw
