"""Git repositories → one document per text file.

A ``git``/``github`` source is a URL or a local repository path (read in place). A URL is cloned
shallowly once into the state folder and only fetched on later crawls, so an unchanged repository
costs one small request, not a download. Only files git tracks are considered — never untracked build
junk in a working copy — and of those only:

* files under no skipped folder (``collect.git.skip_dirs``: vendor/, build/, node_modules/, …),
* with an allowed extension (``collect.git.extensions``; a PNG is simply not on the list),
* that are not symlinks: one leaving the repository is quarantined (it could expose anything on
  the machine), one inside it is skipped as a duplicate of its target,
* no larger than ``collect.git.max_file_bytes`` and not binary (a NUL byte) — else quarantined.

Document ids use the repository URL and the file's path, never the commit, so an edited file
becomes a new revision of the same document.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from twin_ops.collect.authors import is_git_url
from twin_ops.collect.results import Collected
from twin_ops.config import GitCollectParams
from twin_ops.domain import (
    DocumentKind,
    Platform,
    QuarantineReason,
    RawDocument,
    Source,
    SourceType,
    sha256_text,
    utc_now,
)
from twin_ops.errors import TwinOpsError

BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first block means binary
DUMB_HTTP = "dumb http transport does not support shallow capabilities"


class GitError(TwinOpsError, RuntimeError):
    """A git command failed (clone, fetch, checkout); the message is git's own."""


def _git(*args: str, cwd: Path | None = None, timeout: float | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        # Never prompt for credentials: a private or missing repository fails at once.
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if done.returncode != 0:
        raise GitError(done.stderr.strip() or f"git {args[0]} failed ({done.returncode})")
    return done.stdout


def _shallow_or_full(args: list[str], cwd: Path | None, timeout: float) -> None:
    """``git <args> --depth 1``; servers speaking only git's "dumb" HTTP protocol get a full one."""
    try:
        _git(*args[:1], "--depth", "1", *args[1:], cwd=cwd, timeout=timeout)
    except GitError as exc:
        if DUMB_HTTP not in str(exc):
            raise
        _git(*args, cwd=cwd, timeout=timeout)


def sync(url: str, target: Path, timeout: float) -> Path:
    """Clone ``url`` into ``target``, or bring an earlier clone up to the remote's HEAD."""
    if (target / ".git").is_dir():
        _shallow_or_full(["fetch", "--quiet", "origin", "HEAD"], target, timeout)
        _git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        _shallow_or_full(["clone", "--quiet", url, str(target)], None, timeout)
    return target


def collect_repository(
    source: Source, author_id: str, settings: GitCollectParams, clones: Path, collected: Collected
) -> None:
    """Add the repository's text files to ``collected``; failures go to its quarantine.

    ``clones`` keeps one working copy per repository URL between crawls.
    """
    platform = Platform.GITHUB if source.type == SourceType.GITHUB else Platform.GIT
    if is_git_url(source.url):
        name = PurePosixPath(urlsplit(source.url).path).name.removesuffix(".git") or "repository"
        # The web view's address pattern (GitHub, GitLab, Gitea): stable across commits.
        base = source.url.removesuffix("/").removesuffix(".git") + "/blob/HEAD"
        try:
            repo = sync(source.url, clones / sha256_text(source.url)[:16] / name, settings.clone_timeout_s)
        except (GitError, subprocess.TimeoutExpired) as exc:
            collected.quarantined(source.url, QuarantineReason.CLONE_FAILED, str(exc), source_url=source.url)
            return
    else:
        repo = Path(source.url)
        name, base = repo.name, repo.resolve().as_uri()  # file:///…/repo/<path>
    try:
        commit = _git("rev-parse", "HEAD", cwd=repo).strip()
        tracked = [path for path in _git("ls-files", "-z", cwd=repo).split("\0") if path]
    except GitError as exc:
        collected.quarantined(source.url, QuarantineReason.CLONE_FAILED, str(exc), source_url=source.url)
        return
    root = repo.resolve()
    skip_dirs = set(settings.skip_dirs)
    extensions = {extension.lower() for extension in settings.extensions}
    for relative in sorted(tracked):
        url = f"{base}/{quote(relative)}"
        parts = PurePosixPath(relative).parts
        if skip_dirs.intersection(parts[:-1]):
            collected.skipped("vendored_or_build")
            continue
        path = repo / relative
        if path.is_symlink():
            target = path.resolve()
            if target != root and root not in target.parents:
                detail = f"symlink to {target}, outside the repository"
                collected.quarantined(url, QuarantineReason.SYMLINK_OUTSIDE, detail, source_url=source.url)
            else:
                collected.skipped("symlink_in_repository")
            continue
        if not path.exists():
            collected.skipped("deleted_in_working_copy")  # tracked, but removed locally
            continue
        if PurePosixPath(relative).suffix.lower() not in extensions:
            collected.skipped("extension")
            continue
        size = path.stat().st_size
        if size > settings.max_file_bytes:
            detail = f"{size} bytes > {settings.max_file_bytes}"
            collected.quarantined(url, QuarantineReason.TOO_LARGE, detail, source_url=source.url)
            continue
        data = path.read_bytes()
        collected.file_read()
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            collected.quarantined(url, QuarantineReason.NON_TEXT, "binary content", source_url=source.url)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            collected.quarantined(url, QuarantineReason.UNREADABLE, f"not UTF-8: {exc}", source_url=source.url)
            continue
        if not text.strip():
            collected.skipped("empty_file")
            continue
        collected.document(
            RawDocument(
                id=f"{author_id}:{url}",
                author_id=author_id,
                kind=DocumentKind.REPOSITORY,
                platform=platform,
                source_url=url,
                title=f"{name}/{relative}",
                content=text,
                fetched_at=utc_now(),
                content_hash=sha256_text(text),
                metadata={
                    "repository": source.url,
                    "path": relative,
                    "commit": commit,
                    "source_type": source.type.value,
                },
            )
        )
