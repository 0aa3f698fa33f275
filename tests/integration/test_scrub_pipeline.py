"""Planted secrets and personal data through the nightly refresh's steps into Weaviate and the datasets.

The demo repository's deploy/ folder and the demo export are collected by the real collectors into
a crawl store, then the same functions the twin_nightly_refresh tasks call run on it: raw
validation and publishing, the feature stage (clean → scrub → chunk → embed → index), the
features' re-validation; then the dataset stage. No planted value may be in the index, the
feature files or the Parquet files; the author's own address must be.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.unit.test_datasets import ScriptedModel
from twin_ops.collect.exports import collect_export
from twin_ops.collect.repos import collect_repository
from twin_ops.collect.results import Collected
from twin_ops.datasets.build import build_datasets
from twin_ops.demo.content import raw_document, wren_posts
from twin_ops.demo.site import REPO_DIR, init_git_repo
from twin_ops.domain import CleanedDocument, Source, SourceType, read_jsonl, write_jsonl
from twin_ops.features import index
from twin_ops.features.pipeline import redactions_file, run_features
from twin_ops.quality import frames
from twin_ops.quality.scrub import Scrubber
from twin_ops.quality.validate import ValidationFailed, publish_if_valid, validate_dataset, validate_frame
from twin_ops.services.weaviate import connect

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "include" / "demo_site"
PLANTED = yaml.safe_load((DEMO / "planted_secrets.yaml").read_text())
AUTHOR = "wren-halvorsen"


@pytest.fixture(scope="module")
def refreshed(params, paths, tmp_path_factory):
    """Crawl store → published raw → features in this module's own aliases → datasets."""
    work = tmp_path_factory.mktemp("scrub")
    suffix = uuid.uuid4().hex[:8].capitalize()
    features = params.features.model_copy(
        update={"documents_alias": f"ScrubDocs{suffix}", "chunks_alias": f"ScrubChunks{suffix}"}
    )
    datasets = params.datasets.model_copy(update={"max_passages_per_document": 2})
    own = params.model_copy(update={"features": features, "datasets": datasets})
    own_paths = paths.model_copy(update={"data": work / "data", "reports": work / "reports"})

    collected = Collected(AUTHOR)
    repo = work / "bilge-pump"
    shutil.copytree(ROOT / REPO_DIR, repo)
    init_git_repo(repo)
    collect_repository(Source(type=SourceType.GIT, url=str(repo)), AUTHOR, own.collect.git, work / "clones", collected)
    export = Source(type=SourceType.FILE, url=str(DEMO / "export"))
    collect_export(export, AUTHOR, own.collect.files, own.collect.min_content_chars, work / "scratch", collected)
    store = own_paths.crawl_store(AUTHOR)
    posts = [raw_document(path, AUTHOR) for path in wren_posts()[:6]]
    write_jsonl(store / "blog.jsonl", posts)
    write_jsonl(store / "git.jsonl", [d for d in collected.documents if d.platform == "git"])
    write_jsonl(store / "file.jsonl", [d for d in collected.documents if d.platform == "file"])

    # refresh.validate_raw: the raw suite passes (raw data holds secrets by nature) and publishes.
    report = validate_dataset("raw_documents", AUTHOR, own, own_paths, location=store)
    publish_if_valid(store, own_paths.raw_documents(AUTHOR), report)
    with connect(own) as client:
        summary = run_features(AUTHOR, own, own_paths, client=client)  # refresh.features
        checked = validate_dataset("cleaned_documents", AUTHOR, own, own_paths)  # refresh.validate_features
        objects = [
            obj.properties
            for alias in (features.documents_alias, features.chunks_alias)
            for obj in client.collections.get(alias).iterator()
        ]
        found = {
            case["value"]: [
                o.properties
                for o in client.collections.get(features.chunks_alias).query.bm25(query=case["value"], limit=3).objects
            ]
            for case in PLANTED["planted"]
        }
        # run_datasets reads these same cleaned documents; the scripted model stands in for the base model.
        cleaned = read_jsonl(own_paths.dataset("cleaned_documents", AUTHOR), CleanedDocument)
        dataset_summary = build_datasets(cleaned, AUTHOR, own, own_paths, model=ScriptedModel())
        try:
            yield own, own_paths, summary, checked, objects, found, dataset_summary
        finally:
            for alias in (features.documents_alias, features.chunks_alias):
                target = index.alias_target(client, alias)
                client.alias.delete(alias_name=alias)
                if target:
                    client.collections.delete(target)


def leaks(text: str) -> list[str]:
    return [f"{case['kind']} from {case['file']}" for case in PLANTED["planted"] if case["value"] in text]


def test_nothing_planted_reaches_the_index(refreshed):
    _, _, summary, checked, objects, found, _ = refreshed
    assert checked.success and "no secrets" in {outcome.name for outcome in checked.outcomes}
    assert summary.redacted and sum(summary.redacted.values()) >= len(PLANTED["planted"])
    indexed = json.dumps(objects, default=str)
    assert len(objects) > 20
    assert leaks(indexed) == []
    assert "wren@halvorsen.example.org" in indexed  # her own public address is kept
    assert "<redacted:private_key>" in indexed and "<redacted:phone>" in indexed
    # BM25 for each planted value finds nothing that contains it.
    assert {value: hits for value, hits in found.items() if value in json.dumps(hits, default=str)} == {}


def test_the_report_names_documents_and_kinds_never_values(refreshed):
    _, paths, summary, *_ = refreshed
    report_text = redactions_file(paths, AUTHOR).read_text()
    report = json.loads(report_text)
    assert leaks(report_text) == []
    assert report["redacted"] == summary.redacted
    by_file = {(Path(entry["source_url"]).name, entry["kind"]) for entry in report["documents"]}
    planted = {(Path(case["file"]).name, case["kind"]) for case in PLANTED["planted"]}
    assert planted - by_file <= {("bilge-pump.ini", "aws_key"), ("bilge-pump.ini", "api_token")}  # see below
    assert ("run.sh", "private_key") in by_file and ("mailbag.md", "email") in by_file
    # Cleaned documents on disk hold no planted value either.
    assert leaks(paths.dataset("cleaned_documents", AUTHOR).read_text()) == []


def test_nothing_planted_reaches_the_datasets(refreshed):
    _, paths, *_, dataset_summary = refreshed
    files = sorted((paths.data / "datasets" / AUTHOR).rglob("*.parquet"))
    assert files and dataset_summary.documents >= 8  # the posts and the two export files
    text = "\n".join(pd.read_parquet(path).to_json() for path in files)
    assert leaks(text) == []
    assert "<redacted:" in text  # the export's passages reached the datasets, redacted


def test_no_secrets_fails_a_batch_that_still_has_one_and_names_only_the_kind(refreshed):
    params, paths, *_ = refreshed
    published = paths.dataset("cleaned_documents", AUTHOR)
    frame = pd.read_json(published, lines=True, dtype=False)
    frame.loc[0, "text"] = frame.loc[0, "text"] + "\nThe key was AKIAQ3EGRM7P4XK2ZL5B, call +1 202-555-0143."
    scrubber = Scrubber.for_author(AUTHOR, params, paths)
    report = validate_frame(
        "cleaned_documents", frames.with_derived_columns("cleaned_documents", frame, scrubber), AUTHOR, params, paths
    )
    assert [outcome.name for outcome in report.failed] == ["no secrets"]
    assert "aws_key,phone" in report.failed[0].observed and "AKIA" not in report.failed[0].observed
    # Without the scrubber the check cannot pass by accident: its column is missing.
    unchecked = validate_frame(
        "cleaned_documents", frames.with_derived_columns("cleaned_documents", frame), AUTHOR, params, paths
    )
    assert "no secrets" in [outcome.name for outcome in unchecked.failed]
    assert "no secrets" in str(ValidationFailed(report))  # the message the DAG task and CLI show
