"""Helpers for the collect tests: a demo site on a free 127.0.0.1 port, and crawls run through the CLI.

A crawl starts Twisted's reactor, which cannot restart, so every crawl runs as its own
``twin-ops crawl`` process; the site server runs in the test process and logs every request.
Data and state go to a temporary folder through TWIN_OPS_PARAM__ overrides, never the project's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from twin_ops.collect.store import QUARANTINE_FILE, SKIPPED_FILE, platform_files
from twin_ops.demo.server import LoggedRequest, SiteServer
from twin_ops.demo.site import CONTENT_DIR, REPO_DIR, build_site
from twin_ops.domain import QuarantinedItem, RawDocument, SkippedItem, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POSTS_PER_PAGE = 10


def crawl(
    work: Path, author: str, site_url: str, *sets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``twin-ops crawl`` in a subprocess with data/state under ``work``."""
    environment = {
        **os.environ,
        "TWIN_OPS_HOME": str(ROOT),
        "TWIN_OPS_PARAM__project__data_dir": str(work / "data"),
        "TWIN_OPS_PARAM__project__state_dir": str(work / "state"),
        "COLUMNS": "1000",  # the summary on one line, unwrapped
        **(env or {}),
    }
    command = [str(BIN / "twin-ops"), "crawl", "--author", author, "--site-url", site_url]
    for assignment in sets:
        command += ["--set", assignment]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def store(work: Path, author: str) -> Path:
    return work / "data" / "crawl" / author


def documents(work: Path, author: str) -> dict[str, list[RawDocument]]:
    """The crawl store's documents by platform file stem."""
    return {path.stem: read_jsonl(path, RawDocument) for path in platform_files(store(work, author))}


def quarantine(work: Path, author: str) -> list[QuarantinedItem]:
    return read_jsonl(store(work, author) / QUARANTINE_FILE, QuarantinedItem)


def skipped(work: Path, author: str) -> list[SkippedItem]:
    return read_jsonl(store(work, author) / SKIPPED_FILE, SkippedItem)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The numbers of the CLI's one-line summary, by label ("fetched", "kept", "new", "quarantined", ...)."""
    line = next(line for line in result.stdout.splitlines() if line.startswith("crawl "))
    return {label: int(n) for n, label in re.findall(r"(\d+) ([a-z]+(?: [a-z]+)?)", line)}


def serve_demo_site(folder: Path, content: Path = ROOT / CONTENT_DIR, repo: Path = ROOT / REPO_DIR) -> SiteServer:
    """Build the demo site for a free port and serve it from a thread (caller stops it)."""
    server = SiteServer(folder)
    build_site(folder, server.url, content, repo, POSTS_PER_PAGE)
    return server.start()


BLOG_ENGINES = ROOT / "include" / "blog_engines"
SITE_PLACEHOLDER = "__SITE__"


def serve_blog_engines(folder: Path) -> SiteServer:
    """The blog-engine fixture site (``include/blog_engines/site``) on a free port, from a thread."""
    server = SiteServer(folder)
    shutil.copytree(BLOG_ENGINES / "site", folder, dirs_exist_ok=True)
    for path in folder.rglob("*"):
        if path.is_file():
            path.write_text(path.read_text(encoding="utf-8").replace(SITE_PLACEHOLDER, server.url), encoding="utf-8")
    return server.start()


def copy_content(target: Path) -> Path:
    shutil.copytree(ROOT / CONTENT_DIR, target)
    return target


def web_requests(log: list[LoggedRequest]) -> list[LoggedRequest]:
    """Requests the spider made (git's own clone/fetch requests excluded)."""
    return [request for request in log if not request.path.startswith("/git/")]


def dump(result: subprocess.CompletedProcess[str]) -> str:
    return json.dumps({"rc": result.returncode, "stdout": result.stdout[-3000:], "stderr": result.stderr[-3000:]})
