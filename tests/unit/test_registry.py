"""The model registry: aliases move as promised, and concurrent writers cannot corrupt it."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from twin_ops.registry.store import Registry, RegistryError

NAME = "wren-halvorsen-twin"


def test_register_promote_rollback(tmp_path):
    registry = Registry(tmp_path)
    first = registry.register(NAME, "smollm2-135m", metrics={"loss": 2.0})
    assert first.version == 1 and registry.alias(NAME, "candidate") == first
    assert registry.alias(NAME, "production") is None
    registry.promote(NAME)
    second = registry.register(NAME, "smollm2-135m", metrics={"loss": 1.5})
    assert registry.get(NAME, "production") == first
    assert registry.get(NAME, "candidate") == second

    registry.promote(NAME, "candidate")
    assert registry.get(NAME, "production") == second
    assert registry.get(NAME, "previous") == first

    restored = registry.rollback(NAME)
    assert restored == first  # the exact previous version, metadata and all
    assert registry.get(NAME, "production") == first
    assert registry.get(NAME, "previous") == second
    moves = [(m["alias"], m["from"], m["to"]) for m in registry.entry(NAME).history]
    assert moves[-2:] == [("production", 2, 1), ("previous", 1, 2)]


def test_promoting_the_production_version_again_changes_nothing(tmp_path):
    registry = Registry(tmp_path)
    registry.register(NAME, "base")
    registry.promote(NAME)
    before = registry.file.read_text()
    registry.promote(NAME, 1)
    assert (
        json.loads(registry.file.read_text())["models"][NAME]["aliases"]
        == json.loads(before)["models"][NAME]["aliases"]
    )


def test_clear_errors(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no model named"):
        registry.promote(NAME)
    registry.register(NAME, "base")
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback(NAME)
    with pytest.raises(RegistryError, match="no version 7"):
        registry.get(NAME, 7)
    with pytest.raises(RegistryError, match="alias 'production' is not set"):
        registry.get(NAME, "production")


def _register_and_promote(root: str, worker: int) -> None:
    registry = Registry(Path(root))
    for _ in range(5):
        version = registry.register(NAME, f"base-{worker}")
        registry.promote(NAME, version.version, reason=f"worker {worker}")


def test_concurrent_writers_leave_a_consistent_registry(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_register_and_promote, args=(str(tmp_path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    entry = Registry(tmp_path).entry(NAME)
    assert sorted(v.version for v in entry.versions) == list(range(1, 21))  # no lost or doubled version
    assert entry.aliases["production"] in range(1, 21)
    # Every production move names the production it replaced: the history is one unbroken chain.
    moves = [m for m in entry.history if m["alias"] == "production"]
    assert len(moves) == 20
    assert all(later["from"] == earlier["to"] for earlier, later in itertools.pairwise(moves))
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_registering_the_same_artifacts_twice_adds_no_version(tmp_path):
    registry = Registry(tmp_path)
    first = registry.register(NAME, "base", fingerprint="abc", lineage={"stage": "sft"})
    registry.promote(NAME)
    second = registry.register(NAME, "base", fingerprint="def")
    again = registry.register(NAME, "base", fingerprint="abc")  # a retried task
    assert again == first and first.lineage == {"stage": "sft", "fingerprint": "abc"}
    assert [v.version for v in registry.entry(NAME).versions] == [1, 2]
    assert registry.get(NAME, "candidate") == first and second.version == 2


def test_promotion_against_a_stale_production_changes_nothing(tmp_path):
    registry = Registry(tmp_path)
    registry.register(NAME, "base")
    with pytest.raises(RegistryError, match="production is no version, expected v1"):
        registry.promote(NAME, 1, expected_production=1)
    registry.promote(NAME, 1, expected_production=None)
    registry.register(NAME, "base")
    registry.register(NAME, "base")
    before = registry.file.read_text()
    with pytest.raises(RegistryError, match="production is v1, expected v2"):
        registry.promote(NAME, 3, expected_production=2)
    assert registry.file.read_text() == before
    registry.promote(NAME, 3, expected_production=1)
    with pytest.raises(RegistryError, match="production is v3, expected v2"):
        registry.rollback(NAME, expected_production=2)
    assert registry.rollback(NAME, expected_production=3).version == 1
