"""Promotion: production ← candidate (previous ← old production), then the served model follows.

If the serving layer's swap fails (health check, smoke query, or the app is unreachable), the
registry is restored to exactly what it was — production and previous — and PromotionFailed says
why; swap_model has already put the old model back in the running app. The alias move is a
compare-and-swap on production: a promotion that raced another one changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from twin_ops.config import Params, Paths
from twin_ops.domain import ModelVersion, SwapResult
from twin_ops.errors import TwinOpsError
from twin_ops.evaluation.gate import GateDecision
from twin_ops.registry.store import CANDIDATE, PREVIOUS, PRODUCTION, UNCHECKED, Registry, RegistryError

Log = Callable[[str], None]
log = logging.getLogger(__name__)


class Swap(Protocol):
    """What makes the running app serve a registry version (twin_ops.serving.ops.swap_model)."""

    def __call__(
        self,
        params: Params,
        paths: Paths,
        name: str,
        version: int,
        *,
        url: str | None,
        api_key: str | None,
        models_dir: Path,
        log: Log,
    ) -> SwapResult: ...


class PromotionFailed(TwinOpsError, RuntimeError):
    """The new version could not be served; the registry is back where it was."""


class PromotionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    promoted: ModelVersion
    replaced: int | None  # the production version before, now ``previous``
    swap: SwapResult | None  # when the served model was swapped

    def line(self) -> str:
        before = f"v{self.replaced}" if self.replaced is not None else "nothing"
        served = f"; {self.swap.line()}" if self.swap is not None else "; serving not asked to swap"
        return f"promote {self.name}: production {before} -> v{self.promoted.version}{served}"


def promote_and_serve(
    name: str,
    params: Params,
    paths: Paths,
    *,
    version: int | str = CANDIDATE,
    expected_production: int | None = UNCHECKED,
    serve: bool = False,
    url: str | None = None,
    api_key: str | None = None,
    swap: Swap | None = None,
    registry: Registry | None = None,
    reason: str = "promoted by the evaluation gate",
) -> PromotionResult:
    """Move the aliases; with ``serve`` (or a ``url``), make the running app serve the new version.

    ``swap`` defaults to twin_ops.serving.ops.swap_model; tests pass their own. Raises
    PromotionFailed (registry restored) when serving fails, RegistryError when production moved
    since the gate looked (``expected_production``) or the version does not exist.
    """
    registry = registry or Registry(paths.models)
    entry = registry.entry(name)
    before = {PRODUCTION: entry.aliases.get(PRODUCTION), PREVIOUS: entry.aliases.get(PREVIOUS)}
    target = registry.get(name, version)
    promoted = registry.promote(name, target.version, reason, expected_production=expected_production)
    log.info("registry: %s production -> v%d (was %s)", name, promoted.version, before[PRODUCTION] or "unset")
    result = PromotionResult(name=name, promoted=promoted, replaced=before[PRODUCTION], swap=None)
    if not (serve or url):
        return result
    if swap is None:
        from twin_ops.serving.ops import swap_model as swap
    try:
        swapped = swap(
            params, paths, name, promoted.version, url=url, api_key=api_key, models_dir=registry.root, log=log.info
        )
    except Exception as exc:  # whatever broke the swap, production must not point at it
        registry.restore(
            name,
            before,
            f"automatic rollback: serving v{promoted.version} failed",
            expected_production=promoted.version,
        )
        restored = f"v{before[PRODUCTION]}" if before[PRODUCTION] is not None else "unset (base model)"
        log.warning("registry: %s production restored to %s", name, restored)
        raise PromotionFailed(
            f"{name}:v{promoted.version} could not be served ({type(exc).__name__}: {exc}); "
            f"registry rolled back, production is {restored}"
        ) from exc
    return PromotionResult(name=name, promoted=promoted, replaced=before[PRODUCTION], swap=swapped)


def rollback_and_serve(
    name: str,
    params: Params,
    paths: Paths,
    *,
    serve: bool = False,
    url: str | None = None,
    api_key: str | None = None,
    swap: Swap | None = None,
    registry: Registry | None = None,
    reason: str = "rolled back",
) -> PromotionResult:
    """Production ← ``previous`` (the old production becomes ``previous``), served like a promotion:
    with ``serve`` the running app swaps back too, and if that fails the registry is restored."""
    registry = registry or Registry(paths.models)
    entry = registry.entry(name)
    if PREVIOUS not in entry.aliases:
        raise RegistryError(f"{name}: no previous version to roll back to")
    return promote_and_serve(
        name,
        params,
        paths,
        version=entry.aliases[PREVIOUS],
        expected_production=entry.aliases.get(PRODUCTION),
        serve=serve,
        url=url,
        api_key=api_key,
        swap=swap,
        registry=registry,
        reason=reason,
    )


def promote_from_decision(
    decision: GateDecision,
    params: Params,
    paths: Paths,
    *,
    force: bool = False,
    serve: bool = False,
    url: str | None = None,
    api_key: str | None = None,
    swap: Swap | None = None,
    models_dir: Path | None = None,
) -> PromotionResult:
    """Promote what a gate decision (decision.json) approved, only if production is still what it saw."""
    if not decision.promote and not force:
        raise PromotionFailed(f"the gate rejected {decision.candidate}: " + "; ".join(decision.reasons))
    if decision.model_name is None or decision.candidate_version is None:
        raise PromotionFailed(f"the gate decision for {decision.candidate} names no model version to promote")
    return promote_and_serve(
        decision.model_name,
        params,
        paths,
        version=decision.candidate_version,
        expected_production=decision.production_version,
        serve=serve,
        url=url,
        api_key=api_key,
        swap=swap,
        registry=Registry(models_dir or paths.models),
        reason="promoted by hand over a rejection (--force)" if not decision.promote else "promoted by the gate",
    )
