"""The gate: promote only a candidate that is measurably better and no worse where it matters.

It reads the paired bootstrap intervals of the candidate's change against the reference
(production, or the base model when nothing is in production): see bootstrap.py. A change is
direction-normalised — positive = the candidate is better — and relative to the reference's value
(absolute points for the share metrics, metrics.is_absolute). So for a lower-is-better metric
like perplexity, a change of +5 % means the candidate's perplexity is 5 % below the reference's.

* The primary metric (``evaluation.primary_metric``) must CLEAR THE MARGIN: the whole interval lies
  above ``evaluation.margin`` (its lower end is > 0 and >= margin). Even the least favourable
  plausible value is then a gain of at least the margin; a noise-level difference (two runs of the
  same model) has an interval that straddles zero and is rejected.
* A guarded metric (``evaluation.guarded``: name -> tolerance) BLOCKS only when its interval shows
  a regression beyond its tolerance: the whole interval lies below -tolerance (its upper end is
  < -tolerance). A metric that is worse only within noise does not block.

The burden of proof is on the candidate for the primary metric and on the regression for the
guarded ones; with few samples both intervals are wide, so the gate then rejects more (the primary
rarely clears) and blocks less. Every check leaves a reason; a guarded metric measured for only one
model (e.g. context metrics without Weaviate) is noted, not silently passed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin_ops.config import EvaluationParams
from twin_ops.errors import InputError, TwinOpsError
from twin_ops.evaluation.bootstrap import Comparison, format_change
from twin_ops.evaluation.metrics import check_params


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
    # The evidence: every metric's paired bootstrap interval, against production and against base.
    samples: int | None = None
    resamples: int | None = None
    comparisons: list[Comparison] = Field(default_factory=list)

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


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def decide(
    comparisons: Sequence[Comparison],
    params: EvaluationParams,
    *,
    candidate_label: str = "candidate",
    reference_role: Literal["production", "base"] = "production",
    reference_label: str = "production",
    model_name: str | None = None,
    candidate_version: int | None = None,
    production_version: int | None = None,
    samples: int | None = None,
    resamples: int | None = None,
    notes: list[str] | None = None,
) -> GateDecision:
    """Apply the gate's rule (module docstring) to the comparisons against ``reference_role``;
    the decision carries every comparison (against production and base) for the report."""
    check_params(params)
    against = {c.metric: c for c in comparisons if c.against == reference_role}
    reasons: list[str] = []
    metric = params.primary_metric
    primary = against.get(metric)
    if primary is None or not _finite(primary.candidate) or math.isnan(primary.low):
        passed = False
        shown = f"candidate {primary.candidate} vs {reference_role} {primary.reference}" if primary else "not measured"
        reasons.append(f"{metric}: {shown} — not measurable, fail")
    else:
        passed = primary.low > 0 and primary.low >= params.margin
        reasons.append(
            f"{metric} {primary.candidate:.4g} vs {reference_role} {primary.reference:.4g}: {primary.interval()} "
            f"(needs the interval above {format_change(metric, params.margin)}) — " + ("pass" if passed else "fail")
        )
    for name, tolerance in params.guarded.items():
        guard = against.get(name)
        if guard is None:
            reasons.append(f"{name}: not measured for both models — skipped")
            continue
        if not _finite(guard.candidate):
            passed = False
            reasons.append(f"{name}: candidate {guard.candidate} — fail")
            continue
        ok = not guard.high < -tolerance
        passed = passed and ok
        reasons.append(
            f"{name} {guard.candidate:.4g} vs {guard.reference:.4g}: {guard.interval()} "
            f"(blocks if the interval lies below {format_change(name, -tolerance)}) — " + ("ok" if ok else "fail")
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
        samples=samples,
        resamples=resamples,
        comparisons=list(comparisons),
    )
