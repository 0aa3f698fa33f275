"""Every metric the evaluation reports, and which direction is better.

The gate reads primary and guarded metrics by these names (params.yaml ``evaluation``).
"""

from __future__ import annotations

from twin_ops.config import ConfigError, EvaluationParams

# name -> (higher is better, what it measures)
METRICS: dict[str, tuple[bool, str]] = {
    "loss": (False, "mean token NLL of the author's held-out answers given the instruction"),
    "perplexity": (False, "exp(loss)"),
    "style_similarity": (True, "cosine similarity of the generation to the author's held-out answer (MiniLM)"),
    "author_similarity": (True, "cosine similarity of the generation to the centroid of the author's training text"),
    "burrows_delta": (False, "Burrows' Delta of the generations against the author's training text"),
    "function_word_distance": (False, "total variation distance of the function-word profiles"),
    "sentence_length_gap": (False, "relative gap in mean words per sentence to the author's"),
    "ttr_gap": (False, "gap in moving-average type-token ratio to the author's"),
    "reference_overlap": (True, "ROUGE-L F1 of the generation against the held-out answer"),
    "context_overlap": (True, "share of the generation's content words found in the retrieved passages"),
    "citation_rate": (True, "share of generations that cite a retrieved passage ([n] or its title)"),
    "judge_accuracy": (True, "LLM judge, 1-3"),
    "judge_style": (True, "LLM judge, 1-3"),
}


def higher_is_better(metric: str) -> bool:
    return METRICS[metric][0]


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
