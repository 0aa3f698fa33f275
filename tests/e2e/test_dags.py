"""The three DAGs end to end, through real Airflow, in a scratch project (git + DVC).

`airflow dags test` runs twin_nightly_refresh (crawl of the demo site on 127.0.0.1, GX, DVC,
features into this module's own Weaviate aliases) and twin_training (datasets, LoRA SFT + DPO on
a tiny locally built model, evaluation, gate, promotion to a real Ray Serve app started with
`twin-ops serve`). A standalone Airflow then triggers twin_training through the REST API with a
params conf, as the UI's form does. The tests share the project and run in order.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
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
MODEL = f"{AUTHOR}-twin"
# A run small enough for CI on 2 cores; the form's fields plus other params.yaml keys.
TRAINING_CONF = {
    "author": AUTHOR,
    "sft_max_steps": 20,
    "dpo_max_steps": 10,
    "learning_rate": 0.002,
    "lora_rank": 8,
    "backend": "local",
    "skip_dpo": False,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(repo: Path, env: dict, *command: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return result


def airflow_python(env: dict, code: str) -> object:
    """Run ``code`` against the scratch project's Airflow database; it prints one JSON value."""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


ASSET_EVENTS = """
import json
from sqlalchemy import select
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session
with create_session() as session:
    events = session.scalars(select(AssetEvent).order_by(AssetEvent.id)).all()
    print(json.dumps([{"uri": e.asset.uri, "extra": e.extra, "dag": e.source_dag_id} for e in events]))
"""


QUEUED_FOR_TRAINING = """
import json
from sqlalchemy import delete, select
from airflow.models.asset import AssetDagRunQueue
from airflow.utils.session import create_session
with create_session() as session:
    queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
    if CLEAR:
        session.execute(delete(AssetDagRunQueue))
    print(json.dumps(sorted(queued)))
"""


def queued_for_training(env: dict, clear: bool = False) -> list[str]:
    """DAGs an asset event has queued to run (what a scheduler would start next)."""
    return airflow_python(env, f"CLEAR = {clear}\n" + QUEUED_FOR_TRAINING)


def dag_test(repo: Path, env: dict, dag_id: str, conf: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(BIN / "airflow"), "dags", "test", dag_id]
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    return run(repo, env, *command, check=False, timeout=1500)


def run_state(result: subprocess.CompletedProcess) -> str:
    finished = [line for line in (result.stdout + result.stderr).splitlines() if "DagRun Finished" in line]
    assert finished, (result.stdout + result.stderr)[-5000:]
    return finished[-1].split("state=")[1].split(",")[0]


def task_states(result: subprocess.CompletedProcess) -> str:
    """The task state changes, then the output's error lines: what a failed run's message needs."""
    lines = (result.stdout + result.stderr).splitlines()
    states = [line for line in lines if "new_state=" in line]
    errors = [line for line in lines if "Error" in line or "error" in line][-40:]
    return "\n".join([*states, "--- errors:", *errors])


def registry(repo: Path) -> dict:
    return json.loads((repo / "models" / "registry.json").read_text())["models"][MODEL]


def index_counts(params: dict) -> dict[str, int]:
    with connect() as client:
        return {
            alias: len(client.collections.get(alias)) for alias in (params["documents_alias"], params["chunks_alias"])
        }


def untied_tiny_model(target: Path, tokenizer_source: str) -> Path:
    """The tiny random Llama with its own LM head: with tied embeddings a random model's greedy
    output repeats the prompt's last token ("\\n"), so every generated answer would be empty and
    the preference dataset would (rightly) fail validation."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.support.tiny import build_tiny_model

    build_tiny_model(target, tokenizer_source)
    model = AutoModelForCausalLM.from_pretrained(target)
    model.config.tie_word_embeddings = False
    torch.manual_seed(1)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.02)
    model.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory, params):
    work = tmp_path_factory.mktemp("site")
    out = work / "public"
    server = SiteServer(out)
    demo = ROOT / "include" / "demo_site"
    build_site(out, server.url, demo / "content", demo / "repo", posts_per_page=params.collect.demo_site.posts_per_page)
    with server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory, site, params, paths):
    """A scratch copy of the project: its own data, registry, Airflow home, index aliases, port."""
    from twin_ops.llm import resolve_model
    from twin_ops.services.airflow_home import airflow_environment

    repo = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    for folder in ("include", "dags", "plugins", "twin_ops"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    tiny = untied_tiny_model(repo / ".twin" / "tiny-base", resolve_model(params.training.base_model, paths.cache))
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["features"]["documents_alias"] = f"DagDocs{SUFFIX}"  # never touch the real index
    raw["features"]["chunks_alias"] = f"DagChunks{SUFFIX}"
    raw["training"]["base_model"] = str(tiny)
    raw["training"]["max_length"] = 192
    raw["training"]["sft"]["batch_size"] = 4
    raw["training"]["dpo"]["batch_size"] = 2
    raw["datasets"]["max_passages_per_document"] = 2
    raw["datasets"]["instruction_max_new_tokens"] = 16
    raw["datasets"]["answer_max_new_tokens"] = 32
    raw["evaluation"]["num_samples"] = 4
    raw["evaluation"]["max_new_tokens"] = 24
    # A tiny random model's generations are noise: the gate decides on perplexity alone here
    # (guarded metrics are covered by the evaluation tests).
    raw["evaluation"]["guarded"] = {}
    raw["serving"]["port"] = free_port()
    # The same Weaviate as this session (TWIN_OPS_PARAM__weaviate__* may move it): the overrides are
    # dropped from the scratch project's environment below.
    raw["weaviate"]["http_port"] = params.weaviate.http_port
    raw["weaviate"]["grpc_port"] = params.weaviate.grpc_port
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (repo / ".gitignore").write_text("/.twin/\n/reports/gx/\n__pycache__/\n/models/\n")
    from twin_ops.config import Settings, load_params, resolve_paths

    scratch_params = load_params(repo / "params.yaml")
    scratch_paths = resolve_paths(scratch_params, Settings(twin_ops_home=repo))
    env = {
        **os.environ,
        **airflow_environment(scratch_params, scratch_paths),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TWIN_OPS_HOME": str(repo),
        "DEMO_SITE_URL": site.url,
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    }
    for name in [n for n in env if n.startswith("TWIN_OPS_PARAM__")]:
        env.pop(name)
    run(repo, env, "git", "init", "-q")
    run(repo, env, "git", "config", "user.email", "ci@twin-ops.invalid")
    run(repo, env, "git", "config", "user.name", "ci")
    run(repo, env, "dvc", "init", "-q")
    run(repo, env, "dvc", "config", "core.analytics", "false")
    run(repo, env, "git", "add", "-A")
    run(repo, env, "git", "commit", "-qm", "project")
    run(repo, env, str(BIN / "twin-ops"), "services", "airflow-init")
    yield repo, env, raw
    with connect() as client:
        for alias in (raw["features"]["documents_alias"], raw["features"]["chunks_alias"]):
            target = index.alias_target(client, alias)
            if target:
                client.alias.delete(alias_name=alias)
                client.collections.delete(target)


@pytest.fixture(scope="module")
def serving(project):
    """`twin-ops serve` for the scratch project (the base model until something is promoted)."""
    repo, env, raw = project
    url = f"http://127.0.0.1:{raw['serving']['port']}"
    log = open(repo / ".twin" / "serve.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [str(BIN / "twin-ops"), "serve", "--single-replica"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert process.poll() is None, (repo / ".twin" / "serve.log").read_text()[-5000:]
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            raise AssertionError(
                "twin-ops serve did not come up:\n" + (repo / ".twin" / "serve.log").read_text()[-5000:]
            )
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_nightly_refresh_publishes_the_authors_feature_asset(project):
    repo, env, raw = project
    result = dag_test(repo, env, "twin_nightly_refresh", {"authors": [AUTHOR]})
    assert run_state(result) == "success", task_states(result)
    events = airflow_python(env, ASSET_EVENTS)
    assert [e["uri"] for e in events] == [f"twin-ops://features/{AUTHOR}"]
    assert events[0]["extra"]["author"] == AUTHOR and events[0]["extra"]["chunks"] > 100
    assert queued_for_training(env) == ["twin_training"]  # a scheduler would start training now
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in (f"crawl@{AUTHOR}", f"validate_raw@{AUTHOR}", f"features@{AUTHOR}"):
        assert stage in lock, sorted(lock)
    assert index_counts(raw["features"])[raw["features"]["chunks_alias"]] == events[0]["extra"]["chunks"]
    # The secrets and contact details planted in the demo repository and export were redacted.
    planted = yaml.safe_load((ROOT / "include" / "demo_site" / "planted_secrets.yaml").read_text())["planted"]
    with connect() as client:
        indexed = json.dumps(
            [o.properties for alias in index_counts(raw["features"]) for o in client.collections.get(alias).iterator()],
            default=str,
        )
    assert "<redacted:" in indexed
    assert [case["kind"] for case in planted if case["value"] in indexed] == []
    run(repo, env, "git", "add", "-A")
    run(repo, env, "git", "commit", "-qm", "data v1")


def test_training_promotes_a_better_twin_and_serves_it(project, serving):
    repo, env, _ = project
    result = dag_test(repo, env, "twin_training", TRAINING_CONF)
    output = result.stdout + result.stderr
    assert run_state(result) == "success", task_states(result) + output[-5000:]
    entry = registry(repo)
    production = entry["aliases"]["production"]
    assert production == 1, entry["aliases"]
    assert "gate: PROMOTE" in output
    report = repo / "reports" / "evaluation" / AUTHOR / "report.md"
    assert all(role in report.read_text() for role in ("candidate", "base")), report.read_text()[:2000]
    answer = httpx.post(
        f"{serving}/rag", json={"query": "How should a retry wait?", "author": AUTHOR, "k": 3}, timeout=300
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == f"{MODEL}:v{production}"
    assert body["sources"] and all(source["url"].startswith("http://127.0.0.1") for source in body["sources"])


def test_a_broken_raw_batch_stops_the_refresh_and_training_is_not_triggered(project, serving):
    repo, env, raw = project
    counts = index_counts(raw["features"])
    production = registry(repo)["aliases"]["production"]
    events_before = airflow_python(env, ASSET_EVENTS)
    queued_for_training(env, clear=True)  # the good refresh's owed training run was run above
    published = {p.name: p.read_bytes() for p in (repo / "data" / "raw" / AUTHOR).glob("*.jsonl")}

    store = repo / "data" / "crawl" / AUTHOR / "blog.jsonl"
    documents = read_jsonl(store, RawDocument)
    documents[0] = documents[0].model_copy(update={"author_id": "juno-marsh"})  # a wrong-author record
    write_jsonl(store, documents)
    result = dag_test(repo, env, "twin_nightly_refresh", {"authors": [AUTHOR]})
    output = result.stdout + result.stderr
    assert run_state(result) == "failed"
    assert "author matches config" in output or "author_id" in output, output[-5000:]
    assert "twin_nightly_refresh: task refresh_author.validate_raw[0] failed" in output  # the failure summary
    assert airflow_python(env, ASSET_EVENTS) == events_before  # no asset event...
    assert queued_for_training(env) == []  # ...so twin_training is not queued
    assert index_counts(raw["features"]) == counts
    assert registry(repo)["aliases"]["production"] == production
    assert {p.name: p.read_bytes() for p in (repo / "data" / "raw" / AUTHOR).glob("*.jsonl")} == published
    health = httpx.get(f"{serving}/health", timeout=30).json()
    assert health["model_version"] == f"{MODEL}:v{production}"
    run(repo, env, "git", "checkout", "--", "dvc.lock")
    run(repo, env, "dvc", "checkout", "--force", f"data/crawl/{AUTHOR}")


@pytest.fixture(scope="module")
def standalone(project):
    """`airflow standalone` (api-server, scheduler, dag-processor, triggerer) for the project."""
    repo, env, _ = project
    port = free_port()
    env = {
        **env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # No cron runs (the nightly refresh would start at once, catchup or not): only what we trigger.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    url = f"http://localhost:{port}"
    # twin_training already ran for the refresh's asset event (`airflow dags test` above); without
    # this, the scheduler would start that owed run first.
    queued_for_training(env, clear=True)
    log = open(repo / ".twin" / "standalone.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert process.poll() is None, (repo / ".twin" / "standalone.log").read_text()[-5000:]
            try:
                health = httpx.get(f"{url}/api/v2/monitor/health", timeout=5)
                if health.status_code == 200 and health.json()["scheduler"]["status"] == "healthy":
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(3)
        else:
            raise AssertionError(
                "standalone did not come up:\n" + (repo / ".twin" / "standalone.log").read_text()[-5000:]
            )
        passwords = json.loads((Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").read_text())
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30)
        assert token.status_code in (200, 201), token.text
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
        )
        yield client
        client.close()
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        log.close()


def test_the_rest_api_triggers_training_with_a_params_conf(project, serving, standalone):
    """What the UI's trigger form does: POST a run whose conf fills the Params form."""
    refused = standalone.post(
        "/api/v2/dags/twin_training/dagRuns", json={"logical_date": None, "conf": {"backend": "slurm"}}
    )
    assert refused.status_code == 400 and "backend" in refused.text, refused.text
    conf = {**TRAINING_CONF, "sft_max_steps": 5, "skip_dpo": True}
    created = standalone.post("/api/v2/dags/twin_training/dagRuns", json={"logical_date": None, "conf": conf})
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    deadline = time.monotonic() + 1200
    state = created.json()["state"]
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(5)
        state = standalone.get(f"/api/v2/dags/twin_training/dagRuns/{run_id}").json()["state"]
    tasks = standalone.get(f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tasks}
    assert state == "success", states
    spec = standalone.get(
        f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/resolve_run/xcomEntries/return_value"
    ).json()["value"]
    assert spec["skip_dpo"] is True and spec["overrides"]["training.sft.max_steps"] == 5, spec
    assert states["dpo_local"] == "skipped" and states["sft_container"] == "skipped", states
    assert states["sft_local"] == "success" and states["evaluate"] == "success", states
    links = standalone.get(f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/evaluate/links").json()
    report = links["extra_links"]["Model card / evaluation report"]
    assert report == f"/twin-ops/evaluation/{AUTHOR}/report.md", links  # a page on the API server
    page = standalone.get(report)
    assert page.status_code == 200 and "<h1>Evaluation" in page.text and 'src="comparison.png"' in page.text
    assert standalone.get(report.replace("report.md", "comparison.png")).content.startswith(b"\x89PNG")
    docs = standalone.get(f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/validate_datasets/links")
    page = standalone.get(docs.json()["extra_links"]["GX Data Docs"])  # the validation's own page
    assert page.status_code == 200 and "preference_dataset" in page.text, docs.text


def test_twin_deploy_serves_a_chosen_version_then_rolls_back(project, serving):
    from twin_ops.registry.store import Registry

    repo, env, _ = project
    store = Registry(repo / "models")
    before = registry(repo)["aliases"]["production"]
    current = store.get(MODEL, before)
    # A second version (the same weights, registered again by hand): deploying it must move production.
    second = store.register(
        MODEL,
        current.base_model,
        adapter_path=current.adapter_path,
        merged_path=current.merged_path,
        lineage={"copied_from": before},
    )
    assert second.version != before

    result = dag_test(repo, env, "twin_deploy", {"author": AUTHOR, "action": "deploy", "version": second.version})
    assert run_state(result) == "success", task_states(result)
    aliases = registry(repo)["aliases"]
    assert (aliases["production"], aliases["previous"]) == (second.version, before), aliases
    assert httpx.get(f"{serving}/health", timeout=30).json()["model_version"] == f"{MODEL}:v{second.version}"

    result = dag_test(repo, env, "twin_deploy", {"author": AUTHOR, "action": "rollback", "version": None})
    assert run_state(result) == "success", task_states(result)
    aliases = registry(repo)["aliases"]
    assert (aliases["production"], aliases["previous"]) == (before, second.version), aliases
    assert httpx.get(f"{serving}/health", timeout=30).json()["model_version"] == f"{MODEL}:v{before}"
    assert registry(repo)["history"][-1]["reason"] == "rollback by twin_deploy"
