"""Run a dataset's Great Expectations suite, write Data Docs and a JSON report, and gate publishing.

One GX file context lives under ``<reports>/gx`` so Data Docs keep every past validation in their
index; the HTML site is ``<reports>/gx/gx/uncommitted/data_docs/local_site/index.html``, and each
validation's own page (``validation_page``, a static table of its checks) is where links point.
A failed validation never publishes: ``publish_if_valid`` copies a validated batch into place with
atomic renames, so the previous good version stays untouched on failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from twin_ops.config import Params, Paths
from twin_ops.errors import TwinOpsError
from twin_ops.quality import frames, suites


class ExpectationOutcome(BaseModel):
    name: str
    expectation: str
    column: str | None
    observed: str
    success: bool


class ValidationReport(BaseModel):
    dataset: str
    author_id: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome]
    data_docs: Path  # the site's index
    validation_page: Path  # this validation's page in the site
    validated_at: datetime

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]


class ValidationFailed(TwinOpsError, RuntimeError):
    def __init__(self, report: ValidationReport) -> None:
        names = ", ".join(outcome.name for outcome in report.failed)
        super().__init__(f"{report.dataset} for {report.author_id} failed validation: {names}")
        self.report = report


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return str(result["observed_value"])
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list") or []
        shown = ", ".join(str(value)[:40] for value in sample[:3])
        share = result.get("unexpected_percent") or 0.0
        return f"{result['unexpected_count']} unexpected ({share:.1f}%) {shown}".strip()
    return ""


def _outcome(item) -> ExpectationOutcome:
    config = item.expectation_config
    columns = config.kwargs.get("column") or ",".join(config.kwargs.get("column_list", []))
    if item.exception_info.get("raised_exception"):  # e.g. a missing column
        observed = f"error: {item.exception_info.get('exception_message')}"
    else:
        observed = _observed(item.result)
    return ExpectationOutcome(
        name=(config.meta or {}).get("name", config.type),
        expectation=config.type,
        column=columns or None,
        observed=observed,
        success=bool(item.success),
    )


def _context(paths: Paths):
    import great_expectations as gx

    # GX logs every store, datasource and checkpoint step at INFO: in a task log that buries the
    # one summary line. Its warnings and errors still come through.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    root = paths.gx_project
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    # GX's per-metric progress bars drown the CLI's own progress and the Airflow task log.
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def validate_frame(dataset: str, frame: pd.DataFrame, author_id: str, params: Params, paths: Paths) -> ValidationReport:
    """Run the suite on a frame (derived columns already added) and update Data Docs."""
    import great_expectations as gx

    context = _context(paths)
    suite = gx.ExpectationSuite(name=dataset, expectations=suites.expectations_for(dataset, params.quality, author_id))
    suite = context.suites.add_or_update(suite)
    source = context.data_sources.add_or_update_pandas(name="twin_ops")
    asset_name = f"{dataset}__{author_id}"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(name=asset_name)
    try:
        batch = asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        batch = asset.add_batch_definition_whole_dataframe("whole")
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=asset_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=asset_name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    outcomes = [_outcome(item) for run in result.run_results.values() for item in run.results]
    docs = paths.data_docs
    return ValidationReport(
        dataset=dataset,
        author_id=author_id,
        success=bool(result.success),
        rows=len(frame),
        outcomes=outcomes,
        data_docs=docs,
        validation_page=_validation_page(context, next(iter(result.run_results))) or docs,
        validated_at=datetime.now(UTC),
    )


def _validation_page(context, identifier) -> Path | None:
    """The validation result's page in the local Data Docs site (GX gives it as a file:// URL)."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    url = context.get_docs_sites_urls(resource_identifier=identifier, site_name="local_site")[0]["site_url"]
    return Path(url2pathname(urlsplit(url).path)) if url else None


def report_path(paths: Paths, dataset: str, author_id: str, *, failed: bool = False) -> Path:
    """The last passing report (a DVC metric); a failing one goes beside it, never over it."""
    return paths.quality_report(dataset, author_id, failed=failed)


def write_report(report: ValidationReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(report.model_dump_json(indent=2))
    temporary.replace(path)


def validate_dataset(
    dataset: str, author_id: str, params: Params, paths: Paths, location: Path | None = None
) -> ValidationReport:
    """Validate a stored dataset, write its JSON report and return it."""
    scrubber = None
    if dataset in frames.SCRUBBED_DATASETS:
        from twin_ops.quality.scrub import Scrubber

        scrubber = Scrubber.for_author(author_id, params, paths)
    frame = frames.load_frame(paths, dataset, author_id, location, scrubber)
    report = validate_frame(dataset, frame, author_id, params, paths)
    write_report(report, report_path(paths, dataset, author_id, failed=not report.success))
    if report.success:
        report_path(paths, dataset, author_id, failed=True).unlink(missing_ok=True)
    return report


def publish_if_valid(source: Path, target: Path, report: ValidationReport) -> None:
    """Copy a validated batch (file or folder) to its published place; refuse a failed one.

    The copy is built beside the target and swapped in with renames, so readers see either the
    previous version or the new one, never a mix, and a failure leaves the previous one in place.
    """
    if not report.success:
        raise ValidationFailed(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    try:
        if source.is_dir():
            staged = staging / target.name
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns(".*"))
        else:
            staged = staging / target.name
            shutil.copy2(source, staged)
        if target.exists():
            retired = staging / f"{target.name}.old"
            os.replace(target, retired)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
