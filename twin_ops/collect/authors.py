"""Author configs: ``<collect.authors_dir>/<id>.yaml`` → a validated ``domain.Author``.

A config names the author and lists sources, each a ``type`` and a ``url``::

    id: wren-halvorsen
    name: Wren Halvorsen
    sources:
      - {type: article, url: "${DEMO_SITE_URL}/"}
      - {type: git, url: "~/code/bilge-pump"}

``${NAME}`` in a URL is replaced when the config is loaded, from ``variables`` (the environment,
plus ``DEMO_SITE_URL`` defaulting to the demo server's address from params.yaml, which
``twin-ops crawl --site-url`` overrides). That keeps ports and hosts out of committed configs
without a templating language: an unset name is an error, never an empty string.

Every problem is reported with the file and the offending key (``sources.1.type: …``). The
Airflow params form passes the same mapping to ``parse_author``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from twin_ops.config import ConfigError, Params, Paths, describe_validation_error
from twin_ops.domain import Author, SourceType

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEMO_SITE_VARIABLE = "DEMO_SITE_URL"
WEB_TYPES = frozenset({SourceType.ARTICLE, SourceType.FEED, SourceType.SITEMAP, SourceType.MEDIUM, SourceType.SUBSTACK})
REPO_TYPES = frozenset({SourceType.GIT, SourceType.GITHUB})
LOCAL_TYPES = frozenset({SourceType.FILE, SourceType.LINKEDIN_EXPORT})
# Schemes git itself can clone from; anything else in a repo source is taken as a local path.
GIT_SCHEMES = frozenset({"http", "https", "ssh", "git", "file"})
SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:owner/repo.git


class AuthorConfigError(ConfigError):
    """An author config that cannot be used; the message names the file and the key."""


def author_file(params: Params, paths: Paths, author_id: str) -> Path:
    return paths.root / params.collect.authors_dir / f"{author_id}.yaml"


def source_variables(
    params: Params, site_url: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Values for ``${NAME}``: the demo server's default address < environment < ``site_url``."""
    variables = {DEMO_SITE_VARIABLE: f"http://127.0.0.1:{params.collect.demo_site.port}"}
    variables.update(os.environ if environ is None else environ)
    if site_url:
        variables[DEMO_SITE_VARIABLE] = site_url.rstrip("/")
    return variables


def _expand(value: str, where: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise AuthorConfigError(f"{where}: ${{{name}}} is not set (set the environment variable)")
        return variables[name]

    return PLACEHOLDER.sub(replace, value)


def is_git_url(url: str) -> bool:
    return bool(SCP_LIKE.match(url)) or urlsplit(url).scheme in GIT_SCHEMES


def _local_path(url: str, root: Path, where: str) -> str:
    path = Path(url).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise AuthorConfigError(f"{where}: {path} does not exist")
    return str(path.resolve())


def _check_source(kind: SourceType, url: str, root: Path, where: str) -> str:
    """The source's URL, checked for its type; local paths come back absolute."""
    if kind in WEB_TYPES:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise AuthorConfigError(f"{where}: a {kind} source needs an http(s) URL (got {url!r})")
        return url
    if kind in REPO_TYPES:
        return url if is_git_url(url) else _local_path(url, root, where)
    return _local_path(url, root, where)


def parse_author(raw: Any, *, origin: str, variables: Mapping[str, str], root: Path) -> Author:
    """Validate one author mapping (from a YAML file or a DAG's params form)."""
    if not isinstance(raw, dict):
        raise AuthorConfigError(f"{origin}: expected a mapping with id, name and sources")
    sources = raw.get("sources")
    if sources is not None and not isinstance(sources, list):
        raise AuthorConfigError(f"{origin}: sources: expected a list of {{type, url}} mappings")
    expanded = []
    for index, source in enumerate(sources or []):
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            source = {**source, "url": _expand(source["url"], f"{origin}: sources.{index}.url", variables)}
        expanded.append(source)
    try:
        author = Author.model_validate({**raw, "sources": expanded})
    except ValidationError as exc:
        raise AuthorConfigError(describe_validation_error(exc, f"invalid author config {origin}:")) from exc
    if not author.sources:
        raise AuthorConfigError(f"{origin}: sources: the author has no sources to collect")
    checked, seen = [], set()
    for index, source in enumerate(author.sources):
        where = f"{origin}: sources.{index}"
        url = _check_source(source.type, source.url, root, f"{where}.url")
        if (source.type, url) in seen:
            raise AuthorConfigError(f"{where}: duplicate source {source.type} {url}")
        seen.add((source.type, url))
        checked.append(source.model_copy(update={"url": url}))
    return author.model_copy(update={"sources": checked})


def load_author(author_id: str, params: Params, paths: Paths, variables: Mapping[str, str]) -> Author:
    """Read and validate ``<authors_dir>/<author_id>.yaml``."""
    path = author_file(params, paths, author_id)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise AuthorConfigError(f"{path}: no such author config (known: {', '.join(known) or 'none'})") from exc
    except yaml.YAMLError as exc:
        raise AuthorConfigError(f"{path}: not valid YAML: {exc}") from exc
    author = parse_author(raw, origin=str(path), variables=variables, root=paths.root)
    if author.id != author_id:
        raise AuthorConfigError(f"{path}: id is {author.id!r} but the file is named for {author_id!r}")
    return author
