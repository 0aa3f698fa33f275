"""Feedback into training: the export to data/feedback with its GX suite (pass and fail), and the
datasets step with ``use_feedback`` (real suites, real Parquet; the scripted model of
test_datasets stands in for the base model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.unit import test_datasets
from tests.unit.test_datasets import AUTHOR, ScriptedModel, project
from twin_ops.datasets.build import run_datasets
from twin_ops.datasets.formats import content_hashes, split_files
from twin_ops.domain import write_jsonl
from twin_ops.quality.validate import ValidationFailed
from twin_ops.traces.export import export_feedback
from twin_ops.traces.store import Trace, TraceStore
from twin_ops.training.artifacts import data_versions

demo_documents = test_datasets.demo_documents  # the datasets tests' fixture (the demo author's posts)
QUESTION = "What do you do when the bilge floods at night?"
ANSWER = "I call someone."
CORRECTION = (
    "I open the seacock, run the hand pump until the float drops, and only then go looking for the leak "
    "with a torch: water first, blame later."
)


def store_for(paths) -> TraceStore:
    return TraceStore(paths.traces, max_records=1000, max_age_days=30)


def answered(store: TraceStore, trace_id: str, question: str = QUESTION, answer: str = ANSWER) -> None:
    store.write(
        Trace(
            id=trace_id,
            created_at=datetime.now(UTC),
            route="/v1/chat/completions",
            author=AUTHOR,
            model=f"{AUTHOR}-twin",
            model_version=f"{AUTHOR}-twin:v1",
            messages=[{"role": "user", "content": question}],
            answer=answer,
            finish_reason="stop",
        )
    )


def exported(paths) -> list[dict]:
    location = paths.dataset("feedback", AUTHOR)
    return [json.loads(line) for line in location.read_text().splitlines()]


def test_export_validates_merges_and_keeps_what_the_store_forgot(tmp_path):
    params, paths = project(tmp_path)
    store = store_for(paths)
    for n in range(3):
        answered(store, f"chatcmpl-{n}", question=f"{QUESTION} ({n})")
    store.rate("chatcmpl-0", "up", None, trusted=True)
    store.rate("chatcmpl-1", "down", CORRECTION, trusted=True)
    first = export_feedback(AUTHOR, params, paths, store)
    assert (first.records, first.corrections, first.trusted_corrections) == (2, 1, 1)
    assert [row["id"] for row in exported(paths)] == ["chatcmpl-0", "chatcmpl-1"]
    report = json.loads((paths.reports / "quality" / "feedback" / f"{AUTHOR}.json").read_text())
    assert report["success"] and {o["name"] for o in report["outcomes"]} >= {
        "ids unique",
        "rating up or down",
        "correction non-empty and within token bounds",
    }

    # The store forgets (its bounds), the file does not; a new rating of a known answer wins.
    small = TraceStore(paths.traces, max_records=1, max_age_days=30)
    answered(small, "chatcmpl-3")
    small.rate("chatcmpl-3", "down", None, trusted=False)
    assert small.count() == 1
    second = export_feedback(AUTHOR, params, paths, small)
    assert second.records == 3 and second.from_store == 1
    rows = {row["id"]: row for row in exported(paths)}
    assert rows["chatcmpl-1"]["correction"] == CORRECTION and rows["chatcmpl-3"]["trusted"] is False


@pytest.mark.parametrize(
    ("record", "failure"),
    [
        ({"rating": "meh"}, "rating up or down"),
        ({"correction": "   "}, "correction non-empty and within token bounds"),
        ({"correction": "word " * 601}, "correction non-empty and within token bounds"),
        ({"author_id": "juno-marsh"}, "author matches config"),
        ({"id": "has spaces"}, "ids well-formed"),
        ({"prompt": None}, "prompt present"),
    ],
)
def test_a_record_failing_the_suite_is_never_exported(tmp_path, record, failure):
    params, paths = project(tmp_path)
    store = store_for(paths)
    answered(store, "chatcmpl-0")
    store.rate("chatcmpl-0", "down", CORRECTION, trusted=True)
    export_feedback(AUTHOR, params, paths, store)
    location = paths.dataset("feedback", AUTHOR)
    good = exported(paths)[0]
    # A hand-edited (or otherwise damaged) file: one more record, broken as the case says.
    location.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "chatcmpl-9", **record}) + "\n")
    before = location.read_bytes()
    with pytest.raises(ValidationFailed, match=failure):
        export_feedback(AUTHOR, params, paths, store)
    assert location.read_bytes() == before
    assert (paths.reports / "quality" / "feedback" / f"{AUTHOR}.failed.json").exists()


def test_datasets_with_use_feedback_turn_a_trusted_correction_into_a_preference_pair(tmp_path, demo_documents):
    params, paths = project(tmp_path, {"datasets": {"max_passages_per_document": 1, "use_feedback": True}})
    write_jsonl(paths.dataset("cleaned_documents", AUTHOR), demo_documents[:6])
    store = store_for(paths)
    answered(store, "chatcmpl-good")
    store.rate("chatcmpl-good", "down", CORRECTION, trusted=True)
    answered(store, "chatcmpl-anon", question="Who are you?")
    store.rate("chatcmpl-anon", "down", CORRECTION + " (anonymous)", trusted=False)
    answered(store, "chatcmpl-liked", question="What is the first rule of the yard?")
    store.rate("chatcmpl-liked", "up", None, trusted=True)
    export_feedback(AUTHOR, params, paths, store)

    summary = run_datasets(AUTHOR, params, paths, model=ScriptedModel())
    assert summary.feedback_records == 3 and summary.feedback_pairs == 1
    assert summary.feedback_skipped == {"untrusted": 1, "rating only": 1}
    assert "feedback: 3 records, 1 preference pairs" in summary.line()

    preference = pd.read_parquet(paths.dataset("preference_dataset", AUTHOR) / "train.parquet")
    pair = preference[preference.source_document_id == "feedback:chatcmpl-good"]
    assert pair[["prompt", "chosen", "rejected"]].values.tolist() == [[QUESTION, CORRECTION, ANSWER]]
    assert not preference.chosen.str.contains("anonymous").any()
    report = json.loads((paths.reports / "quality" / "preference_dataset" / f"{AUTHOR}.json").read_text())
    assert report["success"] and report["rows"] == summary.preference["train"] + summary.preference["test"]

    # The model card's lineage (training.artifacts.data_versions) names the feedback it trained on.
    files = split_files(paths, "dpo", AUTHOR)
    lineage = data_versions(paths, files, content_hashes(files))["feedback"]
    assert lineage["pairs"] == 1 and lineage["trace_ids"] == ["chatcmpl-good"]
    assert lineage["source"] == f"data/feedback/{AUTHOR}/feedback.jsonl"


def test_a_feedback_record_failing_its_suite_stops_the_datasets_step_and_changes_nothing(tmp_path, demo_documents):
    params, paths = project(tmp_path, {"datasets": {"max_passages_per_document": 1, "use_feedback": True}})
    write_jsonl(paths.dataset("cleaned_documents", AUTHOR), demo_documents[:6])
    store = store_for(paths)
    answered(store, "chatcmpl-good")
    store.rate("chatcmpl-good", "down", CORRECTION, trusted=True)
    export_feedback(AUTHOR, params, paths, store)
    run_datasets(AUTHOR, params, paths, model=ScriptedModel())
    folder = paths.datasets(AUTHOR)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    location = paths.dataset("feedback", AUTHOR)
    location.write_text(location.read_text().replace('"rating":"down"', '"rating":"sideways"'))
    model = ScriptedModel()
    with pytest.raises(ValidationFailed, match="rating up or down"):
        run_datasets(AUTHOR, params, paths, model=model)
    assert model.calls == 0  # stopped before any work
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
