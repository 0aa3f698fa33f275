"""Paired bootstrap intervals: is the candidate better, or is the difference noise?

Every metric is computed from per-sample measurements — a :class:`SampleScores` per model, one
row per held-out sample — so any multiset of samples can be scored again without running a model:

* means over samples (similarity, ROUGE-L, repetition, judge scores): the mean of the rows;
* ratios of sums (loss = summed answer NLL / answer tokens, as training computes it; perplexity);
* corpus-level stylometry (Burrows' Delta over all generations together, the function-word profile,
  sentence length): recomputed from the rows' summed word counts (stylometry.StyleCounts).

The interval (:func:`compare`): draw ``resamples`` index vectors of n samples with replacement from
a fixed seed (a rerun gives the same intervals), score candidate and reference on the SAME indices
— paired: a hard question is hard for both models, so their difference varies much less than either
score — and take each resample's change (metrics.improvement: direction-normalised, positive =
candidate better; relative to the reference, or absolute points for shares). The interval is the
central ``confidence`` share of those changes (percentile bootstrap, no interpolation between
resamples); the point estimate is the change on all samples. Resampling whole samples and
recomputing the statistic is what makes the corpus-level metrics bootstrappable at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from twin_ops.evaluation.metrics import METRICS, improvement, is_absolute


class Measure(Protocol):
    """A family of metrics computed from per-sample rows; ``index`` picks rows (repeats allowed)."""

    def metrics(self, index: np.ndarray) -> dict[str, float]: ...


@dataclass(frozen=True)
class Means:
    """Metrics that are the mean of one value per sample; a NaN (no value for that sample, e.g. a
    text too short for a 3-gram) is left out of the mean."""

    columns: Mapping[str, np.ndarray]

    def metrics(self, index: np.ndarray) -> dict[str, float]:
        out = {}
        for name, values in self.columns.items():
            picked = values[index]
            picked = picked[~np.isnan(picked)]
            out[name] = float(picked.mean()) if picked.size else math.nan
        return out


@dataclass
class SampleScores:
    """One model's measurements on the held-out samples (``size`` rows) and the metrics they give."""

    size: int
    measures: list[Measure] = field(default_factory=list)

    @classmethod
    def of_means(cls, columns: Mapping[str, Sequence[float]]) -> SampleScores:
        """Scores whose every metric is a per-sample mean (tests, simple metrics)."""
        arrays = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
        sizes = {len(values) for values in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"every metric needs one value per sample, got lengths {sorted(sizes)}")
        return cls(sizes.pop(), [Means(arrays)])

    def add_means(self, columns: Mapping[str, Sequence[float]]) -> None:
        arrays = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
        wrong = {name: len(values) for name, values in arrays.items() if len(values) != self.size}
        if wrong:
            raise ValueError(f"expected {self.size} values per metric, got {wrong}")
        self.measures.append(Means(arrays))

    def metrics(self, index: np.ndarray | None = None) -> dict[str, float]:
        """Every metric over the samples ``index`` picks (default: all of them, once each)."""
        index = np.arange(self.size) if index is None else index
        out: dict[str, float] = {}
        for measure in self.measures:
            out.update(measure.metrics(index))
        return out


def resample_indices(size: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` rows of ``size`` sample indices drawn with replacement; the same for every model."""
    return np.random.default_rng(seed).integers(0, size, size=(resamples, size))


def format_change(metric: str, value: float) -> str:
    """A change as the report writes it: "+3.4%" (relative) or "+1.2 pt" (absolute points)."""
    return f"{value * 100:+.1f} pt" if is_absolute(metric) else f"{value:+.1%}"


class Comparison(BaseModel):
    """The candidate against one reference on one metric: values, change and its interval.

    ``change``, ``low`` and ``high`` are direction-normalised improvements (positive = candidate
    better; relative to the reference's value, or absolute points for ``metrics.is_absolute``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    metric: str
    against: Literal["production", "base"]
    candidate: float  # on all samples
    reference: float
    change: float
    low: float
    high: float
    confidence: float

    def interval(self) -> str:
        """E.g. "+34.1% [95% CI +28.0%, +40.2%]"."""
        return (
            f"{format_change(self.metric, self.change)} [{self.confidence:.0%} CI "
            f"{format_change(self.metric, self.low)}, {format_change(self.metric, self.high)}]"
        )


def compare(
    candidate: SampleScores,
    reference: SampleScores,
    against: Literal["production", "base"],
    indices: np.ndarray,
    confidence: float,
) -> list[Comparison]:
    """Paired bootstrap intervals of the candidate's change against ``reference``, for every metric
    both have (in METRICS order). ``indices``: resample_indices(), shared by every comparison."""
    if candidate.size != reference.size:
        raise ValueError(f"paired comparison needs the same samples: {candidate.size} vs {reference.size}")
    ours, theirs = candidate.metrics(), reference.metrics()
    names = [name for name in METRICS if name in ours and name in theirs]
    ours_resampled = [candidate.metrics(index) for index in indices]
    theirs_resampled = [reference.metrics(index) for index in indices]
    tail = (1 - confidence) / 2
    comparisons = []
    for name in names:
        changes = np.array(
            [improvement(name, c[name], r[name]) for c, r in zip(ours_resampled, theirs_resampled, strict=True)]
        )
        changes = changes[~np.isnan(changes)]
        # inverted_cdf: an actual resample's change, so an infinite one (a perplexity overflow) never
        # meets interpolation's inf - inf.
        low, high = (
            np.quantile(changes, [tail, 1 - tail], method="inverted_cdf") if changes.size else (math.nan, math.nan)
        )
        comparisons.append(
            Comparison(
                metric=name,
                against=against,
                candidate=ours[name],
                reference=theirs[name],
                change=improvement(name, ours[name], theirs[name]),
                low=float(low),
                high=float(high),
                confidence=confidence,
            )
        )
    return comparisons
