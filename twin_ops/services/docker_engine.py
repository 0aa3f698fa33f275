"""A Docker engine for job containers (training runs), and a base image built without a registry.

When DOCKER_HOST is set, that engine is used and nothing is started. Otherwise, on a machine with
no engine running, ``start_engine`` installs Debian's docker.io if needed and starts ``dockerd``
with no bridge network and no iptables rules (job containers run with ``network_mode="none"``),
its own data root, exec root and socket, and a PID file so ``stop_engine`` stops exactly what it
started. No image registry is reachable, so the base image is a debootstrap minbase rootfs
imported with ``docker import``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from twin_ops.config import Params, Paths, Settings
from twin_ops.services.apt import AptUnavailable, apt_install

# Exec state (containerd sockets) belongs on a tmpfs with short paths: unix sockets allow ~107 chars.
RUN_DIR = Path("/run/twin-ops")
SOCKET = RUN_DIR / "docker.sock"
PID_FILE = RUN_DIR / "dockerd.pid"


class DockerUnavailable(RuntimeError):
    """No engine could be reached or started; the message says why."""


@dataclass(frozen=True)
class EngineInfo:
    url: str
    managed: bool  # True when twin-ops started this dockerd
    pid: int | None
    server_version: str | None
    base_image_present: bool


def engine_url(settings: Settings) -> str:
    return settings.docker_host or f"unix://{SOCKET}"


def client(settings: Settings | None = None, timeout: int = 120):
    import docker

    return docker.DockerClient(base_url=engine_url(settings or Settings()), timeout=timeout)


def _managed_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def ping(settings: Settings) -> str | None:
    """The engine's version, or None when it does not answer."""
    import docker

    try:
        with closing(client(settings, timeout=5)) as engine:
            return engine.version().get("Version")
    except docker.errors.DockerException:
        return None


def _apt_install(*packages: str, log=print) -> None:
    try:
        apt_install(*packages, log=lambda line: log(f"docker: {line}"))
    except AptUnavailable as exc:
        raise DockerUnavailable(f"{exc}; install Docker, or set DOCKER_HOST to an engine you run") from exc


def start_engine(params: Params, paths: Paths, settings: Settings, *, log=print) -> EngineInfo:
    """Start dockerd unless an engine already answers; then make sure the base image exists."""
    if settings.docker_host is None and ping(settings) is None:
        if shutil.which("dockerd") is None:
            _apt_install("docker.io", log=log)
        data_root = paths.docker_root / "data"
        data_root.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        paths.logs.mkdir(parents=True, exist_ok=True)
        log_file = paths.logs / "dockerd.log"
        command = [
            "dockerd",
            "--bridge=none",  # no default bridge: never creates a network on a private range
            "--iptables=false",
            "--ip6tables=false",
            f"--data-root={data_root}",
            f"--exec-root={RUN_DIR / 'exec'}",
            f"--pidfile={PID_FILE}",
            f"--host=unix://{SOCKET}",
        ]
        with log_file.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + params.docker.startup_timeout_s
        while ping(settings) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise DockerUnavailable(f"dockerd did not start; see {log_file}")
            time.sleep(0.5)
        log(f"docker: dockerd ready at {engine_url(settings)} (pid {process.pid})")
    ensure_base_image(params, paths, settings, log=log)
    return engine_info(params, settings)


def stop_engine(*, log=print) -> bool:
    """Stop the dockerd we started (by PID file); an engine we did not start is left alone."""
    pid = _managed_pid()
    if pid is None:
        log("docker: no twin-ops dockerd running")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log(f"docker: stopped dockerd (pid {pid})")
            return True
        time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    log(f"docker: killed dockerd (pid {pid}) after 30 s")
    return True


def _has_image(name: str, settings: Settings) -> bool:
    import docker

    with closing(client(settings)) as engine:
        try:
            engine.images.get(name)
        except docker.errors.ImageNotFound:
            return False
    return True


def ensure_base_image(params: Params, paths: Paths, settings: Settings, *, log=print) -> None:
    """Build the base image from a debootstrap minbase rootfs once (no registry is needed)."""
    name = params.docker.base_image
    if _has_image(name, settings):
        return
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap", log=log)
    repository, _, tag = name.partition(":")
    started = time.monotonic()
    paths.docker_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.docker_root, prefix="rootfs-") as work:
        rootfs, tarball = Path(work) / "rootfs", Path(work) / "rootfs.tar"
        log(f"docker: debootstrap {params.docker.debian_suite} minbase for {name} (once)")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                params.docker.debian_suite,
                str(rootfs),
                params.docker.debian_mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        with closing(client(settings, timeout=600)) as engine:
            engine.api.import_image_from_file(str(tarball), repository=repository, tag=tag or "latest")
    log(f"docker: built {name} in {time.monotonic() - started:.0f}s")


def engine_info(params: Params, settings: Settings) -> EngineInfo:
    version = ping(settings)
    return EngineInfo(
        url=engine_url(settings),
        managed=settings.docker_host is None and _managed_pid() is not None,
        pid=_managed_pid() if settings.docker_host is None else None,
        server_version=version,
        base_image_present=version is not None and _has_image(params.docker.base_image, settings),
    )
