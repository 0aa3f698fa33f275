"""The scale-out stack for real: locally built images, docker compose, Celery, a Ray cluster.

Builds the images (cached after the first time), starts docker-compose.yaml with
docker-compose.local.yaml (host networking, 127.0.0.1 ports clear of the suite's own services) on
the project's dockerd, waits until every service is healthy, then, through Airflow's REST API:

1. twin_nightly_refresh for the demo author runs on the Celery worker, its run stored in Postgres;
2. its asset event makes the scheduler start twin_training for that author (triggering asset
   events), which trains in the worker process and is promoted;
3. twin_training with backend "docker" runs TrainingContainerOperator: a real training container
   (network "none", datasets mounted read-only) on the host's engine; the run is promoted, and the
   two runs' training tasks never overlapped (the training pool has one slot);
4. the twin on the Ray cluster answers /rag with sources from the Weaviate container;
5. compose down -v leaves no container, volume or process of the stack behind.

Nothing here is skipped: if the engine, compose or an image cannot be had, the test fails with why.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from twin_ops.errors import ServiceUnavailable

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = "wren-halvorsen"
API = "http://127.0.0.1:28080"
SERVE = "http://127.0.0.1:28000"
WEAVIATE = "http://127.0.0.1:28079"
PROJECT = "twin-ops-stack-test"
TRAINING_TASKS = ("sft_local", "dpo_local", "sft_container", "dpo_container")

log = logging.getLogger(__name__)
# Images (cached: seconds; cold: see README), start-up, and three DAG runs on a shared 2-core box.
pytestmark = pytest.mark.timeout(3600)


def poll(check, timeout: float, every: float = 5):
    """Call ``check`` until it stops raising ServiceUnavailable; its value, or the last error."""
    for attempt in Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(every), retry=retry_if_exception_type(ServiceUnavailable),
        reraise=True,
    ):  # fmt: skip
        with attempt:
            return check()
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def engine(params, paths, settings):
    from twin_ops.services import docker_engine

    info = docker_engine.start_engine(params, paths, settings)
    return info.url


@pytest.fixture(scope="module")
def images(engine, params, paths, settings):
    from twin_ops.services.images import build_images

    started = time.monotonic()
    timings = build_images(params, paths, settings)
    print(f"images: {json.dumps({k: round(v) for k, v in timings.items()})} ({time.monotonic() - started:.0f}s)")
    return timings


@pytest.fixture(scope="module")
def site(tmp_path_factory, params):
    from twin_ops.demo.server import SiteServer
    from twin_ops.demo.site import build_site

    out = tmp_path_factory.mktemp("stack-site") / "public"
    server = SiteServer(out)
    demo = ROOT / "include" / "demo_site"
    build_site(out, server.url, demo / "content", demo / "repo", posts_per_page=params.collect.demo_site.posts_per_page)
    with server:
        yield server


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory, site, params, paths):
    """The stack's project folder (same path inside the containers): a CI-sized params.yaml."""
    from tests.e2e.test_dags import untied_tiny_model
    from twin_ops.llm import resolve_model

    folder = tmp_path_factory.mktemp("stack-project")
    tiny = untied_tiny_model(folder / "tiny-base", resolve_model(params.training.base_model, paths.cache))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["collect"]["demo_site"]["port"] = int(site.url.rsplit(":", 1)[1])
    raw["training"]["base_model"] = str(tiny)
    raw["training"]["max_length"] = 192
    raw["training"]["sft"].update(batch_size=4, max_steps=5)
    raw["training"]["dpo"].update(batch_size=2, max_steps=3)
    raw["datasets"].update(max_passages_per_document=2, instruction_max_new_tokens=16, answer_max_new_tokens=32)
    raw["evaluation"].update(num_samples=4, max_new_tokens=24, guarded={})
    # No scheduled refresh for the latest nightly slot when the DAG first appears (catchup=False
    # still runs that one): the refresh here is the one the test triggers. Feb 29 never falls
    # between the DAG's start date (2026-01-01) and now before 2028.
    raw["airflow"]["nightly_schedule"] = "0 3 29 2 *"
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    folder.chmod(0o777)
    for parent in folder.parents:  # the containers' user (uid 50000) must reach it
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    return folder


def training_containers(engine: str, project_dir: Path) -> list:
    """Training containers (any state) whose mounts come from this test's project folder."""
    import docker

    client = docker.DockerClient(base_url=engine)
    try:
        containers = client.containers.list(all=True, filters={"label": "twin-ops.stage"})
        return [
            c for c in containers
            if any(str(m.get("Source", "")).startswith(str(project_dir)) for m in c.attrs.get("Mounts", []))
        ]  # fmt: skip
    finally:
        client.close()


@pytest.fixture(scope="module")
def stack(engine, images, project_dir):
    from twin_ops.services.compose import Stack, ensure_compose
    from twin_ops.services.docker_engine import SOCKET

    sock = Path(engine.removeprefix("unix://")) if engine.startswith("unix://") else SOCKET
    env = {
        "DOCKER_HOST": engine,
        "TWIN_OPS_PROJECT_DIR": str(project_dir),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
        "DOCKER_SOCKET": str(sock),
        "DOCKER_GID": str(sock.stat().st_gid),
        "RAY_HEAD_CPUS": "2",
        "RAY_WORKER_CPUS": "1",
    }
    stack = Stack(ROOT, env=env, project=PROJECT, compose=ensure_compose())
    started = time.monotonic()
    try:
        stack.up()
        states = stack.wait_healthy(timeout=900)
        print(f"stack healthy in {time.monotonic() - started:.0f}s: {states}")
        print(stack.run("ps", "--all").stdout)
        yield stack
    except Exception:
        print(stack.logs(tail=80))
        raise
    finally:
        stack.down()
        # Training containers run on the host's engine, outside compose: a test that failed midway
        # leaves them to us. Only ours: the engine is shared with the rest of the suite.
        for container in training_containers(engine, project_dir):
            container.remove(force=True)
        shutil.rmtree(project_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def airflow(stack, project_dir):
    passwords = json.loads((project_dir / ".twin" / "airflow" / "passwords.json").read_text())
    token = httpx.post(f"{API}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30)
    assert token.status_code in (200, 201), token.text
    with httpx.Client(
        base_url=API, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
    ) as client:
        yield client


def trigger(airflow: httpx.Client, dag_id: str, conf: dict) -> str:
    created = airflow.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    assert created.status_code == 200, created.text
    return created.json()["dag_run_id"]


def wait_for_run(airflow: httpx.Client, dag_id: str, run_id: str, timeout: float) -> dict[str, str]:
    def finished() -> str:
        state = airflow.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("queued", "running"):
            raise ServiceUnavailable(f"{dag_id} {run_id} is {state}")
        return state

    state = poll(finished, timeout, every=10)
    tasks = airflow.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tasks}
    assert state == "success", f"{dag_id} {run_id}: {state} {states}"
    return states


def task_instances(airflow: httpx.Client, dag_id: str, run_id: str) -> list[dict]:
    return airflow.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]


def psql(stack, query: str) -> str:
    # The server's unix socket: local connections are trusted, TCP ones need the password.
    result = stack.run("exec", "-T", "postgres", "psql", "-h", "/var/run/postgresql", "-p", "25432", "-U", "airflow",
                       "-d", "airflow", "-At", "-c", query)  # fmt: skip
    return result.stdout.strip()


def test_every_service_is_healthy(stack):
    states = stack.check()
    assert set(states) == set(stack.services()), states
    assert all(state in ("healthy", "completed") for state in states.values()), states
    assert states["airflow-init"] == "completed" and states["serve-deploy"] == "completed", states
    services = stack.services()
    assert all(spec.get("network_mode") == "host" for spec in services.values())
    executor = services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    assert (
        executor == "CeleryExecutor"
        and "postgresql" in services["airflow-worker"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_refresh_runs_on_a_celery_worker_and_its_asset_event_starts_training(stack, airflow):
    run_id = trigger(airflow, "twin_nightly_refresh", {"authors": [AUTHOR]})
    states = wait_for_run(airflow, "twin_nightly_refresh", run_id, timeout=900)
    assert all(state in ("success", "skipped") for state in states.values()), states
    # The run lives in Postgres, and the tasks were executed by the Celery worker.
    assert psql(stack, f"select state from dag_run where run_id = '{run_id}'") == "success"
    worker_log = stack.logs("airflow-worker", tail=2000)
    assert run_id in worker_log, worker_log[-3000:]
    assert "celery" in worker_log.lower()

    # The feature asset's event queued twin_training: the scheduler starts it with the event.
    def asset_run() -> dict:
        runs = airflow.get("/api/v2/dags/twin_training/dagRuns", params={"run_type": "asset_triggered"}).json()
        if not runs["dag_runs"]:
            raise ServiceUnavailable("no asset-triggered twin_training run yet")
        return runs["dag_runs"][0]

    training = poll(asset_run, timeout=300)
    events = airflow.get(f"/api/v2/dags/twin_training/dagRuns/{training['dag_run_id']}/upstreamAssetEvents").json()
    assert [event["extra"]["author"] for event in events["asset_events"]] == [AUTHOR], events
    states = wait_for_run(airflow, "twin_training", training["dag_run_id"], timeout=1500)
    assert states["sft_local"] == "success" and states["sft_container"] == "skipped", states


def test_docker_backend_runs_a_training_container_and_is_promoted(stack, airflow, project_dir):
    conf = {"author": AUTHOR, "backend": "docker", "sft_max_steps": 30, "learning_rate": 0.003, "skip_dpo": True}
    run_id = trigger(airflow, "twin_training", conf)
    states = wait_for_run(airflow, "twin_training", run_id, timeout=1500)
    assert states["sft_container"] == "success" and states["sft_local"] == "skipped", states
    assert states["promote"] == "success", states
    log_lines = airflow.get(
        f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/sft_container/logs/1",
        headers={"Accept": "application/json"},
    ).text
    assert "training sft in twin-ops/training:latest" in log_lines, log_lines[-3000:]
    registry = json.loads((project_dir / "models" / "registry.json").read_text())["models"][f"{AUTHOR}-twin"]
    assert registry["aliases"]["production"] == max(v["version"] for v in registry["versions"]), registry

    # One training slot: no two training tasks of the two runs overlapped.
    spans = []
    for dag_run in airflow.get("/api/v2/dags/twin_training/dagRuns").json()["dag_runs"]:
        for ti in task_instances(airflow, "twin_training", dag_run["dag_run_id"]):
            if ti["task_id"] in TRAINING_TASKS and ti["state"] == "success":
                assert ti["pool"] == "twin_gpu", ti
                spans.append((datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])))
    spans.sort()
    assert len(spans) >= 2, spans
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), spans


def test_the_twin_on_the_ray_cluster_answers_with_sources_from_weaviate(stack):
    answer = httpx.post(
        f"{SERVE}/rag", json={"query": "How should a retry wait?", "author": AUTHOR, "k": 3}, timeout=300
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sources"] and all(source["url"].startswith("http://127.0.0.1") for source in body["sources"]), body
    assert body["model_version"].startswith(f"{AUTHOR}-twin:v"), body
    meta = httpx.get(f"{WEAVIATE}/v1/meta", timeout=10).json()
    assert meta["version"] == yaml.safe_load((ROOT / "params.yaml").read_text())["weaviate"]["version"]


def test_compose_down_leaves_nothing_behind(stack, engine, project_dir):
    import docker

    stack.down()
    client = docker.DockerClient(base_url=engine)
    try:
        label = {"label": f"com.docker.compose.project={PROJECT}"}
        assert client.containers.list(all=True, filters=label) == []
        assert client.volumes.list(filters=label) == []
    finally:
        client.close()
    assert training_containers(engine, project_dir) == []  # auto_remove after success
    leftovers = [
        p.info for p in psutil.process_iter(["pid", "name", "cmdline"])
        if any(port in " ".join(p.info["cmdline"] or []) for port in ("28080", "26380", "28079", "25432"))
    ]  # fmt: skip
    assert leftovers == [], leftovers
    for port in (28080, 28000, 28079, 25432, 26379, 26380):
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
