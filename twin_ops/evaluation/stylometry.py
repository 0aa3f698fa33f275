"""Stylometry: does a model's writing look like the author's, independent of what it says?

* sentence length — mean words per sentence;
* vocabulary richness — moving-average type-token ratio (MATTR; plain TTR falls as texts grow);
* function-word profile — relative use of ~100 English function words (topic-independent habits);
* Burrows' Delta — mean absolute difference of z-scored frequencies of the author's most frequent
  words, the classic authorship-attribution distance. The z-scores use the mean and spread of
  each word across the author's own training passages, so a distance of ~1 is "as different as
  one of the author's passages is from another" and much larger is "someone else".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")

_FUNCTION_WORDS = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not of off on once only or other our ours ourselves out over own same she should so some
    such than that the their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your yours
    yourself yourselves"""
FUNCTION_WORDS = tuple(_FUNCTION_WORDS.split())


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    return [part for part in SENTENCE_END.split(text) if words(part)]


def mean_sentence_length(texts: Sequence[str]) -> float:
    counts = [len(words(sentence)) for text in texts for sentence in sentences(text)]
    return float(np.mean(counts)) if counts else 0.0


def mattr(tokens: Sequence[str], window: int) -> float:
    """Moving-average type-token ratio; plain TTR for a text shorter than the window."""
    if not tokens:
        return 0.0
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    ratios = [len(set(tokens[i : i + window])) / window for i in range(len(tokens) - window + 1)]
    return float(np.mean(ratios))


def mean_mattr(texts: Sequence[str], window: int) -> float:
    values = [mattr(words(text), window) for text in texts if words(text)]
    return float(np.mean(values)) if values else 0.0


def function_word_profile(texts: Sequence[str]) -> np.ndarray:
    """Each function word's share of all function words used (a distribution; zeros if none)."""
    counts = Counter(token for text in texts for token in words(text))
    vector = np.array([counts[word] for word in FUNCTION_WORDS], dtype=float)
    total = vector.sum()
    return vector / total if total else vector


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    if not p.any() or not q.any():
        return 1.0  # no function words at all is as far from a profile as it gets
    return float(0.5 * np.abs(p - q).sum())


def relative_frequencies(text: str, vocabulary: Sequence[str]) -> np.ndarray:
    tokens = words(text)
    counts = Counter(tokens)
    return np.array([counts[word] for word in vocabulary], dtype=float) / max(len(tokens), 1)


@dataclass(frozen=True)
class StyleReference:
    """The author's style, measured once on the training text; every contender is compared to it."""

    vocabulary: tuple[str, ...]
    mean: np.ndarray
    spread: np.ndarray
    author_z: np.ndarray
    sentence_length: float
    ttr: float
    function_profile: np.ndarray
    window: int

    def z(self, text: str) -> np.ndarray:
        return (relative_frequencies(text, self.vocabulary) - self.mean) / self.spread


def style_reference(training_texts: Sequence[str], top_words: int, window: int) -> StyleReference:
    texts = [text for text in training_texts if words(text)]
    if len(texts) < 2:
        raise ValueError("Burrows' Delta needs at least two training passages of the author")
    counts = Counter(token for text in texts for token in words(text))
    vocabulary = tuple(word for word, _ in counts.most_common(top_words))
    per_text = np.stack([relative_frequencies(text, vocabulary) for text in texts])
    mean, spread = per_text.mean(axis=0), per_text.std(axis=0)
    # A word used at the same rate in every passage would get a zero spread and blow its z-score
    # up; a frequency varies at least by sampling noise (binomial, at the mean passage length).
    length = np.mean([len(words(text)) for text in texts])
    spread = np.maximum(spread, np.sqrt(mean * (1 - mean) / length))
    joined = "\n\n".join(texts)
    return StyleReference(
        vocabulary=vocabulary,
        mean=mean,
        spread=spread,
        author_z=(relative_frequencies(joined, vocabulary) - mean) / spread,
        sentence_length=mean_sentence_length(texts),
        ttr=mean_mattr(texts, window),
        function_profile=function_word_profile(texts),
        window=window,
    )


@dataclass(frozen=True)
class StyleCounts:
    """The counts behind the stylometric metrics, one row per text (sample).

    Burrows' Delta, the function-word profile and the mean sentence length are corpus-level: they
    read all of a model's generations together. Summed per-text counts give exactly what the joined
    texts give, so any multiset of samples (a bootstrap resample, twin_ops.evaluation.bootstrap) is
    scored by summing rows instead of re-reading text.
    """

    reference: StyleReference
    top_words: np.ndarray  # (n, V) counts of the reference's most frequent words
    words: np.ndarray  # (n,) words per text
    function_words: np.ndarray  # (n, F) counts of FUNCTION_WORDS
    sentence_words: np.ndarray  # (n,) words in the text's sentences
    sentences: np.ndarray  # (n,) sentences
    ttr: np.ndarray  # (n,) MATTR; NaN for a text without words (left out of the mean)

    @classmethod
    def of(cls, reference: StyleReference, texts: Sequence[str]) -> StyleCounts:
        tokens = [Counter(words(text)) for text in texts]
        lengths = [[len(words(sentence)) for sentence in sentences(text)] for text in texts]
        return cls(
            reference=reference,
            top_words=np.array([[c[w] for w in reference.vocabulary] for c in tokens], dtype=float).reshape(
                len(texts), len(reference.vocabulary)
            ),
            words=np.array([sum(c.values()) for c in tokens], dtype=float),
            function_words=np.array([[c[w] for w in FUNCTION_WORDS] for c in tokens], dtype=float).reshape(
                len(texts), len(FUNCTION_WORDS)
            ),
            sentence_words=np.array([sum(counts) for counts in lengths], dtype=float),
            sentences=np.array([len(counts) for counts in lengths], dtype=float),
            ttr=np.array([mattr(words(text), reference.window) if words(text) else np.nan for text in texts]),
        )

    def metrics(self, index: np.ndarray) -> dict[str, float]:
        """The stylometric metrics of the texts ``index`` picks (repeats allowed), against the author."""
        reference = self.reference
        frequencies = self.top_words[index].sum(axis=0) / max(self.words[index].sum(), 1.0)
        delta = float(np.mean(np.abs((frequencies - reference.mean) / reference.spread - reference.author_z)))
        function = self.function_words[index].sum(axis=0)
        profile = function / function.sum() if function.sum() else function
        count = self.sentences[index].sum()
        length = float(self.sentence_words[index].sum() / count) if count else 0.0
        ttrs = self.ttr[index][~np.isnan(self.ttr[index])]
        ttr = float(ttrs.mean()) if ttrs.size else 0.0
        return {
            "burrows_delta": delta,
            "function_word_distance": total_variation(profile, reference.function_profile),
            "sentence_length": length,
            "sentence_length_gap": abs(length - reference.sentence_length) / max(reference.sentence_length, 1e-9),
            "ttr": ttr,
            "ttr_gap": abs(ttr - reference.ttr),
        }


def style_metrics(reference: StyleReference, texts: Sequence[str]) -> dict[str, float]:
    """The stylometric metrics of a set of texts (one contender's generations) against the author."""
    return StyleCounts.of(reference, texts).metrics(np.arange(len(texts)))
