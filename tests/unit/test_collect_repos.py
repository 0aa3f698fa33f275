"""Git collection: the bilge-pump repository, made a git repository in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.collect import ROOT
from twin_ops.collect.repos import collect_repository
from twin_ops.collect.results import Collected
from twin_ops.demo.site import GIT_IDENTITY, REPO_DIR, init_git_repo
from twin_ops.domain import DocumentKind, Platform, QuarantineReason, Source, SourceType

TEXT_FILES = {
    "README.md",
    "docs/DESIGN.md",
    "bilge_pump/__init__.py",
    "bilge_pump/cli.py",
    "bilge_pump/pump.py",
    "tests/test_pump.py",
    "pyproject.toml",
    # Config files with planted fake secrets, for the scrubber (include/demo_site/planted_secrets.yaml).
    "deploy/bilge-pump.yaml",
    "deploy/bilge-pump.ini",
    "deploy/run.sh",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env={**os.environ, **GIT_IDENTITY})


@pytest.fixture
def repo(tmp_path, params) -> Path:
    """bilge-pump plus the hazards a real repository can hold, committed."""
    repo = tmp_path / "bilge-pump"
    shutil.copytree(ROOT / REPO_DIR, repo)
    (tmp_path / "outside.txt").write_text("a secret outside the repository\n")
    (repo / "secrets.txt").symlink_to(tmp_path / "outside.txt")
    (repo / "README.txt").symlink_to("README.md")  # in-repo symlink: a duplicate of its target
    (repo / "docs" / "HUGE.md").write_text("x" * (params.collect.git.max_file_bytes + 1))
    (repo / "data").mkdir()
    (repo / "data" / "blob.txt").write_bytes(b"\x89PNG\r\n\x00\x00binary")
    (repo / "notes").mkdir()
    (repo / "notes" / "latin1.txt").write_bytes("Smørrebrød på kajen".encode("latin-1"))
    init_git_repo(repo)
    (repo / "scratch.md").write_text("an untracked file in the working copy is not collected\n")
    return repo


def collect(source: Source, params, clones: Path) -> Collected:
    collected = Collected("wren-halvorsen")
    collect_repository(source, "wren-halvorsen", params.collect.git, clones, collected)
    return collected


def test_a_local_repository_yields_its_text_files_and_skips_or_quarantines_the_rest(repo, params, tmp_path):
    collected = collect(Source(type=SourceType.GIT, url=str(repo)), params, tmp_path / "clones")

    by_path = {d.metadata["path"]: d for d in collected.documents}
    assert set(by_path) == TEXT_FILES
    readme = by_path["README.md"]
    assert readme.content == (ROOT / REPO_DIR / "README.md").read_text()
    assert (readme.kind, readme.platform, readme.title) == (
        DocumentKind.REPOSITORY,
        Platform.GIT,
        "bilge-pump/README.md",
    )
    assert readme.source_url == (repo / "README.md").resolve().as_uri()
    assert len(readme.metadata["commit"]) == 40
    assert dict(collected.counts.skipped) == {"vendored_or_build": 2, "extension": 3, "symlink_in_repository": 1}
    quarantined = {item.url.rsplit("/bilge-pump/", 1)[1]: item.reason for item in collected.quarantine}
    assert quarantined == {
        "secrets.txt": QuarantineReason.SYMLINK_OUTSIDE,
        "docs/HUGE.md": QuarantineReason.TOO_LARGE,
        "data/blob.txt": QuarantineReason.NON_TEXT,
        "notes/latin1.txt": QuarantineReason.UNREADABLE,
    }
    assert not any("a secret outside the repository" in d.content for d in collected.documents)


def test_a_repository_url_is_cloned_once_then_fetched_and_picks_up_new_commits(repo, params, tmp_path):
    source = Source(type=SourceType.GITHUB, url=repo.as_uri())
    clones = tmp_path / "clones"
    first = collect(source, params, clones)
    assert {d.metadata["path"] for d in first.documents} == TEXT_FILES
    assert all(d.platform == Platform.GITHUB for d in first.documents)
    assert first.documents[0].source_url.startswith(f"{repo.as_uri()}/blob/HEAD/")

    (repo / "README.md").write_text("# bilge-pump\n\nNow with a float switch.\n")
    git(repo, "commit", "--quiet", "--all", "--message", "float switch")
    second = collect(source, params, clones)
    readme = next(d for d in second.documents if d.metadata["path"] == "README.md")
    assert readme.content == "# bilge-pump\n\nNow with a float switch.\n"
    assert readme.id == next(d.id for d in first.documents if d.metadata["path"] == "README.md")
    assert len(list(clones.iterdir())) == 1  # the same working copy, fetched


def test_an_unreachable_repository_is_quarantined(params, tmp_path):
    collected = collect(Source(type=SourceType.GIT, url=(tmp_path / "nothing.git").as_uri()), params, tmp_path / "c")
    assert [item.reason for item in collected.quarantine] == [QuarantineReason.CLONE_FAILED]
    assert collected.documents == []
