"""Every metric the evaluation reports, which direction is better, and how a change is measured.

The gate reads primary and guarded metrics by these names (params.yaml ``evaluation``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from twin_ops.config import ConfigError, EvaluationParams


class Metric(NamedTuple):
    higher_is_better: bool
    description: str
    # A change is relative to the reference's value (0.02 = 2 % better), except for shares that sit
    # near zero, where a relative change means little (0.01 -> 0.02 repeated 3-grams is "-100 %"):
    # those change in absolute points (0.02 = two percentage points).
    absolute: bool = False


METRICS: dict[str, Metric] = {
    "loss": Metric(False, "mean token NLL of the author's held-out answers given the instruction"),
    "perplexity": Metric(False, "exp(loss)"),
    "style_similarity": Metric(True, "cosine similarity of the generation to the author's held-out answer (MiniLM)"),
    "author_similarity": Metric(
        True, "cosine similarity of the generation to the centroid of the author's training text"
    ),
    "burrows_delta": Metric(False, "Burrows' Delta of the generations against the author's training text"),
    "function_word_distance": Metric(False, "total variation distance of the function-word profiles"),
    "sentence_length_gap": Metric(False, "relative gap in mean words per sentence to the author's"),
    "ttr_gap": Metric(False, "gap in moving-average type-token ratio to the author's"),
    "distinct_2": Metric(
        True, "distinct word pairs / word pairs within each text (its first evaluation.repetition_words words)", True
    ),
    "repeated_3gram_share": Metric(
        False, "share of each text's word 3-grams that repeat an earlier one in it (a loop scores high)", True
    ),
    "reference_overlap": Metric(True, "ROUGE-L F1 of the generation against the held-out answer"),
    "context_overlap": Metric(True, "share of the generation's content words found in the retrieved passages"),
    "citation_rate": Metric(True, "share of generations that cite a retrieved passage ([n] or its title)"),
    "judge_accuracy": Metric(True, "LLM judge, 1-3"),
    "judge_style": Metric(True, "LLM judge, 1-3"),
}


def higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better


def is_absolute(metric: str) -> bool:
    return METRICS[metric].absolute


def improvement(metric: str, candidate: float, reference: float) -> float:
    """How much better the candidate is than the reference: positive = better, negative = worse.

    Direction-normalised, so "better" is always positive: for a lower-is-better metric (perplexity,
    Burrows' Delta) it is (reference - candidate) / |reference|. Relative to the reference's value,
    or in absolute points for the metrics marked ``absolute``. A reference of exactly zero (or an
    infinite one) leaves no relative change: the candidate is then infinitely better or worse, or
    equal.
    """
    gain = candidate - reference if higher_is_better(metric) else reference - candidate
    if math.isnan(gain) and candidate == reference:  # inf vs inf
        return 0.0
    if is_absolute(metric):
        return gain
    if reference == 0 or not math.isfinite(reference):
        return 0.0 if gain == 0 else math.copysign(math.inf, gain)
    return gain / abs(reference)


def check_params(params: EvaluationParams) -> None:
    """Unknown metric names in the gate's params are configuration errors, not silent passes."""
    for key, name in [("evaluation.primary_metric", params.primary_metric)] + [
        (f"evaluation.guarded.{name}", name) for name in params.guarded
    ]:
        if name not in METRICS:
            raise ConfigError(f"{key}: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    for name, tolerance in params.guarded.items():
        if tolerance < 0:
            raise ConfigError(f"evaluation.guarded.{name}: tolerance must be >= 0, got {tolerance}")
