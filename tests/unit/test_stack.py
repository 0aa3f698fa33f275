"""docker-compose.yaml against the compose-spec schema, the stack's shape, the host-network local
override, and the Airflow connections the DAGs read. The stack itself is started by
tests/stack/test_compose_stack.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
LOCAL = ROOT / "docker-compose.local.yaml"
LONG_RUNNING = [
    "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "airflow-worker", "weaviate", "ray-head", "ray-worker",
]  # fmt: skip
# Ports a plain local `ray start`, the embedded services and the suite use (README: Scale out).
DEFAULT_PORTS = {5432, 6379, 8000, 8079, 8080, 8265, 8765, 8793, 8794, 8974, 10001, 50050, 50051, 52365}


def compose_errors(document: dict) -> list[str]:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    validator = Draft202012Validator(json.loads(schema_file.read_text()))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<) are resolved here, as compose does


def test_compose_file_matches_the_compose_spec(compose):
    assert compose_errors(compose) == []


def test_the_schema_check_catches_a_broken_file(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["weaviate"]["image"] = 1
    broken["services"]["ray-head"]["healthcheck"]["intervall"] = "5s"
    errors = compose_errors(broken)
    assert any("weaviate/image" in e for e in errors) and any("healthcheck" in e for e in errors), errors


def test_the_stack_has_every_service_with_health_checks(compose):
    services = compose["services"]
    assert set(LONG_RUNNING) | {"ray-worker", "airflow-init", "serve-deploy"} <= set(services)
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    commands = {name: " ".join(service.get("command") or []) for name, service in services.items()}
    for part in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert any(command == f"airflow {part}" for command in commands.values()), part
    environment = services["airflow-scheduler"]["environment"]
    assert "postgresql" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert commands["airflow-worker"] == "airflow celery worker"
    # Training containers start on the host's engine from the workers; nothing else gets the socket.
    sockets = {name for name, s in services.items() if any("docker.sock" in v for v in s.get("volumes", []))}
    assert sockets == {"airflow-worker"}, sockets
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    assert "include/serve/twin.yaml" in (ROOT / "twin_ops" / "services" / "compose.py").read_text()
    assert "serve-deploy" in commands["serve-deploy"]


def test_the_stack_matches_the_project(compose, params):
    services = compose["services"]
    assert services["weaviate"]["image"].endswith(f":{params.weaviate.version}")
    assert services["weaviate"]["build"]["args"]["BASE_IMAGE"].endswith(f":{params.weaviate.version}}}")
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
    assert "networks" not in compose  # the default network only: nothing on a range of our choosing
    for ports in (service.get("ports", []) for service in services.values()):
        assert all(port.startswith("127.0.0.1:") for port in ports), ports  # nothing published beyond loopback
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = (ROOT / ".env.example").read_text()
    assert required and all(f"{name}=" in example for name in required), required


CONNECTIONS_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from twin_airflow.connections import service_environment
print(json.dumps(service_environment()))
"""


def probe_connections(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")} | extra
    result = subprocess.run(
        [sys.executable, "-c", CONNECTIONS_PROBE, str(ROOT / "plugins")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_connections_become_the_settings_twin_ops_reads(compose):
    airflow_env = compose["services"]["airflow-scheduler"]["environment"]
    connections = {name: value for name, value in airflow_env.items() if name.startswith("AIRFLOW_CONN_")}
    env = probe_connections(connections)
    assert env == {
        "WEAVIATE_URL": "http://weaviate:8080",
        "WEAVIATE_GRPC_URL": "http://weaviate:50051",
        "TWIN_OPS_SERVE_URL": "http://ray-head:8000",
        "RAY_ADDRESS": "ray://ray-head:10001",
        "RAY_DASHBOARD_ADDRESS": "http://ray-head:8265",
        "DOCKER_HOST": "unix:///var/run/docker.sock",
    }
    from twin_ops.config import Settings

    settings = Settings(**{name.lower(): value for name, value in env.items()})
    assert settings.weaviate_url == "http://weaviate:8080" and settings.ray_address == "ray://ray-head:10001"
    assert settings.ray_dashboard_address == "http://ray-head:8265"  # Serve's REST API: model swaps


def test_without_connections_the_embedded_defaults_stay():
    assert probe_connections({}) == {}


class _ComposeLoader(yaml.SafeLoader):
    """YAML with compose's !reset / !override tags (the override file uses !reset)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))


@pytest.fixture(scope="module")
def local() -> dict:
    return yaml.load(LOCAL.read_text(), Loader=_ComposeLoader)


def test_the_local_override_puts_every_service_on_the_host_network(compose, local):
    assert set(local["services"]) == set(compose["services"])
    for name, service in local["services"].items():
        assert service.get("network_mode") == "host", name
        assert not service.get("ports"), name  # published ports mean nothing on the host network
    assert "networks" not in local


def test_the_local_override_uses_distinct_loopback_ports_clear_of_the_defaults(local):
    text = LOCAL.read_text()
    body = text[text.index("\nx-local-env") :]  # the file's settings, not its comment header
    assert "0.0.0.0" not in body and "localhost" not in body
    assert not re.search(r"\b(10|172\.(1[6-9]|2\d|3[01])|192\.168)\.\d+\.\d+", body)  # no private range
    ports = {int(p) for p in re.findall(r"(?:port[=:\s\"]+|127\.0\.0\.1:|-p\", \")(\d{4,5})", body, re.IGNORECASE)}
    ports |= {int(p) for p in re.findall(r"--[a-z-]*port=(\d+)", body)}
    assert len(ports) >= 20, sorted(ports)
    assert not ports & DEFAULT_PORTS, sorted(ports & DEFAULT_PORTS)
    # Outside a plain `ray start`'s worker range (10002-19999) and the ephemeral range (32768+).
    assert all(20000 <= port < 32768 for port in ports), sorted(ports)
    head = local["services"]["ray-head"]["command"]
    worker = local["services"]["ray-worker"]["command"]
    # Loopback, but not 127.0.0.1, which Ray swaps for the host's routable address.
    assert "--node-ip-address=127.0.0.2" in head and "--node-ip-address=127.0.0.2" in worker
    flags = ["node-manager", "object-manager", "metrics-export", "dashboard-agent-listen", "dashboard-agent-grpc",
             "runtime-env-agent", "min-worker", "max-worker"]  # fmt: skip
    for flag in (f"{name}-port" for name in flags):
        assert f"--{flag}=" in head and f"--{flag}=" in worker, flag
    head_ports = set(re.findall(r"port=(\d+)", head))
    assert not head_ports & set(re.findall(r"port=(\d+)", worker))


def test_the_images_are_the_ones_compose_runs(compose, params):
    from twin_ops.services.images import stack_images

    built = {spec.tag for spec in stack_images(params)}
    used = {service["image"] for service in compose["services"].values()}
    assert used <= built, used - built
    assert params.training.container.image in built
    for spec in stack_images(params):
        assert (ROOT / spec.dockerfile).is_file()
        text = (ROOT / spec.dockerfile).read_text()
        for arg in spec.buildargs:
            assert f"ARG {arg}" in text, (spec.dockerfile, arg)
