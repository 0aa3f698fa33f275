"""The gate: promote only a candidate that is measurably better and no worse where it matters.

The candidate must beat the reference (production, or the base model when nothing is in
production) on ``evaluation.primary_metric`` by at least ``evaluation.margin`` (relative), and may
regress each metric in ``evaluation.guarded`` by at most its tolerance (relative to the
reference's value). Every check leaves a reason; a missing guarded metric (e.g. context metrics
without Weaviate) is noted, not silently passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from twin_ops.config import EvaluationParams
from twin_ops.evaluation.metrics import check_params, higher_is_better


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    candidate: str  # label, e.g. wren-halvorsen-twin:v3
    reference_role: str  # production | base
    reference: str  # label of the model it was compared with
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        return f"gate: {verdict} {self.candidate} vs {self.reference_role} {self.reference}: " + "; ".join(self.reasons)


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
    return GateDecision(passed, candidate_label, reference_role, reference_label, reasons)
