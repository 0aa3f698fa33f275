"""twin_nightly_refresh, one author at a time: crawl → validate raw → DVC commit → features → validate."""

from __future__ import annotations

from typing import Any

from twin_ops.dag_tasks.common import StageFailed, dvc_commit, load, twin_ops_command


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


def crawl(author_id: str) -> dict[str, Any]:
    """Incremental crawl into data/crawl/<author> (as `twin-ops crawl`, in a child process)."""
    twin_ops_command("crawl", "--author", author_id)
    return {"author": author_id}


def validate_raw(author_id: str) -> dict[str, Any]:
    """Run the raw_documents suite on the crawl; publish it to data/raw only if it passes."""
    from twin_ops.quality import frames
    from twin_ops.quality.validate import ValidationFailed, publish_if_valid, validate_dataset

    params, paths, _ = load()
    source = frames.staged_location(paths, "raw_documents", author_id)
    report = validate_dataset("raw_documents", author_id, params, paths, location=source)
    try:
        publish_if_valid(source, frames.dataset_location(paths, "raw_documents", author_id), report)
    except ValidationFailed as exc:
        raise StageFailed(f"{exc}; data/raw/{author_id} is unchanged (Data Docs: {report.data_docs})") from exc
    return {"author": author_id, "rows": report.rows, "data_docs": str(report.data_docs)}


def commit_raw(author_id: str) -> list[str]:
    _, paths, _ = load()
    return dvc_commit(paths, [f"crawl@{author_id}", f"validate_raw@{author_id}"])


def features(author_id: str) -> dict[str, Any]:
    """Clean, chunk, embed and update the author's part of the index (incremental)."""
    from dataclasses import asdict

    from twin_ops.features.pipeline import run_features
    from twin_ops.quality.validate import ValidationFailed

    params, paths, _ = load()
    try:
        summary = run_features(author_id, params, paths)
    except ValidationFailed as exc:
        raise StageFailed(f"{exc}; the index and data/features/{author_id} are unchanged") from exc
    print(summary.line(), flush=True)
    return asdict(summary)


def validate_features(author_id: str) -> dict[str, Any]:
    """Re-check the published feature files (cleaned documents, chunks) before announcing them."""
    from twin_ops.quality.validate import validate_dataset

    params, paths, _ = load()
    result: dict[str, Any] = {"author": author_id}
    for dataset in ("cleaned_documents", "chunks"):
        report = validate_dataset(dataset, author_id, params, paths)
        if not report.success:
            raise StageFailed(
                f"{dataset} for {author_id} failed {len(report.failed)} checks (Data Docs: {report.data_docs})"
            )
        result[dataset] = report.rows
        result["data_docs"] = str(report.data_docs)
    return result


def commit_features(author_id: str) -> dict[str, Any]:
    """Record the feature set in dvc.lock; its hash is the asset event's data version."""
    from twin_ops.quality.lineage import read_lock

    _, paths, _ = load()
    stage = f"features@{author_id}"
    dvc_commit(paths, [stage])
    outs = read_lock((paths.root / "dvc.lock").read_text()).get(stage, {}).get("outs", [])
    return {"author": author_id, "stage": stage, "outs": {out["path"]: out.get("md5") for out in outs}}
