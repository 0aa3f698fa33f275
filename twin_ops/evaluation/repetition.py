"""Repetition: does a text loop ("a failure, a failure, a failure, and a failure")?

Two per-text measures over lower-cased words (punctuation ignored, as in stylometry):

* ``distinct_2`` — distinct word pairs / word pairs (Li et al. 2016's distinct-n, within one text);
  1.0 = no pair repeats, a loop drives it down;
* ``repeated_3gram_share`` — the share of the text's word 3-grams that repeat one seen earlier in the
  same text (Welleck et al. 2020's rep-n: 1 - distinct-3); 0.0 = none, a loop drives it up.

Both grow with a text's length (a long text repeats "of the" more often), so every text is cut to
its first ``window`` words: generations and the author's own held-out text are measured alike.
A text too short to hold one n-gram has no value (NaN) and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twin_ops.evaluation.stylometry import words


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence[str], n: int) -> float:
    """Distinct n-grams / n-grams in one text; NaN when it has no n-gram."""
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_share(tokens: Sequence[str], n: int) -> float:
    """Share of the n-grams that repeat an earlier one in the same text (1 - distinct-n); NaN when none."""
    return 1.0 - distinct_n(tokens, n)


def repetition_scores(texts: Sequence[str], window: int) -> dict[str, np.ndarray]:
    """Per text (one row per sample): distinct_2 and repeated_3gram_share over its first ``window`` words."""
    cut = [words(text)[:window] for text in texts]
    return {
        "distinct_2": np.array([distinct_n(tokens, 2) for tokens in cut]),
        "repeated_3gram_share": np.array([repeated_ngram_share(tokens, 3) for tokens in cut]),
    }
