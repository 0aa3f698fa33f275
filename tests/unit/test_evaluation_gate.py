"""The gate on synthetic per-sample metric values (paired bootstrap intervals), the repetition
measures on known texts, and the report's intervals. No model: every value here is made up on
purpose, so each test knows what the gate must decide."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from twin_ops.config import ConfigError
from twin_ops.evaluation import repetition, stylometry
from twin_ops.evaluation.bootstrap import SampleScores, compare, resample_indices
from twin_ops.evaluation.gate import GateDecision, decide
from twin_ops.evaluation.lm import TokenLoss
from twin_ops.evaluation.metrics import improvement

N = 30  # held-out samples per synthetic evaluation: the minimum


def rules(params, **changes):
    """The gate's params (evaluation.*) with a few changed; 2000 resamples, 95 %, seed 42 by default."""
    return params.evaluation.model_copy(update=changes)


def gate(params, candidate: dict, reference: dict, against: str = "base", **changes) -> GateDecision:
    """Per-sample values (metric -> N numbers) for both models -> the gate's decision against them."""
    evaluation = rules(params, **changes)
    b = evaluation.bootstrap
    ours, theirs = SampleScores.of_means(candidate), SampleScores.of_means(reference)
    indices = resample_indices(ours.size, b.resamples, b.seed)
    comparisons = compare(ours, theirs, against, indices, b.confidence)
    return decide(comparisons, evaluation, reference_role=against, samples=ours.size, resamples=b.resamples)


def noisy(rng: np.random.Generator, centre: float, spread: float, size: int = N) -> np.ndarray:
    return centre + rng.normal(0.0, spread, size)


# --- the primary metric --------------------------------------------------------------------------


def test_a_clear_gain_is_promoted_and_the_decision_states_its_interval(params):
    rng = np.random.default_rng(0)
    base = noisy(rng, 60.0, 15.0)  # questions differ a lot in difficulty...
    tuned = base * 0.7 + rng.normal(0.0, 2.0, N)  # ...and the candidate is ~30 % lower on each
    decision = gate(params, {"perplexity": tuned}, {"perplexity": base}, guarded={})
    assert decision.promote, decision.reasons
    [comparison] = [c for c in decision.comparisons if c.metric == "perplexity"]
    assert 0.02 < comparison.low < comparison.change < comparison.high
    assert comparison.change == pytest.approx(improvement("perplexity", tuned.mean(), base.mean()))
    # The reason (and so the summary line) states the interval and the margin it had to clear.
    assert "[95% CI +" in decision.reasons[0] and "needs the interval above +2.0%" in decision.reasons[0]
    assert decision.reasons[0].endswith("pass") and "PROMOTE" in decision.line()
    assert decision.samples == N and decision.resamples == params.evaluation.bootstrap.resamples


def test_two_runs_of_the_same_model_are_rejected(params):
    rng = np.random.default_rng(1)
    truth = noisy(rng, 0.40, 0.10)
    # Identical runs (greedy decoding): a change of exactly zero never clears a margin, even 0.
    same = gate(params, {"style_similarity": truth}, {"style_similarity": truth}, primary_metric="style_similarity")
    assert not same.promote and same.comparisons[0].low == same.comparisons[0].high == 0.0
    assert not gate(
        params, {"style_similarity": truth}, {"style_similarity": truth}, primary_metric="style_similarity", margin=0.0
    ).promote
    # Two sampled runs: the same model plus per-sample noise. Whatever its point estimate (here a
    # few % "better"), the interval straddles zero: rejected.
    for seed in range(5):
        draw = np.random.default_rng(100 + seed)
        first, second = truth + draw.normal(0, 0.05, N), truth + draw.normal(0, 0.05, N)
        decision = gate(
            params, {"style_similarity": first}, {"style_similarity": second}, primary_metric="style_similarity"
        )
        low, high = decision.comparisons[0].low, decision.comparisons[0].high
        assert low < 0 < high and not decision.promote, decision.reasons
        assert decision.reasons[0].endswith("fail")


def test_pairing_sees_a_small_consistent_gain_through_large_sample_spread(params):
    rng = np.random.default_rng(2)
    base = rng.uniform(10.0, 200.0, N)  # perplexity varies 20x across questions
    tuned = base * 0.96  # 4 % lower on every single one
    assert gate(params, {"perplexity": tuned}, {"perplexity": base}, guarded={}).promote  # paired: [+4 %, +4 %]
    assert not gate(params, {"perplexity": tuned}, {"perplexity": base}, guarded={}, margin=0.05).promote
    # Unpaired, the same gain would drown: the candidate's mean alone varies by far more than 4 %.
    alone = [tuned[resample].mean() for resample in resample_indices(N, 2000, 42)]
    assert np.std(alone) / tuned.mean() > 0.04


def test_the_same_seed_gives_the_same_intervals(params):
    rng = np.random.default_rng(3)
    values = {"perplexity": noisy(rng, 50.0, 10.0)}, {"perplexity": noisy(rng, 55.0, 10.0)}
    first, second = gate(params, *values, guarded={}), gate(params, *values, guarded={})
    assert first.comparisons == second.comparisons
    other = gate(params, *values, guarded={}, bootstrap=params.evaluation.bootstrap.model_copy(update={"seed": 7}))
    assert other.comparisons[0].change == first.comparisons[0].change  # the point estimate is all samples
    assert (other.comparisons[0].low, other.comparisons[0].high) != (
        first.comparisons[0].low,
        first.comparisons[0].high,
    )


def test_a_candidate_that_cannot_be_measured_fails(params):
    flat = np.full(N, 100.0)
    assert not gate(params, {"perplexity": np.full(N, math.inf)}, {"perplexity": flat}, guarded={}).promote
    missing = gate(params, {"loss": flat}, {"loss": flat}, guarded={})
    assert not missing.promote and missing.reasons[0] == "perplexity: not measured — not measurable, fail"
    # A reference that overflowed (inf perplexity) is beaten by any finite candidate.
    assert gate(params, {"perplexity": flat}, {"perplexity": np.full(N, math.inf)}, guarded={}).promote


# --- guarded metrics -----------------------------------------------------------------------------


def test_a_guarded_regression_beyond_its_tolerance_rejects(params):
    rng = np.random.default_rng(4)
    base = noisy(rng, 60.0, 15.0)
    style = noisy(rng, 0.5, 0.1)
    better = {"perplexity": base * 0.7, "style_similarity": style * 0.8}  # style 20 % worse on every sample
    decision = gate(params, better, {"perplexity": base, "style_similarity": style}, guarded={"style_similarity": 0.05})
    assert not decision.promote
    assert decision.reasons[0].endswith("pass")  # the primary metric alone would have promoted
    assert decision.reasons[1].startswith("style_similarity") and decision.reasons[1].endswith("fail")
    assert "blocks if the interval lies below -5.0%" in decision.reasons[1]


def test_a_guarded_metric_worse_only_within_noise_does_not_block(params):
    rng = np.random.default_rng(5)
    base = noisy(rng, 60.0, 15.0)
    style = noisy(rng, 0.5, 0.1)
    candidate = {"perplexity": base * 0.7, "style_similarity": style + rng.normal(-0.03, 0.1, N)}
    decision = gate(
        params, candidate, {"perplexity": base, "style_similarity": style}, guarded={"style_similarity": 0.05}
    )
    [guard] = [c for c in decision.comparisons if c.metric == "style_similarity"]
    assert guard.change < -0.05  # the point estimate is worse than the tolerance...
    assert guard.low < -0.05 < guard.high  # ...but the interval reaches back within it: noise
    assert decision.promote and decision.reasons[1].endswith("ok"), decision.reasons


def test_a_guarded_metric_measured_for_one_model_only_is_noted(params):
    flat = np.full(N, 100.0)
    decision = gate(
        params,
        {"perplexity": flat * 0.5, "context_overlap": flat},
        {"perplexity": flat},
        guarded={"context_overlap": 0.1},
    )
    assert decision.promote and decision.reasons[1] == "context_overlap: not measured for both models — skipped"


def test_unknown_metric_names_are_configuration_errors(params):
    with pytest.raises(ConfigError, match=r"evaluation\.primary_metric: unknown metric .bleu."):
        decide([], rules(params, primary_metric="bleu"))
    with pytest.raises(ConfigError, match=r"evaluation\.guarded\.stlye"):
        decide([], rules(params, guarded={"stlye": 0.1}))


def test_a_looping_candidate_is_blocked_by_the_repetition_guard(params):
    """Item 2 end to end on texts: the twin learned the words (perplexity) but loops."""
    rng = np.random.default_rng(6)
    plain = [f"On day {i} the tide turns early, so we launch an hour before it and row out slowly." for i in range(N)]
    looping = [f"On day {i} the second was a failure, a failure, a failure, and a failure again." for i in range(N)]
    window = params.evaluation.repetition_words
    base = noisy(rng, 60.0, 15.0)
    candidate = {"perplexity": base * 0.7, **repetition.repetition_scores(looping, window)}
    reference = {"perplexity": base, **repetition.repetition_scores(plain, window)}
    decision = gate(params, candidate, reference)  # the default guards: repetition among them
    assert not decision.promote
    failed = [reason for reason in decision.reasons if reason.endswith("fail")]
    assert [reason.split()[0] for reason in failed] == ["distinct_2", "repeated_3gram_share"]
    assert " pt [95% CI " in failed[1]  # shares change in absolute points


# --- direction and scale of a change -------------------------------------------------------------


def test_improvement_is_direction_normalised_relative_or_absolute():
    assert improvement("perplexity", 90.0, 100.0) == pytest.approx(0.10)  # lower is better: 10 % lower
    assert improvement("style_similarity", 0.55, 0.5) == pytest.approx(0.10)
    assert improvement("burrows_delta", 1.2, 1.0) == pytest.approx(-0.20)
    assert improvement("repeated_3gram_share", 0.05, 0.01) == pytest.approx(-0.04)  # absolute points
    assert improvement("distinct_2", 0.9, 0.95) == pytest.approx(-0.05)
    assert improvement("citation_rate", 0.5, 0.0) == math.inf and improvement("citation_rate", 0.0, 0.0) == 0.0
    assert improvement("perplexity", math.inf, math.inf) == 0.0


# --- corpus-level metrics are recomputed per resample ----------------------------------------------

AUTHOR = [
    "I launch an hour before the tide turns. The river is kinder then, and so am I.",
    "We check the lines twice. Then we check them again, because the yard is not forgiving.",
    "The dinghy waits by the slip. I row out slowly and I do not hurry the water.",
    "Every spring we paint the hull. It takes a week, and the smell stays for a month.",
]
TEXTS = [
    "We go out at dawn. I check the knots, and then I check them again.",
    "Quarterly revenue metrics indicate substantial growth across all operating segments.",
    "",
    "The hull is wet and we do not hurry. The river is kind to the careful!",
]


def test_stylometry_from_summed_counts_equals_the_joined_texts():
    reference = stylometry.style_reference(AUTHOR, top_words=20, window=5)
    counts = stylometry.StyleCounts.of(reference, TEXTS)
    resample = np.array([0, 0, 3, 1, 2])  # repeats allowed, as in a bootstrap resample
    picked = [TEXTS[i] for i in resample]
    got = counts.metrics(resample)
    joined = "\n\n".join(picked)
    assert got["burrows_delta"] == pytest.approx(np.mean(np.abs(reference.z(joined) - reference.author_z)))
    assert got["function_word_distance"] == pytest.approx(
        stylometry.total_variation(stylometry.function_word_profile(picked), reference.function_profile)
    )
    assert got["sentence_length"] == pytest.approx(stylometry.mean_sentence_length(picked))
    assert got["ttr"] == pytest.approx(stylometry.mean_mattr(picked, 5))
    assert stylometry.style_metrics(reference, picked) == pytest.approx(got)


def test_loss_is_a_ratio_of_sums_in_every_resample():
    loss = TokenLoss(nll=np.array([10.0, 30.0, 0.0]), tokens=np.array([10.0, 10.0, 0.0]))
    assert loss.metrics(np.arange(3))["loss"] == pytest.approx(2.0)  # 40 / 20, not the mean of 1 and 3
    assert loss.metrics(np.array([1, 1, 0]))["perplexity"] == pytest.approx(math.exp(70 / 30))
    assert math.isnan(loss.metrics(np.array([2, 2]))["loss"])  # no answer token picked


# --- repetition on known texts -------------------------------------------------------------------


def test_repetition_measures_on_known_texts():
    loop = stylometry.words("A failure, a failure, A FAILURE.")  # punctuation and case ignored
    assert loop == ["a", "failure"] * 3
    assert repetition.distinct_n(loop, 2) == pytest.approx(2 / 5)  # (a failure), (failure a) of 5 pairs
    assert repetition.repeated_ngram_share(loop, 3) == pytest.approx(2 / 4)  # 2 of 4 trigrams seen before
    plain = stylometry.words("The tide turns at six.")
    assert repetition.distinct_n(plain, 2) == 1.0 and repetition.repeated_ngram_share(plain, 3) == 0.0
    assert math.isnan(repetition.distinct_n(["one"], 2)) and math.isnan(repetition.repeated_ngram_share(["a", "b"], 3))
    # Each text is cut to its first `window` words before it is measured.
    scores = repetition.repetition_scores(["x y z x y z", "x y z x y z", "one"], window=3)
    assert scores["distinct_2"][:2].tolist() == [1.0, 1.0] and scores["repeated_3gram_share"][:2].tolist() == [0.0, 0.0]
    full = repetition.repetition_scores(["x y z x y z", "one"], window=6)
    assert full["distinct_2"][0] == pytest.approx(3 / 5) and full["repeated_3gram_share"][0] == pytest.approx(1 / 4)
    # A text too short to measure is left out of the mean, not counted as perfect.
    assert SampleScores.of_means(full).metrics() == pytest.approx({"distinct_2": 0.6, "repeated_3gram_share": 0.25})


# --- the decision and the report carry the intervals ---------------------------------------------


def test_the_report_shows_every_interval(tmp_path, params):
    from twin_ops.evaluation import report
    from twin_ops.evaluation.records import EvaluationResult, ModelScores
    from twin_ops.evaluation.samples import Sample

    rng = np.random.default_rng(7)
    texts = [f"On day {i} we launch an hour before the tide, and the river is kind." for i in range(N)]
    reference = stylometry.style_reference(AUTHOR, top_words=20, window=5)

    def model(role: str, perplexity: np.ndarray) -> ModelScores:
        scores = SampleScores.of_means({"perplexity": perplexity, "style_similarity": noisy(rng, 0.4, 0.05)})
        scores.measures.append(stylometry.StyleCounts.of(reference, texts))
        scores.add_means(repetition.repetition_scores(texts, params.evaluation.repetition_words))
        return ModelScores(role, f"{role}:v1", scores, texts)

    base = noisy(rng, 60.0, 10.0)
    models = [model("candidate", base * 0.8 + noisy(rng, 0, 3)), model("production", base * 0.9), model("base", base)]
    b = params.evaluation.bootstrap
    indices = resample_indices(N, b.resamples, b.seed)
    comparisons = [
        c for other in models[1:] for c in compare(models[0].samples, other.samples, other.role, indices, 0.95)
    ]
    decision = decide(
        comparisons,
        params.evaluation,
        candidate_label="candidate:v1",
        reference_role="production",
        reference_label="production:v1",
        samples=N,
        resamples=b.resamples,
    )
    samples = [Sample(f"s{i}", f"When on day {i}?", text, f"doc-{i}") for i, text in enumerate(texts)]
    result = EvaluationResult(
        author_id="wren",
        model_name="wren-twin",
        candidate_version=1,
        production_version=None,
        samples=samples,
        models=models,
        author_style={"repeated_3gram_share": 0.0, "distinct_2": 1.0},
        notes=["synthetic"],
        decision=decision,
        output_dir=tmp_path,
    )
    files = report.write_all(result, params)
    text = files["report"].read_text()
    assert "| vs production | vs base |" in text
    perplexity_row = next(line for line in text.splitlines() if line.startswith("| perplexity (primary)"))
    assert perplexity_row.count("[95% CI") == 2
    assert "| repeated_3gram_share (guarded 0.02) | lower |" in text and " pt [95% CI" in text
    metrics = json.loads(files["metrics"].read_text())
    interval = metrics["intervals"]["base"]["perplexity"]
    assert interval["low"] <= interval["change"] <= interval["high"] and set(metrics["intervals"]) == {
        "production",
        "base",
    }
    saved = GateDecision.load(files["decision"])
    assert saved.comparisons == decision.comparisons and saved.samples == N
    assert Path(files["plot"]).stat().st_size > 10_000
