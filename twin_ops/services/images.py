"""The compose stack's images, built on this engine from the project's Dockerfiles, no registry needed.

``build_images`` builds every image docker-compose.yaml runs, from include/docker/*.Dockerfile with
their base images given as build arguments: the debootstrap base ``twin-ops/base:bookworm``
(``docker_engine.ensure_base_image``) where a user with a registry has python:3.11-slim,
postgres:16, redis:7 and the official Weaviate image. Builds run in the host's network namespace
(``network_mode="host"``: the engine has no bridge) so apt and uv reach the package registries, and
use the engine's layer cache: the locked dependencies are one layer keyed on pyproject.toml and
uv.lock, so a rebuild after a code change only redoes the project's layer (seconds).

Two things travel in the build context without being in the repository (include/docker/context/):
the build host's extra CA certificates (a TLS-inspecting proxy between this machine and PyPI) and,
for the Weaviate image, the server binary built from the Go module proxy.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from twin_ops.config import Params, Paths, Settings
from twin_ops.errors import ServiceUnavailable, TwinOpsError
from twin_ops.services import docker_engine

log = logging.getLogger(__name__)

CONTEXT_EXTRAS = "include/docker/context"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


class ImageBuildFailed(TwinOpsError):
    """A Dockerfile step failed; the message has the step's last output lines."""


@dataclass(frozen=True)
class ImageSpec:
    """One image of the stack: its tag, Dockerfile, build arguments and extra context files."""

    tag: str
    dockerfile: str
    buildargs: dict[str, str] = field(default_factory=dict)
    weaviate_binary: bool = False


def stack_images(params: Params) -> list[ImageSpec]:
    """Every image docker-compose.yaml runs, in build order (training builds on the app image)."""
    base = params.docker.base_image
    version = params.weaviate.version
    return [
        ImageSpec("twin-ops/postgres:latest", "include/docker/postgres.Dockerfile", {"BASE_IMAGE": base}),
        ImageSpec("twin-ops/redis:latest", "include/docker/redis.Dockerfile", {"BASE_IMAGE": base}),
        ImageSpec(
            f"twin-ops/weaviate:{version}",
            "include/docker/weaviate.Dockerfile",
            {"BASE_IMAGE": base},
            weaviate_binary=True,
        ),
        ImageSpec("twin-ops/app:latest", "include/docker/app.Dockerfile", {"PYTHON_IMAGE": base}),
        ImageSpec(
            params.training.container.image,
            "include/docker/training.Dockerfile",
            {"APP_IMAGE": "twin-ops/app:latest"},
        ),
    ]


def _dockerignore(root: Path) -> list[str]:
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_context(root: Path, extras: dict[str, Path]) -> io.BufferedRandom:
    """The project (minus .dockerignore) as a tar, plus ``extras`` (name in the context → file)."""
    from docker.utils.build import tar

    context = tar(str(root), exclude=_dockerignore(root))
    with tarfile.open(fileobj=context, mode="a") as archive:
        for name, source in extras.items():
            archive.add(str(source), arcname=name, recursive=False)
    context.seek(0)
    return context


def context_extras(spec: ImageSpec, params: Params, paths: Paths) -> dict[str, Path]:
    extras = {f"{CONTEXT_EXTRAS}/{crt.name}": crt for crt in sorted(HOST_CA_DIR.glob("*.crt"))}
    if spec.weaviate_binary:
        from twin_ops.services.weaviate import ensure_binary

        binary = ensure_binary(params, paths, log=log.info)
        if binary is None:
            raise ServiceUnavailable("the Weaviate image needs the server binary: install Go, or build with a registry")
        extras[f"{CONTEXT_EXTRAS}/weaviate-server"] = binary
    return extras


def _stream(lines: Iterable[bytes | dict], tag: str) -> list[str]:
    """Log the build's output as it comes; raise with the tail when a step fails."""
    tail: list[str] = []
    for raw in lines:
        for chunk in raw.splitlines() if isinstance(raw, bytes) else [raw]:
            item = json.loads(chunk) if isinstance(chunk, bytes) else chunk
            if "error" in item:
                raise ImageBuildFailed(f"building {tag} failed: {item['error'].strip()}\n" + "\n".join(tail[-30:]))
            text = (item.get("stream") or item.get("status") or "").rstrip()
            if text:
                tail = [*tail[-60:], text]
                log.info("%s | %s", tag, text)
    return tail


def build_image(spec: ImageSpec, params: Params, paths: Paths, settings: Settings, *, nocache: bool = False) -> float:
    """Build one image (host network, layer cache); returns the seconds it took."""
    started = time.monotonic()
    context = build_context(paths.root, context_extras(spec, params, paths))
    log.info("images: building %s from %s %s", spec.tag, spec.dockerfile, spec.buildargs)
    with closing(docker_engine.client(settings, timeout=None)) as engine, closing(context):
        output = engine.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=spec.dockerfile,
            tag=spec.tag,
            buildargs=spec.buildargs,
            network_mode="host",  # the engine runs without a bridge; builds reach the registries this way
            pull=False,
            rm=True,
            forcerm=True,
            nocache=nocache,
            labels={"org.opencontainers.image.source": "twin-ops", "twin-ops.dockerfile": spec.dockerfile},
        )
        _stream(output, spec.tag)
    seconds = time.monotonic() - started
    log.info("images: %s built in %.0fs", spec.tag, seconds)
    return seconds


def build_images(
    params: Params,
    paths: Paths,
    settings: Settings,
    *,
    only: list[str] | None = None,
    nocache: bool = False,
) -> dict[str, float]:
    """Build the stack's images (the base image first, once); seconds per image."""
    docker_engine.ensure_base_image(params, paths, settings, log=log.info)
    timings: dict[str, float] = {}
    for spec in stack_images(params):
        if only and not any(name in spec.tag for name in only):
            continue
        timings[spec.tag] = build_image(spec, params, paths, settings, nocache=nocache)
    return timings


def missing_images(params: Params, settings: Settings) -> list[str]:
    import docker

    missing = []
    with closing(docker_engine.client(settings)) as engine:
        for spec in stack_images(params):
            try:
                engine.images.get(spec.tag)
            except docker.errors.ImageNotFound:
                missing.append(spec.tag)
    return missing


def main(argv: list[str] | None = None) -> int:
    """``python -m twin_ops.services.images [--only NAME ...] [--no-cache]`` (what `make images` runs)."""
    import argparse

    from twin_ops.config import load_params, resolve_paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="build only images whose tag contains this")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    params = load_params()
    paths = resolve_paths(params)
    try:
        timings = build_images(params, paths, Settings(), only=args.only, nocache=args.no_cache)
    except TwinOpsError as exc:
        log.error("%s", exc)
        return exc.exit_code
    for tag, seconds in timings.items():
        print(f"images: {tag} {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
