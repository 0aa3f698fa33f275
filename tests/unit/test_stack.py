"""docker-compose.yaml against the compose-spec schema (the compose CLI plugin is not packaged
for this machine), the stack's shape, and the Airflow connections the DAGs read."""

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
LONG_RUNNING = [
    "postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "weaviate", "ray-head",
]  # fmt: skip


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
    assert "postgresql" in services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["airflow-scheduler"]["volumes"]
    for name in ("airflow-apiserver", "airflow-scheduler"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_the_stack_matches_the_project(compose, params):
    services = compose["services"]
    assert services["weaviate"]["image"].endswith(f":{params.weaviate.version}")
    dockerfile = services["airflow-scheduler"]["build"]["dockerfile"]
    assert (ROOT / dockerfile).is_file()
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
        "DOCKER_HOST": "unix:///var/run/docker.sock",
    }
    from twin_ops.config import Settings

    settings = Settings(**{name.lower(): value for name, value in env.items()})
    assert settings.weaviate_url == "http://weaviate:8080" and settings.ray_address == "ray://ray-head:10001"


def test_without_connections_the_embedded_defaults_stay():
    assert probe_connections({}) == {}
