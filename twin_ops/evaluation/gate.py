"""The gate: promote only a candidate that is measurably better and no worse where it matters.

The candidate must beat the reference (production, or the base model when nothing is in
production) on ``evaluation.primary_metric`` by at least ``evaluation.margin`` (relative), and may
regress each metric in ``evaluation.guarded`` by at most its tolerance (relative to the
reference's value). Every check leaves a reason; a missing guarded metric (e.g. context metrics
without Weaviate) is noted, not silently passed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin_ops.config import EvaluationParams
from twin_ops.errors import InputError, TwinOpsError
from twin_ops.evaluation.metrics import check_params, higher_is_better


class NoGateDecision(TwinOpsError, FileNotFoundError):
    """No decision.json where the evaluation writes it: nothing has been evaluated yet."""


class GateDecision(BaseModel):
    """The gate's verdict: what ``decision.json`` holds, what promotion, the report, the summary and
    the DAG read. Written and read only through :meth:`save` / :meth:`load`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    promote: bool
    candidate: str  # label, e.g. wren-halvorsen-twin:v3
    reference_role: Literal["production", "base"]
    reference: str  # label of the model it was compared with
    reasons: list[str] = Field(default_factory=list)
    # Filled in by the evaluation (decide(..., model_name=..., ...)): what promotion moves, and the
    # production version the gate compared with (promotion is a compare-and-swap on it).
    model_name: str | None = None
    candidate_version: int | None = None
    production_version: int | None = None
    # The rule that was applied (params.yaml evaluation.*), so a decision explains itself later.
    primary_metric: str | None = None
    margin: float | None = None
    guarded: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    def line(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        return f"gate: {verdict} {self.candidate} vs {self.reference_role} {self.reference}: " + "; ".join(self.reasons)

    def save(self, path: Path) -> Path:
        """Write atomically (a reader never sees half a decision); returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: Path) -> GateDecision:
        """Read a saved decision; NoGateDecision when there is none, InputError when it is not valid."""
        if not path.exists():
            raise NoGateDecision(f"no gate decision at {path}: run `twin-ops evaluate` first")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            raise InputError(f"{path} is not a valid gate decision: {exc}") from exc


def improvement(metric: str, candidate: float, reference: float) -> float:
    """How much better the candidate is, relative to the reference (negative = worse)."""
    gain = candidate - reference if higher_is_better(metric) else reference - candidate
    return gain / abs(reference) if reference else gain


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def decide(
    candidate: dict[str, float],
    reference: dict[str, float],
    params: EvaluationParams,
    *,
    candidate_label: str = "candidate",
    reference_role: str = "production",
    reference_label: str = "production",
    model_name: str | None = None,
    candidate_version: int | None = None,
    production_version: int | None = None,
    notes: list[str] | None = None,
) -> GateDecision:
    check_params(params)
    reasons: list[str] = []
    metric = params.primary_metric
    c, r = candidate.get(metric), reference.get(metric)
    if not _finite(c) or r is None:
        passed = False
        reasons.append(f"{metric}: candidate {c} vs {reference_role} {r} — not measurable, fail")
    else:
        gain = improvement(metric, c, r) if _finite(r) else math.inf
        passed = gain > 0 and gain >= params.margin
        reasons.append(
            f"{metric} {c:.4g} vs {reference_role} {r:.4g}: {gain:+.1%} (needs {params.margin:+.1%}) — "
            + ("pass" if passed else "fail")
        )
    for name, tolerance in params.guarded.items():
        c, r = candidate.get(name), reference.get(name)
        if c is None or r is None:
            reasons.append(f"{name}: not measured for both models — skipped")
            continue
        if not _finite(c):
            passed = False
            reasons.append(f"{name}: candidate {c} — fail")
            continue
        change = improvement(name, c, r) if _finite(r) else 0.0
        ok = -change <= tolerance
        passed = passed and ok
        reasons.append(
            f"{name} {c:.4g} vs {r:.4g}: {change:+.1%} (may regress {tolerance:.1%}) — " + ("ok" if ok else "fail")
        )
    return GateDecision(
        promote=passed,
        candidate=candidate_label,
        reference_role=reference_role,
        reference=reference_label,
        reasons=reasons,
        model_name=model_name,
        candidate_version=candidate_version,
        production_version=production_version,
        primary_metric=params.primary_metric,
        margin=params.margin,
        guarded=dict(params.guarded),
        notes=list(notes or []),
    )
