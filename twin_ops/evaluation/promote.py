"""Promotion: production ← candidate (previous ← old production), then the served model follows.

If the serving layer's swap fails (health check, smoke query, or the app is unreachable), the
registry is restored to exactly what it was — production and previous — and PromotionFailed says
why; swap_model has already put the old model back in the running app. The alias move is a
compare-and-swap on production: a promotion that raced another one changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin_ops.config import Params, Paths
from twin_ops.domain import ModelVersion
from twin_ops.registry.store import CANDIDATE, PREVIOUS, PRODUCTION, UNCHECKED, Registry

Log = Callable[[str], None]
# swap_model's signature: (params, paths, version, *, url, api_key, models_dir, log) -> SwapResult
Swap = Callable[..., Any]


class PromotionFailed(RuntimeError):
    """The new version could not be served; the registry is back where it was."""


@dataclass(frozen=True)
class PromotionResult:
    name: str
    promoted: ModelVersion
    replaced: int | None  # the production version before, now ``previous``
    swap: Any | None  # serving.ops.SwapResult when the served model was swapped

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
    log: Log = print,
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
    log(f"registry: {name} production -> v{promoted.version} (was {before[PRODUCTION] or 'unset'})")
    result = PromotionResult(name, promoted, before[PRODUCTION], None)
    if not (serve or url):
        return result
    if swap is None:
        from twin_ops.serving.ops import swap_model as swap
    try:
        swapped = swap(params, paths, promoted.version, url=url, api_key=api_key, models_dir=registry.root, log=log)
    except Exception as exc:  # whatever broke the swap, production must not point at it
        registry.restore(
            name,
            before,
            f"automatic rollback: serving v{promoted.version} failed",
            expected_production=promoted.version,
        )
        restored = f"v{before[PRODUCTION]}" if before[PRODUCTION] is not None else "unset (base model)"
        log(f"registry: {name} production restored to {restored}")
        raise PromotionFailed(
            f"{name}:v{promoted.version} could not be served ({type(exc).__name__}: {exc}); "
            f"registry rolled back, production is {restored}"
        ) from exc
    return PromotionResult(name, promoted, before[PRODUCTION], swapped)


def promote_from_decision(
    decision: dict[str, Any],
    params: Params,
    paths: Paths,
    *,
    force: bool = False,
    serve: bool = False,
    url: str | None = None,
    api_key: str | None = None,
    swap: Swap | None = None,
    models_dir: Path | None = None,
    log: Log = print,
) -> PromotionResult:
    """Promote what a gate decision (decision.json) approved, only if production is still what it saw."""
    if not decision["promote"] and not force:
        raise PromotionFailed(f"the gate rejected {decision['candidate']}: " + "; ".join(decision["reasons"]))
    return promote_and_serve(
        decision["model_name"],
        params,
        paths,
        version=decision["candidate_version"],
        expected_production=decision["production_version"],
        serve=serve,
        url=url,
        api_key=api_key,
        swap=swap,
        registry=Registry(models_dir or paths.models),
        reason="promoted by hand over a rejection (--force)" if not decision["promote"] else "promoted by the gate",
        log=log,
    )
