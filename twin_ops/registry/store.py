"""The model registry: versions with metadata and the aliases candidate / production / previous.

One JSON file (``models/registry.json``) holds every model name. Every change takes an exclusive
lock on a lock file (``filelock``), reads the current file, applies the change and replaces the file with an
atomic rename — so concurrent writers (two Airflow tasks, a CLI call) serialise, and a reader or a
crash never sees a half-written registry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import BaseModel, Field

from twin_ops.domain import ModelVersion
from twin_ops.errors import TwinOpsError

CANDIDATE, PRODUCTION, PREVIOUS = "candidate", "production", "previous"
ALIASES = (CANDIDATE, PRODUCTION, PREVIOUS)
FINGERPRINT = "fingerprint"  # lineage key: hash of a version's artifacts
UNCHECKED = -1  # expected_production's default: move whatever production is now


class RegistryError(TwinOpsError, LookupError):
    """An unknown model, version or alias, or an impossible move (rollback with no previous)."""


class ModelEntry(BaseModel):
    versions: list[ModelVersion] = Field(default_factory=list)
    aliases: dict[str, int] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)  # alias moves, newest last


class RegistryFile(BaseModel):
    models: dict[str, ModelEntry] = Field(default_factory=dict)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "registry.json"
        self.lock_file = root / "registry.lock"

    def snapshot_dir(self, name: str, key: str) -> Path:
        """Where a version's artifacts are kept, content-addressed (twin_ops.evaluation.candidate)."""
        return self.root / "registry" / name / key

    # --- reading ------------------------------------------------------------------------------

    def load(self) -> RegistryFile:
        if not self.file.exists():
            return RegistryFile()
        return RegistryFile.model_validate_json(self.file.read_text())

    def entry(self, name: str) -> ModelEntry:
        entry = self.load().models.get(name)
        if entry is None:
            raise RegistryError(f"no model named {name!r} in {self.file}")
        return entry

    def get(self, name: str, ref: str | int) -> ModelVersion:
        """A version by number, or by alias (candidate / production / previous)."""
        return _resolve(self.entry(name), name, ref)

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        entry = self.load().models.get(name)
        if entry is None or alias not in entry.aliases:
            return None
        return _resolve(entry, name, alias)

    # --- writing ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[RegistryFile]:
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_file):
            registry = self.load()
            yield registry
            self._write(registry)

    def _write(self, registry: RegistryFile) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".registry.", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(registry.model_dump_json(indent=2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.file)

    def _change(self, name: str, change: Callable[[ModelEntry], Any], *, create: bool = False) -> Any:
        with self._locked() as registry:
            if name not in registry.models:
                if not create:
                    raise RegistryError(f"no model named {name!r} in {self.file}")
                registry.models[name] = ModelEntry()
            return change(registry.models[name])

    def register(
        self,
        name: str,
        base_model: str,
        *,
        adapter_path: Path | None = None,
        merged_path: Path | None = None,
        metrics: dict[str, float] | None = None,
        lineage: dict[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> ModelVersion:
        """Add the next version and point ``candidate`` at it.

        With a ``fingerprint`` (a hash of the artifacts), registering the same artifacts again adds
        nothing: the existing version becomes the candidate, so a retried task never duplicates.
        """
        lineage = {**(lineage or {}), **({FINGERPRINT: fingerprint} if fingerprint else {})}

        def add(entry: ModelEntry) -> ModelVersion:
            same = [v for v in entry.versions if fingerprint and v.lineage.get(FINGERPRINT) == fingerprint]
            if same:
                if entry.aliases.get(CANDIDATE) != same[-1].version:
                    _move(entry, CANDIDATE, same[-1].version, "registered again (same artifacts)")
                return same[-1]
            version = ModelVersion(
                name=name,
                version=max((v.version for v in entry.versions), default=0) + 1,
                base_model=base_model,
                adapter_path=adapter_path,
                merged_path=merged_path,
                created_at=datetime.now(UTC),
                metrics=metrics or {},
                lineage=lineage,
            )
            entry.versions.append(version)
            _move(entry, CANDIDATE, version.version, "registered")
            return version

        return self._change(name, add, create=True)

    def promote(
        self,
        name: str,
        ref: str | int = CANDIDATE,
        reason: str = "promoted",
        *,
        expected_production: int | None = UNCHECKED,
    ) -> ModelVersion:
        """``production`` → the given version; the old production becomes ``previous``.

        ``expected_production`` (a version, or None for "no production yet") makes the move a
        compare-and-swap: when another promotion moved production since the caller looked (the gate
        compared against that version), nothing changes and RegistryError says so.
        """

        def move(entry: ModelEntry) -> ModelVersion:
            target = _resolve(entry, name, ref)
            current = entry.aliases.get(PRODUCTION)
            _expect(name, current, expected_production)
            if current == target.version:
                return target  # already in production: promoting twice changes nothing
            if current is not None:
                _move(entry, PREVIOUS, current, reason)
            _move(entry, PRODUCTION, target.version, reason)
            return target

        return self._change(name, move)

    def rollback(
        self, name: str, reason: str = "rolled back", *, expected_production: int | None = UNCHECKED
    ) -> ModelVersion:
        """``production`` ← ``previous`` (and the rolled-back version becomes ``previous``).

        ``expected_production``: roll back only while production is still that version (an automatic
        rollback must not undo a promotion that landed in between).
        """

        def move(entry: ModelEntry) -> ModelVersion:
            if PREVIOUS not in entry.aliases:
                raise RegistryError(f"{name}: no previous version to roll back to")
            back, current = entry.aliases[PREVIOUS], entry.aliases.get(PRODUCTION)
            _expect(name, current, expected_production)
            _move(entry, PRODUCTION, back, reason)
            if current is not None:
                _move(entry, PREVIOUS, current, reason)
            return _resolve(entry, name, back)

        return self._change(name, move)

    def restore(
        self,
        name: str,
        aliases: dict[str, int | None],
        reason: str,
        *,
        expected_production: int | None = UNCHECKED,
    ) -> None:
        """Set aliases back to recorded versions (None = unset): undoes a promotion exactly, including
        the first one (production unset again) and ``previous`` as it was before."""

        def move(entry: ModelEntry) -> None:
            _expect(name, entry.aliases.get(PRODUCTION), expected_production)
            for alias, version in aliases.items():
                if entry.aliases.get(alias) == version:
                    continue
                if version is None:
                    entry.history.append(
                        {
                            "alias": alias,
                            "from": entry.aliases.pop(alias),
                            "to": None,
                            "reason": reason,
                            "at": datetime.now(UTC).isoformat(),
                        }
                    )
                else:
                    _move(entry, alias, _resolve(entry, name, version).version, reason)

        self._change(name, move)

    def update_metrics(self, name: str, version: int, metrics: dict[str, float]) -> ModelVersion:
        def update(entry: ModelEntry) -> ModelVersion:
            found = _resolve(entry, name, version)
            updated = found.model_copy(update={"metrics": {**found.metrics, **metrics}})
            entry.versions[entry.versions.index(found)] = updated
            return updated

        return self._change(name, update)


def _resolve(entry: ModelEntry, name: str, ref: str | int) -> ModelVersion:
    if isinstance(ref, str) and not ref.isdigit():
        if ref not in entry.aliases:
            raise RegistryError(f"{name}: alias {ref!r} is not set (aliases: {sorted(entry.aliases)})")
        ref = entry.aliases[ref]
    for version in entry.versions:
        if version.version == int(ref):
            return version
    raise RegistryError(f"{name}: no version {ref}")


def _expect(name: str, current: int | None, expected: int | None) -> None:
    if expected != UNCHECKED and current != expected:
        seen = f"v{current}" if current is not None else "no version"
        wanted = f"v{expected}" if expected is not None else "no version"
        raise RegistryError(f"{name}: production is {seen}, expected {wanted} (another promotion moved it)")


def _move(entry: ModelEntry, alias: str, version: int, reason: str) -> None:
    entry.history.append(
        {
            "alias": alias,
            "from": entry.aliases.get(alias),
            "to": version,
            "reason": reason,
            "at": datetime.now(UTC).isoformat(),
        }
    )
    entry.aliases[alias] = version
