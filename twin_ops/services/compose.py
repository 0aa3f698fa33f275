"""The docker-compose stack: Docker Compose itself, the stack's lifecycle, and its in-container steps.

Host side (the stack test, ``python -m twin_ops.services.compose up|ps|down``):

* ``ensure_compose`` installs Docker Compose v2 when none is found: built with the Go toolchain
  from the Go module proxy (``github.com/docker/compose/v2`` at ``COMPOSE_VERSION``, whose go.mod
  has ``exclude`` lines, so it is built inside the downloaded module rather than with
  ``go install pkg@version``), cached under ``~/.cache/twin-ops/compose/``. It speaks API 1.41, so
  Debian's docker.io 20.10 engine (what ``services up --docker`` starts) is enough.
* ``Stack`` runs compose with the project's files (docker-compose.yaml, plus
  docker-compose.local.yaml on an engine without a bridge network), waits with tenacity until every
  long-running service is healthy and every one-shot service has exited 0, and tears it all down.

Container side (commands of docker-compose.yaml's services):

* ``init`` (airflow-init): fills TWIN_OPS_PROJECT_DIR from the image's project (params.yaml,
  dvc.yaml, include/, twin_ops/ — DVC stages depend on the sources), makes it a git + DVC
  repository, hands it to the app's user, migrates Airflow's database and sets the training pool.
* ``serve-deploy``: ``serve deploy include/serve/twin.yaml`` through the Ray dashboard, with the
  stack's HTTP host and port added as the config's ``http_options``; exits once /health answers.
* ``ray-node-alive``: the health check of a Ray worker container (its raylet runs and the cluster's
  GCS answers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import RetryError, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_fixed
from tenacity import Retrying as _Retrying

from twin_ops.errors import ServiceUnavailable, TwinOpsError

log = logging.getLogger(__name__)

COMPOSE_VERSION = "v2.40.3"
COMPOSE_MODULE = "github.com/docker/compose/v2"
APP_UID, APP_GID = 50000, 0
PROJECT_FILES = ("params.yaml", "dvc.yaml")
PROJECT_FOLDERS = ("include", "twin_ops")


class ComposeFailed(TwinOpsError):
    """A compose command failed, or a service ended unhealthy; the message says which and why."""


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twin-ops"


def compose_binary() -> Path:
    return _cache_dir() / "compose" / COMPOSE_VERSION / "docker-compose"


def find_compose() -> list[str] | None:
    """A compose v2 command line: ours, a `docker-compose` v2 on PATH, or the docker CLI plugin."""
    if compose_binary().is_file():
        return [str(compose_binary())]
    for candidate in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        probe = subprocess.run([*candidate, "version", "--short"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2."):
            return candidate
    return None


def ensure_compose() -> list[str]:
    """Compose v2, built from the Go module proxy once when there is none."""
    found = find_compose()
    if found:
        return found
    go = shutil.which("go")
    if go is None:
        raise ServiceUnavailable(
            "Docker Compose v2 is not installed and there is no Go toolchain to build it; install the "
            "docker compose plugin (or put a docker-compose v2 on PATH)"
        )
    target = compose_binary()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("compose: building %s@%s with %s (once)", COMPOSE_MODULE, COMPOSE_VERSION, go)
    download = subprocess.run(
        [go, "mod", "download", "-json", f"{COMPOSE_MODULE}@{COMPOSE_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if download.returncode != 0:
        failure = download.stderr[-2000:]
        raise ServiceUnavailable(f"go mod download {COMPOSE_MODULE}@{COMPOSE_VERSION} failed: {failure}")
    module_dir = json.loads(download.stdout)["Dir"]
    temporary = target.with_suffix(".tmp")
    version_flag = f"-X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}"
    build = subprocess.run(
        [go, "build", "-trimpath", f"-ldflags=-s -w {version_flag}", "-o", str(temporary), "./cmd"],
        cwd=module_dir,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        raise ServiceUnavailable(f"building docker compose failed:\n{build.stderr[-4000:]}")
    temporary.replace(target)
    log.info("compose: built %s in %.0fs", target, time.monotonic() - started)
    return [str(target)]


def engine_has_bridge(docker_host: str) -> bool:
    """Whether the engine has its default bridge network (twin-ops' own dockerd has none)."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        return any(network.name == "bridge" for network in client.networks.list())
    finally:
        client.close()


@dataclass
class Stack:
    """One compose project: its files, its environment, and the commands around it."""

    root: Path
    env: dict[str, str]
    project: str = "twin-ops"
    local: bool = True
    compose: list[str] = field(default_factory=ensure_compose)

    @property
    def files(self) -> list[Path]:
        files = [self.root / "docker-compose.yaml"]
        if self.local:
            files.append(self.root / "docker-compose.local.yaml")
        return files

    def command(self, *args: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [*self.compose, "--project-name", self.project, "--project-directory", str(self.root), *files, *args]

    def run(self, *args: str, timeout: float | None = 600, check: bool = True) -> subprocess.CompletedProcess:
        command = self.command(*args)
        log.info("compose: %s", " ".join(args))
        result = subprocess.run(
            command, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ComposeFailed(f"compose {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def services(self) -> dict[str, dict]:
        """The file's services (merged, interpolated) as compose sees them."""
        return json.loads(self.run("config", "--format", "json").stdout)["services"]

    def ps(self) -> list[dict]:
        """Every container of the project, running or exited (compose ps --format json)."""
        output = self.run("ps", "--all", "--format", "json").stdout.strip()
        if not output:
            return []
        if output.startswith("["):
            return json.loads(output)
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def up(self, *services: str) -> None:
        self.run("up", "--detach", "--no-build", "--pull", "never", *services, timeout=900)

    def logs(self, *services: str, tail: int = 60) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout

    def check(self) -> dict[str, str]:
        """Service → state; raises ServiceUnavailable while something is still starting,
        ComposeFailed when a service can no longer become healthy (exited, unhealthy)."""
        oneshots = {name for name, spec in self.services().items() if spec.get("restart") in ("no", None)}
        states: dict[str, str] = {}
        for container in self.ps():
            name, state, health = container["Service"], container["State"], container.get("Health") or ""
            if name in oneshots:
                if state == "exited" and container.get("ExitCode") not in (0, None):
                    raise ComposeFailed(f"{name} exited with {container['ExitCode']}:\n{self.logs(name)}")
                states[name] = "completed" if state == "exited" else state
            elif health == "unhealthy" or state in ("exited", "dead"):
                raise ComposeFailed(f"{name} is {health or state}:\n{self.logs(name)}")
            else:
                states[name] = health or state
        missing = set(self.services()) - set(states)
        pending = {name: state for name, state in states.items() if state not in ("healthy", "completed")}
        pending.update(dict.fromkeys(missing, "not created"))
        if pending:
            raise ServiceUnavailable(f"not ready yet: {pending}")
        return states

    def wait_healthy(self, timeout: float = 900, poll: float = 5) -> dict[str, str]:
        """Wait until every long-running service is healthy and every one-shot one exited 0."""
        try:
            for attempt in _Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(poll),
                retry=retry_if_exception_type(ServiceUnavailable),
                reraise=False,
            ):
                with attempt:
                    return self.check()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise ComposeFailed(f"the stack was not healthy within {timeout:.0f}s: {last}") from exc
        raise AssertionError("unreachable")

    def down(self) -> None:
        """Stop and remove every container and volume of the project (compose down -v)."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=600)


# --- container side ------------------------------------------------------------------------------


def init_project(project_dir: Path, source: Path) -> None:
    """Fill the project folder from the image's project once, as a git + DVC repository."""
    project_dir.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        if not (project_dir / name).exists():
            shutil.copy2(source / name, project_dir / name)
    for name in PROJECT_FOLDERS:
        if not (project_dir / name).exists():
            shutil.copytree(source / name, project_dir / name, ignore=shutil.ignore_patterns("__pycache__", "context"))
    if not (project_dir / ".gitignore").exists():
        (project_dir / ".gitignore").write_text("/.twin/\n/.cache/\n/reports/gx/\n__pycache__/\n/models/\n")
    bin_dir = Path(sys.executable).parent

    def run(*command: str) -> None:
        subprocess.run(command, cwd=project_dir, check=True, stdout=subprocess.DEVNULL)

    if os.geteuid() == 0:  # root (airflow-init) works in a folder that belongs to the app's user
        run("git", "config", "--global", "--add", "safe.directory", str(project_dir))
    if not (project_dir / ".git").exists():
        run("git", "init", "-q")
        run("git", "config", "user.email", "stack@twin-ops.invalid")
        run("git", "config", "user.name", "twin-ops stack")
    if not (project_dir / ".dvc").exists():
        run(str(bin_dir / "dvc"), "init", "-q")
        run(str(bin_dir / "dvc"), "config", "core.analytics", "false")
        run("git", "add", "-A")
        run("git", "commit", "-qm", "twin-ops stack project")
    for folder in (".twin/airflow/logs", ".cache"):
        (project_dir / folder).mkdir(parents=True, exist_ok=True)
    log.info("init: project folder %s ready", project_dir)


def hand_over(project_dir: Path) -> None:
    """Give the project folder to the app's user (init runs as root to be able to)."""
    if os.geteuid() != 0:
        return
    for path in [project_dir, *project_dir.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            os.lchown(path, APP_UID, APP_GID)


def init_airflow(pool: str, slots: int) -> None:
    """Migrate the metadata database (Postgres in the stack) and set the training pool."""
    airflow = str(Path(sys.executable).parent / "airflow")
    for command in (
        [airflow, "db", "migrate"],
        [airflow, "pools", "set", pool, str(slots), "training jobs (GPU): one at a time"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ComposeFailed(f"{' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")
    log.info("init: Airflow database migrated; pool %s = %d slot(s)", pool, slots)


def serve_deploy(dashboard: str, http_host: str, http_port: int, url: str, config: Path, timeout: float) -> None:
    """`serve deploy` the app config with the stack's http_options; wait until /health answers."""
    import httpx
    import yaml

    document = yaml.safe_load(config.read_text())
    document["http_options"] = {**document.get("http_options", {}), "host": http_host, "port": http_port}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    serve = str(Path(sys.executable).parent / "serve")
    subprocess.run([serve, "deploy", handle.name, "--address", dashboard], check=True)
    log.info("serve-deploy: %s deployed through %s; waiting for %s/health", config, dashboard, url)

    def healthy() -> None:
        try:
            response = httpx.get(f"{url}/health", timeout=10)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"{url}/health: {exc}") from exc
        if response.status_code != 200:
            raise ServiceUnavailable(f"{url}/health: {response.status_code} {response.text[:300]}")

    for attempt in _Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(3), retry=retry_if_exception_type(ServiceUnavailable)
    ):
        with attempt:
            healthy()
    log.info("serve-deploy: the twin API answers at %s", url)


def ray_node_alive(address: str, node_manager_port: int | None = None) -> None:
    """This container's raylet runs and the cluster's GCS lists its node ALIVE (a worker's health
    check: a raylet process alone is not enough, it can still fail to register)."""
    import psutil
    from ray._raylet import GcsClient

    if not any(process.info["name"] == "raylet" for process in psutil.process_iter(["name"])):
        raise ServiceUnavailable("no raylet process in this container")
    nodes = GcsClient(address=address).get_all_node_info(timeout=20).values()
    alive = [node for node in nodes if node.state == 0]  # GcsNodeInfo.ALIVE
    if node_manager_port is not None:
        alive = [node for node in alive if node.node_manager_port == node_manager_port]
    elif len(alive) < 2:
        alive = []
    if not alive:
        raise ServiceUnavailable(f"this node is not ALIVE in the cluster at {address}")


def ray_start(arguments: list[str], attempts: int = 10) -> None:
    """`ray start --block ARGUMENTS`, started again (after `ray stop --force`) when it ends.

    On a busy host a node's raylet can give up waiting for its dashboard agent (a Python process
    that starts slowly) and the node times out; a container whose process exited would make compose
    report the service failed, so the retries happen here, in the container.
    """
    ray = str(Path(sys.executable).parent / "ray")

    def once() -> None:
        code = subprocess.run([ray, "start", "--block", *arguments], check=False).returncode
        subprocess.run([ray, "stop", "--force"], check=False, capture_output=True)
        raise ServiceUnavailable(f"ray start exited with {code}")

    for attempt in _Retrying(
        stop=stop_after_attempt(attempts), wait=wait_fixed(5), retry=retry_if_exception_type(ServiceUnavailable)
    ):
        with attempt:
            log.info("ray-start: attempt %d", attempt.retry_state.attempt_number)
            once()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m twin_ops.services.compose")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install Docker Compose v2 if none is found")
    commands.add_parser("init", help="(airflow-init) project folder, Airflow database, pool")
    deploy = commands.add_parser("serve-deploy", help="(serve-deploy) serve deploy include/serve/twin.yaml")
    deploy.add_argument("--dashboard", required=True)
    deploy.add_argument("--http-host", default="0.0.0.0")
    deploy.add_argument("--http-port", type=int, default=8000)
    deploy.add_argument("--url", required=True)
    deploy.add_argument("--config", type=Path, default=Path("include/serve/twin.yaml"))
    deploy.add_argument("--ray-address", help="unused by the deploy itself (kept for the record)")
    deploy.add_argument("--timeout", type=float, default=900)
    alive = commands.add_parser("ray-node-alive", help="(ray-worker health check)")
    alive.add_argument("--address", required=True)
    alive.add_argument("--node-manager-port", type=int, help="this node's (else: any node besides the head)")
    start = commands.add_parser("ray-start", help="(ray-head, ray-worker) ray start --block, started again if it ends")
    start.add_argument("arguments", nargs=argparse.REMAINDER, help="ray start's arguments (after --)")
    for name in ("up", "ps", "down"):
        sub = commands.add_parser(name, help=f"compose {name} with docker-compose.local.yaml")
        sub.add_argument("--no-local", action="store_true", help="the portable file alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "install":
            print(" ".join(ensure_compose()))
        elif args.command == "init":
            from twin_ops.config import load_params

            project_dir = Path(os.environ["TWIN_OPS_HOME"])
            init_project(project_dir, Path("/opt/twin-ops"))
            params = load_params(project_dir / "params.yaml")
            init_airflow(params.airflow.gpu_pool, params.airflow.gpu_pool_slots)
            hand_over(project_dir)
        elif args.command == "serve-deploy":
            config = args.config if args.config.is_absolute() else Path("/opt/twin-ops") / args.config
            serve_deploy(args.dashboard, args.http_host, args.http_port, args.url, config, args.timeout)
        elif args.command == "ray-start":
            ray_start([arg for arg in args.arguments if arg != "--"])
        elif args.command == "ray-node-alive":
            ray_node_alive(args.address, args.node_manager_port)
        else:
            root = Path(__file__).resolve().parents[2]
            stack = Stack(root, env={}, local=not args.no_local)
            if args.command == "up":
                stack.up()
                print(json.dumps(stack.wait_healthy(), indent=2))
            elif args.command == "ps":
                print(stack.run("ps", "--all").stdout)
            else:
                stack.down()
    except (TwinOpsError, subprocess.CalledProcessError) as exc:
        log.error("%s", exc)
        return getattr(exc, "exit_code", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
