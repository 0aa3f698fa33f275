"""twin_nightly_refresh, one author at a time: crawl → validate raw → DVC commit → features → validate."""

from __future__ import annotations

import logging

from twin_ops.dag_tasks.common import StageFailed, dvc_commit, load, twin_ops_command
from twin_ops.dag_tasks.records import Crawled, FeaturesCommitted, FeaturesValidated, RawCommitted, RawValidated

log = logging.getLogger(__name__)


def authors(requested: list[str] | None) -> list[str]:
    """The run's authors (the form's list, else params.yaml's), each with a config file."""
    from twin_ops.collect.authors import author_file

    params, paths, _ = load()
    chosen = list(requested or params.project.authors)
    missing = [author for author in chosen if not author_file(params, paths, author).exists()]
    if missing:
        raise StageFailed(f"no author config for {', '.join(missing)} in {params.collect.authors_dir}")
    if not chosen:
        raise StageFailed("no authors to refresh: set project.authors in params.yaml or the run's authors")
    return chosen


def crawl(author_id: str) -> Crawled:
    """Incremental crawl into the author's crawl store (as `twin-ops crawl`, in a child process)."""
    twin_ops_command("crawl", "--author", author_id)
    return Crawled(author=author_id)


def validate_raw(author_id: str) -> RawValidated:
    """Run the raw_documents suite on the crawl; publish it to data/raw only if it passes."""
    from twin_ops.quality.validate import ValidationFailed, publish_if_valid, validate_dataset

    params, paths, _ = load()
    source = paths.crawl_store(author_id)
    target = paths.raw_documents(author_id)
    report = validate_dataset("raw_documents", author_id, params, paths, location=source)
    try:
        publish_if_valid(source, target, report)
    except ValidationFailed as exc:
        raise StageFailed(f"{exc}; {target} is unchanged (Data Docs: {report.validation_page})") from exc
    return RawValidated(author=author_id, rows=report.rows, data_docs=str(report.validation_page))


def commit_raw(author_id: str) -> RawCommitted:
    _, paths, _ = load()
    return RawCommitted(author=author_id, stages=dvc_commit(paths, [f"crawl@{author_id}", f"validate_raw@{author_id}"]))


def features(author_id: str):
    """Clean, chunk, embed and update the author's part of the index (incremental)."""
    from twin_ops.features.pipeline import run_features
    from twin_ops.quality.validate import ValidationFailed

    params, paths, _ = load()
    try:
        summary = run_features(author_id, params, paths)
    except ValidationFailed as exc:
        raise StageFailed(f"{exc}; the index and {paths.features(author_id)} are unchanged") from exc
    log.info(summary.line())
    return summary


def validate_features(author_id: str) -> FeaturesValidated:
    """Re-check the published feature files (cleaned documents, chunks) before announcing them."""
    from twin_ops.quality.validate import validate_dataset

    params, paths, _ = load()
    rows: dict[str, int] = {}
    data_docs = ""
    for dataset in ("cleaned_documents", "chunks"):
        report = validate_dataset(dataset, author_id, params, paths)
        if not report.success:
            raise StageFailed(
                f"{dataset} for {author_id} failed {len(report.failed)} checks (Data Docs: {report.validation_page})"
            )
        rows[dataset] = report.rows
        data_docs = str(report.validation_page)
    return FeaturesValidated(author=author_id, data_docs=data_docs, **rows)


def commit_features(author_id: str) -> FeaturesCommitted:
    """Record the feature set in dvc.lock; its hash is the asset event's data version."""
    from twin_ops.quality.lineage import read_lock

    _, paths, _ = load()
    stage = f"features@{author_id}"
    dvc_commit(paths, [stage])
    outs = read_lock(paths.dvc_lock.read_text()).get(stage, {}).get("outs", [])
    return FeaturesCommitted(author=author_id, stage=stage, outs={out["path"]: out.get("md5") for out in outs})
