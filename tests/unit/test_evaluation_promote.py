"""Promotion: aliases move, a failing serve swap restores the registry exactly, rollback restores the
exact previous version, and concurrent promotions leave one consistent winner. No Ray: the swap is
a function passed in (the lead's e2e test swaps a real Serve app)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from twin_ops.config import Paths
from twin_ops.domain import SwapResult
from twin_ops.evaluation.gate import GateDecision
from twin_ops.evaluation.promote import PromotionFailed, promote_and_serve, promote_from_decision
from twin_ops.registry.store import Registry, RegistryError
from twin_ops.serving.ops import ServeFailed

NAME = "wren-halvorsen-twin"


def project(tmp_path: Path) -> Paths:
    return Paths(root=tmp_path, state=tmp_path / ".twin", data=tmp_path / "data", reports=tmp_path, cache=tmp_path)


def aliases(registry: Registry) -> dict[str, int]:
    return json.loads(registry.file.read_text())["models"][NAME]["aliases"]


def failing_swap(params, paths, name, version, **_):
    raise ServeFailed(f"smoke query came back without sources (v{version})")


def working_swap(params, paths, name, version, **kwargs):
    assert kwargs["models_dir"] == paths.models  # the swap reads the same registry
    served = f"{name}:v{version}"
    return SwapResult(
        model_version=served, previous_user_config=None, seconds=0.1, smoke_answer="answer", smoke_sources=2
    )


def test_promotion_moves_production_and_previous_then_serves(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    for _ in range(2):
        registry.register(NAME, "base")
    first = promote_and_serve(NAME, params, paths, version=1)
    assert first.swap is None and first.replaced is None  # no serving asked: aliases only
    second = promote_and_serve(NAME, params, paths, serve=True, swap=working_swap)
    assert second.promoted.version == 2 and second.replaced == 1
    assert second.swap.model_version == f"{NAME}:v2" and "production v1 -> v2" in second.line()
    assert aliases(registry) == {"candidate": 2, "production": 2, "previous": 1}


def test_failing_swap_restores_the_registry_exactly(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    for _ in range(3):
        registry.register(NAME, "base")
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    before = aliases(registry)  # production 2, previous 1
    with pytest.raises(PromotionFailed, match=r"v3 could not be served \(ServeFailed: smoke query") as failure:
        promote_and_serve(NAME, params, paths, version=3, serve=True, swap=failing_swap)
    assert "registry rolled back, production is v2" in str(failure.value)
    assert aliases(registry) == before  # previous is still v1, not the failed v3
    history = registry.entry(NAME).history
    assert history[-1]["reason"] == "automatic rollback: serving v3 failed"


def test_failing_first_promotion_leaves_no_production(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    registry.register(NAME, "base")

    def unreachable(params, paths, name, version, **_):
        raise ConnectionRefusedError("nothing listens on 127.0.0.1:9")

    with pytest.raises(PromotionFailed, match=r"ConnectionRefusedError.*production is unset"):
        promote_and_serve(NAME, params, paths, url="http://127.0.0.1:9", swap=unreachable)
    assert aliases(registry) == {"candidate": 1}  # serving falls back to the base model, as before


def test_promote_then_rollback_restores_the_exact_previous_version(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    registry.register(NAME, "base", metrics={"heldout_perplexity": 20.0}, lineage={"stage": "sft"})
    promote_and_serve(NAME, params, paths)
    production = registry.get(NAME, "production")
    registry.register(NAME, "base", metrics={"heldout_perplexity": 15.0})
    promote_and_serve(NAME, params, paths, expected_production=1)
    assert registry.rollback(NAME) == production
    assert registry.get(NAME, "production").model_dump() == production.model_dump()


def test_a_rejected_decision_is_not_promoted(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    registry.register(NAME, "base")
    decision = GateDecision(
        promote=False,
        model_name=NAME,
        candidate=f"{NAME}:v1",
        candidate_version=1,
        production_version=None,
        reference_role="base",
        reference="base",
        reasons=["perplexity 90 vs base 80: -12.5% (needs +2.0%) — fail"],
    )
    with pytest.raises(PromotionFailed, match=r"the gate rejected .*-12\.5%"):
        promote_from_decision(decision, params, paths)
    assert registry.alias(NAME, "production") is None
    forced = promote_from_decision(decision, params, paths, force=True)
    assert forced.promoted.version == 1
    assert registry.entry(NAME).history[-1]["reason"] == "promoted by hand over a rejection (--force)"


def _promote(root: str, version: int, results) -> None:
    from twin_ops.config import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml", use_env=False)
    paths = project(Path(root))
    try:
        promote_and_serve(NAME, params, paths, version=version, expected_production=1)
        results.put((version, "promoted"))
    except RegistryError as exc:
        results.put((version, str(exc)))


def test_two_concurrent_promotions_leave_one_consistent_winner(tmp_path, params):
    paths = project(tmp_path)
    registry = Registry(paths.models)
    for _ in range(3):
        registry.register(NAME, "base")
    registry.promote(NAME, 1)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    # Both gates compared against production v1; only one of them may replace it.
    workers = [context.Process(target=_promote, args=(str(tmp_path), v, results)) for v in (2, 3)]
    for worker in workers:
        worker.start()
    outcome = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    winners = [v for v, message in outcome.items() if message == "promoted"]
    assert len(winners) == 1, outcome
    loser = ({2, 3} - set(winners)).pop()
    assert f"production is v{winners[0]}, expected v1" in outcome[loser]
    assert aliases(registry) == {"candidate": 3, "production": winners[0], "previous": 1}
    assert [p.name for p in paths.models.iterdir() if p.suffix == ".tmp"] == []


def test_cli_says_what_is_missing(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from twin_ops.cli import app

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("TWIN_OPS_HOME", str(tmp_path))
    runner = CliRunner()
    untrained = runner.invoke(app, ["evaluate", "--author", "nobody"])
    assert untrained.exit_code == 1 and "holds no merged model or adapter" in untrained.output
    unevaluated = runner.invoke(app, ["promote", "--author", "nobody"])
    assert unevaluated.exit_code == 1 and "no gate decision" in unevaluated.output
    unregistered = runner.invoke(app, ["evaluate", "--author", "nobody", "--no-register"])
    assert unregistered.exit_code == 1 and "no model named 'nobody-twin'" in unregistered.output


def test_registration_reads_the_folder_training_writes(tmp_path, params):
    from twin_ops.training.train import stage_dir

    paths = project(tmp_path)
    assert paths.training_output("wren", "dpo") == stage_dir(params, paths, "wren", "dpo")


def test_rollback_serves_the_previous_version_and_a_failed_swap_undoes_it(tmp_path, params):
    from twin_ops.evaluation.promote import rollback_and_serve

    paths = project(tmp_path)
    registry = Registry(paths.models)
    for _ in range(2):
        registry.register(NAME, "base")
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    with pytest.raises(PromotionFailed, match="registry rolled back, production is v2"):
        rollback_and_serve(NAME, params, paths, serve=True, swap=failing_swap)
    assert aliases(registry) == {"candidate": 2, "production": 2, "previous": 1}
    rolled = rollback_and_serve(NAME, params, paths, serve=True, swap=working_swap)
    assert (rolled.promoted.version, rolled.replaced, rolled.swap.model_version) == (1, 2, f"{NAME}:v1")
    assert aliases(registry) == {"candidate": 2, "production": 1, "previous": 2}


def test_the_gate_decision_round_trips_through_its_file(tmp_path, params):
    from twin_ops.errors import InputError
    from twin_ops.evaluation.bootstrap import SampleScores, compare, resample_indices
    from twin_ops.evaluation.gate import NoGateDecision, decide

    candidate, base = (
        SampleScores.of_means({"perplexity": [10.0, 12.0]}),
        SampleScores.of_means({"perplexity": [20.0, 21.0]}),
    )
    decision = decide(
        compare(candidate, base, "base", resample_indices(2, 100, 0), 0.95),
        params.evaluation.model_copy(update={"guarded": {}}),
        candidate_label=f"{NAME}:v2",
        reference_role="base",
        reference_label="base:tiny",
        model_name=NAME,
        candidate_version=2,
    )
    paths = project(tmp_path)
    with pytest.raises(NoGateDecision, match="run `twin-ops evaluate` first"):
        GateDecision.load(paths.gate_decision("wren"))
    saved = decision.save(paths.gate_decision("wren"))
    assert GateDecision.load(saved) == decision and decision.promote
    assert decision.primary_metric == params.evaluation.primary_metric
    saved.write_text(saved.read_text().replace('"promote": true', '"promote": "maybe"'))
    with pytest.raises(InputError, match="not a valid gate decision"):
        GateDecision.load(saved)


def test_cli_rolls_production_back_and_names_what_is_missing(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from twin_ops.cli import app

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("TWIN_OPS_HOME", str(tmp_path))
    registry = Registry(tmp_path / "models")  # training.output_dir in params.yaml
    registry.register(NAME, "base")
    registry.promote(NAME, 1)
    runner = CliRunner()
    nothing = runner.invoke(app, ["models", "rollback", NAME])
    assert nothing.exit_code == 1 and "no previous version to roll back to" in nothing.output
    registry.register(NAME, "base")
    registry.promote(NAME, 2)
    rolled = runner.invoke(app, ["models", "rollback", NAME])
    assert rolled.exit_code == 0, rolled.output
    assert f"{NAME}: production -> v1 (was v2)" in rolled.output
    assert aliases(registry) == {"candidate": 2, "production": 1, "previous": 2}
    assert registry.entry(NAME).history[-1]["reason"] == "rolled back by hand (twin-ops models rollback)"
