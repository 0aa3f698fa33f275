"""Weaviate: a real server everywhere — remote when WEAVIATE_URL is set, else local embedded.

Offline path: weaviate-client's embedded mode downloads the server from GitHub unless a binary
already sits at ``<binary_path>/weaviate-v<version>-<sha256("v<version>")>``. With no internet we
build that binary from source with the Go toolchain (``go install <module>@v<version>``) and put
it there, so the client never tries to download. A user with internet needs neither Go nor this.

A long-lived local server (``twin-ops services up``) runs in a small supervisor process
(``python -m twin_ops.services.weaviate``) that starts the server through embedded mode and keeps
it until SIGTERM; every other process then connects to it as a local server. With no supervisor
running, ``connect()`` starts an embedded server that lives as long as the calling process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from twin_ops.config import Params, Paths, Settings, load_params, resolve_paths

READY_PATH = "/v1/.well-known/ready"


class WeaviateUnavailable(RuntimeError):
    """No server could be reached or started; the message says what to do."""


@dataclass(frozen=True)
class ServerInfo:
    """What `services status` shows about the server in use."""

    url: str
    grpc_port: int
    mode: str  # "remote" (WEAVIATE_URL) or "embedded" (local, our data dir)
    data_dir: Path | None
    pid: int | None


def server_env() -> dict[str, str]:
    """Environment added to the embedded defaults: no telemetry, no cloud modules, loopback only."""
    return {
        "DISABLE_TELEMETRY": "true",  # on by default, and it phones home
        "GO_PROFILING_DISABLE": "true",
        "ENABLE_MODULES": "",  # vectors are computed by twin-ops, never by a cloud vectorizer
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "LOG_LEVEL": "warning",
    }


def binary_name(version: str) -> str:
    """The file name weaviate-client's embedded mode looks for before it downloads anything."""
    tag = f"v{version}"
    return f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def binary_file(params: Params, paths: Paths) -> Path:
    return paths.weaviate_binaries / binary_name(params.weaviate.version)


def ensure_binary(params: Params, paths: Paths, *, log=print) -> Path | None:
    """Build the pinned server with Go if it is not cached; None when Go is absent.

    With None the client's embedded mode downloads the release itself (needs internet).
    """
    target = binary_file(params, paths)
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        log("weaviate: no cached binary and no Go toolchain; embedded mode will download it")
        return None
    gobin = paths.cache / "weaviate-build" / params.weaviate.version
    gobin.mkdir(parents=True, exist_ok=True)
    module = f"{params.weaviate.go_package}@v{params.weaviate.version}"
    log(f"weaviate: building {module} with {go} (once; cached in {target.parent})")
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(gobin)}
    command = [go, "install", "-trimpath", "-ldflags=-s -w", module]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise WeaviateUnavailable(
            f"building the Weaviate server failed ({' '.join(command)}):\n{result.stderr[-4000:]}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    shutil.copy2(gobin / "weaviate-server", temporary)
    temporary.replace(target)  # atomic: a half-copied binary is never found by the client
    return target


def embedded_options(params: Params, paths: Paths, data_dir: Path | None = None):
    from weaviate.embedded import EmbeddedOptions

    return EmbeddedOptions(
        persistence_data_path=str(data_dir or paths.weaviate_data),
        binary_path=str(paths.weaviate_binaries),
        version=params.weaviate.version,
        port=params.weaviate.http_port,
        grpc_port=params.weaviate.grpc_port,
        hostname="127.0.0.1",
        additional_env_vars=server_env(),
    )


def _state_file(paths: Paths) -> Path:
    return paths.state / "weaviate" / "server.json"


def is_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url.rstrip("/") + READY_PATH, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def is_running(params: Params) -> bool:
    """A local server answers on the configured port (ours or another process's)."""
    return is_ready(_local_url(params))


def _local_url(params: Params) -> str:
    return f"http://127.0.0.1:{params.weaviate.http_port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(paths: Paths) -> dict | None:
    try:
        state = json.loads(_state_file(paths).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if _pid_alive(int(state["pid"])) else None


def server_info(params: Params, paths: Paths, settings: Settings) -> ServerInfo:
    if settings.weaviate_url:
        return ServerInfo(settings.weaviate_url, _grpc_port(settings), "remote", None, None)
    state = _read_state(paths)
    return ServerInfo(
        _local_url(params),
        params.weaviate.grpc_port,
        "embedded",
        paths.weaviate_data,
        int(state["pid"]) if state else None,
    )


def server_version(url: str) -> str | None:
    try:
        return httpx.get(url.rstrip("/") + "/v1/meta", timeout=5).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def _grpc_port(settings: Settings) -> int:
    if settings.weaviate_grpc_url:
        return urlparse(settings.weaviate_grpc_url).port or 50051
    return 50051


def connect(params: Params | None = None, settings: Settings | None = None):
    """A connected weaviate client: remote, the local supervisor's server, or a new embedded one.

    The caller closes it (``with connect() as client:``); closing an embedded client stops the
    server it started.
    """
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    params = params or load_params()
    settings = settings or Settings()
    paths = resolve_paths(params, settings)
    timeouts = AdditionalConfig(timeout=Timeout(init=30, query=120, insert=300))
    if settings.weaviate_url:
        http = urlparse(settings.weaviate_url)
        grpc = urlparse(settings.weaviate_grpc_url or f"{http.scheme}://{http.hostname}:50051")
        auth = Auth.api_key(settings.weaviate_api_key) if settings.weaviate_api_key else None
        return weaviate.connect_to_custom(
            http_host=http.hostname,
            http_port=http.port or (443 if http.scheme == "https" else 80),
            http_secure=http.scheme == "https",
            grpc_host=grpc.hostname,
            grpc_port=grpc.port or 50051,
            grpc_secure=grpc.scheme == "https",
            auth_credentials=auth,
            additional_config=timeouts,
        )
    if is_ready(_local_url(params)):
        return weaviate.connect_to_local(
            host="127.0.0.1",
            port=params.weaviate.http_port,
            grpc_port=params.weaviate.grpc_port,
            additional_config=timeouts,
        )
    return connect_embedded(params, paths, additional_config=timeouts)


def connect_embedded(params: Params, paths: Paths, data_dir: Path | None = None, **client_options):
    """Start an embedded server owned by this process (closing the client stops it)."""
    import weaviate

    ensure_binary(params, paths)
    return weaviate.connect_to_embedded(
        hostname="127.0.0.1",
        port=params.weaviate.http_port,
        grpc_port=params.weaviate.grpc_port,
        version=params.weaviate.version,
        persistence_data_path=str(data_dir or paths.weaviate_data),
        binary_path=str(paths.weaviate_binaries),
        environment_variables=server_env(),
        **client_options,
    )


# --- the supervisor: `twin-ops services up` runs this module detached --------------------------


def start_server(params: Params, paths: Paths, *, log=print) -> ServerInfo:
    """Start the supervisor in its own session and wait until the server is ready."""
    url = _local_url(params)
    state = _read_state(paths)
    if state and is_ready(url):
        log(f"weaviate: already running (pid {state['pid']}) at {url}")
        return server_info(params, paths, Settings())
    if is_ready(url):
        raise WeaviateUnavailable(
            f"something else already serves Weaviate at {url}; stop it or change weaviate.http_port in params.yaml"
        )
    ensure_binary(params, paths, log=log)
    paths.logs.mkdir(parents=True, exist_ok=True)
    log_file = paths.logs / "weaviate.log"
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "twin_ops.services.weaviate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this CLI call; stopped by PID in stop_server
            env={**os.environ, "TWIN_OPS_HOME": str(paths.root)},
        )
    deadline = time.monotonic() + params.weaviate.startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WeaviateUnavailable(f"Weaviate exited with code {process.returncode} during start-up; see {log_file}")
        if is_ready(url) and _read_state(paths):
            log(f"weaviate: ready at {url} (pid {process.pid}, data {paths.weaviate_data})")
            return server_info(params, paths, Settings())
        time.sleep(0.5)
    _terminate(process.pid, timeout=10)
    raise WeaviateUnavailable(f"Weaviate was not ready within {params.weaviate.startup_timeout_s}s; see {log_file}")


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL; True when the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.5)
    return not _pid_alive(pid)


def stop_server(params: Params, paths: Paths, *, log=print) -> bool:
    """Stop the supervisor we started (by its PID file); False when none was running."""
    state = _read_state(paths)
    if state is None:
        log("weaviate: not running")
        _state_file(paths).unlink(missing_ok=True)
        return False
    _terminate(int(state["pid"]), timeout=30)
    _state_file(paths).unlink(missing_ok=True)
    log(f"weaviate: stopped (pid {state['pid']})")
    return True


def _supervise() -> None:
    """Run an embedded server until SIGTERM/SIGINT, then stop it cleanly (flushes to disk)."""
    from weaviate.embedded import EmbeddedV4

    params = load_params()
    paths = resolve_paths(params)
    server = EmbeddedV4(embedded_options(params, paths))
    server.start()
    state_file = _state_file(paths)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "server_pid": server.process.pid, "url": _local_url(params)}
    state_file.write_text(json.dumps(state))

    def _stop(signum, frame):
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while server.process.poll() is None:
        time.sleep(1)
    sys.exit(f"weaviate server exited with code {server.process.returncode}")


if __name__ == "__main__":
    _supervise()
