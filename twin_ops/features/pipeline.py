"""The feature stage for one author: clean → scrub → validate → chunk → validate → embed → index.

Called by `twin-ops features`, the DVC stage and the nightly DAG alike. Files under
data/features/<author>/ are written only after the index update succeeded, so the files always
describe what is indexed; a failed validation stops before anything is written or indexed.
Secrets and personal data are redacted from every cleaned document here (quality.scrub), the one
place before both the index and the datasets (which read the cleaned documents) see the text; the
report of what was redacted (document, kind, count, never the value) goes beside the features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from twin_ops.collect.store import platform_files
from twin_ops.config import FeaturesParams, Params, Paths
from twin_ops.domain import Chunk, CleanedDocument, RawDocument, read_jsonl, write_jsonl
from twin_ops.features import index
from twin_ops.features.chunk import Chunker
from twin_ops.features.clean import Cleaner
from twin_ops.features.embed import Embedder
from twin_ops.quality import frames
from twin_ops.quality.scrub import Redaction, Scrubber
from twin_ops.quality.validate import ValidationFailed, report_path, validate_frame, write_report

log = logging.getLogger(__name__)


class FeatureSummary(BaseModel):
    """What a features run did (the CLI's last line, the DAG task's XCom)."""

    author_id: str
    documents: int = 0
    skipped_empty: int = 0
    chunks: int = 0
    new_or_changed_documents: int = 0
    removed_documents: int = 0
    embedded_chunks: int = 0
    stale_chunks_removed: int = 0
    rebuilt: bool = False
    redacted: dict[str, int] = Field(default_factory=dict)  # by kind, over all documents
    seconds: dict[str, float] = Field(default_factory=dict)

    def line(self) -> str:
        stages = ", ".join(f"{name} {secs:.1f}s" for name, secs in self.seconds.items())
        return (
            f"features {self.author_id}: {self.documents} documents ({self.new_or_changed_documents} new/changed, "
            f"{self.removed_documents} removed), {self.chunks} chunks ({self.embedded_chunks} embedded, "
            f"{self.stale_chunks_removed} stale removed), {sum(self.redacted.values())} redactions"
            f"{' [rebuild]' if self.rebuilt else ''}; {stages}"
        )


def feature_files(paths: Paths, author_id: str) -> tuple[Path, Path]:
    return (
        paths.dataset("cleaned_documents", author_id),
        paths.dataset("chunks", author_id),
    )


def _fingerprint_file(paths: Paths, author_id: str) -> Path:
    return feature_files(paths, author_id)[0].with_name("fingerprint.txt")


def redactions_file(paths: Paths, author_id: str) -> Path:
    """The redaction report, beside the features it describes."""
    return feature_files(paths, author_id)[0].with_name("redactions.json")


def _fingerprint(features: FeaturesParams, scrubber: Scrubber) -> str:
    """Changes whenever cleaning, scrubbing, chunking or the model would give different features."""
    relevant = features.model_dump(
        mode="json", include={"embedding_model", "boilerplate_patterns", "tracking_parameters", "chunking"}
    )
    relevant["scrub"] = scrubber.settings()
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


Previous = dict[str, tuple[CleanedDocument, list[Chunk], list[Redaction]]]


def _previous_run(paths: Paths, author_id: str, fingerprint: str) -> Previous:
    """Last run's features (and redactions) by document id, if they were made with the same settings."""
    cleaned_file, chunks_file = feature_files(paths, author_id)
    stamp, redactions = _fingerprint_file(paths, author_id), redactions_file(paths, author_id)
    if not (stamp.exists() and stamp.read_text() == fingerprint and cleaned_file.exists() and chunks_file.exists()):
        return {}
    if not redactions.exists():  # made before the scrubber: scrub everything again
        return {}
    by_document: dict[str, list[Chunk]] = {}
    for chunk in read_jsonl(chunks_file, Chunk):
        by_document.setdefault(chunk.document_id, []).append(chunk)
    redacted: dict[str, list[Redaction]] = {}
    for entry in json.loads(redactions.read_text())["documents"]:
        redacted.setdefault(entry["document_id"], []).append(Redaction.model_validate(entry))
    return {
        doc.id: (doc, by_document.get(doc.id, []), redacted.get(doc.id, []))
        for doc in read_jsonl(cleaned_file, CleanedDocument)
    }


def write_redactions(path: Path, author_id: str, documents: int, redactions: list[Redaction]) -> None:
    """The redaction report: totals by kind and one line per document and kind, never a value."""
    totals: dict[str, int] = {}
    for entry in redactions:
        totals[entry.kind] = totals.get(entry.kind, 0) + entry.count
    report = {
        "author_id": author_id,
        "documents_scanned": documents,
        "documents_redacted": len({entry.document_id for entry in redactions}),
        "redacted": dict(sorted(totals.items())),
        "documents": [entry.model_dump() for entry in redactions],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    temporary.replace(path)


def load_raw(paths: Paths, author_id: str) -> list[RawDocument]:
    location = paths.dataset("raw_documents", author_id)
    files = platform_files(location)  # the documents, not the crawl's quarantine and skipped lists
    if not files:
        raise frames.DatasetNotFound(f"no published raw documents at {location} (run crawl and validate first)")
    return [document for path in files for document in read_jsonl(path, RawDocument)]


def _validate(dataset: str, records: list, author_id: str, params: Params, paths: Paths, scrubber: Scrubber):
    frame = pd.DataFrame([record.model_dump(mode="json") for record in records])
    frame = frames.with_derived_columns(dataset, frame, scrubber=scrubber)
    report = validate_frame(dataset, frame, author_id, params, paths)
    if not report.success:
        write_report(report, report_path(paths, dataset, author_id, failed=True))
        raise ValidationFailed(report)
    return report


def run_features(
    author_id: str,
    params: Params,
    paths: Paths,
    *,
    rebuild: bool = False,
    client=None,
    embedder: Embedder | None = None,
    on_embedded: Callable[[int, int], None] | None = None,
) -> FeatureSummary:
    """Bring the index and data/features/<author> up to date with the published raw documents."""
    summary = FeatureSummary(author_id=author_id, rebuilt=rebuild)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[stage] = now - clock
        clock = now
        log.info("features %s: %s done in %.1fs", author_id, stage, summary.seconds[stage])

    raw = load_raw(paths, author_id)
    features = params.features
    scrubber = Scrubber.for_author(author_id, params, paths)
    fingerprint = _fingerprint(features, scrubber)
    # Unchanged documents reuse last run's cleaned text and chunks: a nightly refresh then costs
    # in proportion to what changed, not to the whole corpus.
    previous = {} if rebuild else _previous_run(paths, author_id, fingerprint)
    embedder = embedder or Embedder(features.embedding_model, features.device, features.embedding_batch_size)
    cleaner = Cleaner(features)
    chunker = Chunker(features.chunking, embedder.count_tokens, embedder.split_tokens)
    cleaned: list[CleanedDocument] = []
    chunks: list[Chunk] = []
    redactions: list[Redaction] = []
    for document in raw:
        reused = previous.get(document.id)
        if reused and reused[0].raw_content_hash == document.content_hash:
            cleaned.append(reused[0])
            chunks.extend(reused[1])
            redactions.extend(reused[2])
            continue
        result = cleaner.clean(document)
        if result is None:
            summary.skipped_empty += 1
            continue
        # Scrubbed before chunking: no chunk, vector, dataset row or model ever holds the value.
        result, redacted = scrubber.scrub_document(result)
        redactions.extend(redacted)
        cleaned.append(result)
        chunks.extend(chunker.chunk(result))
    for entry in redactions:
        summary.redacted[entry.kind] = summary.redacted.get(entry.kind, 0) + entry.count
    summary.documents = len(cleaned)
    summary.chunks = len(chunks)
    lap("clean+scrub+chunk")
    cleaned_report = _validate("cleaned_documents", cleaned, author_id, params, paths, scrubber)
    chunks_report = _validate("chunks", chunks, author_id, params, paths, scrubber)
    lap("validate")

    from twin_ops.services.weaviate import connect

    with nullcontext(client) if client is not None else connect(params) as weaviate_client:
        index.ensure_aliases(weaviate_client, features.documents_alias, features.chunks_alias)
        state = index.indexed_state(weaviate_client, features.documents_alias, features.chunks_alias, author_id)
        if state.model_names - {features.embedding_model}:
            log.warning("index holds vectors of %s; rebuilding with %s", state.model_names, features.embedding_model)
            rebuild = summary.rebuilt = True
        changes = index.plan_changes(cleaned, chunks, state)
        to_embed = chunks if rebuild else changes.chunks
        progress = (lambda n: on_embedded(n, len(to_embed))) if on_embedded else None
        vectors = embedder.encode([chunk.text for chunk in to_embed], progress)
        summary.embedded_chunks = len(to_embed)
        lap("embed")
        options = dict(
            documents_alias=features.documents_alias,
            chunks_alias=features.chunks_alias,
            model_name=features.embedding_model,
            batch_size=features.import_batch_size,
        )
        if rebuild:
            index.rebuild(weaviate_client, author_id, cleaned, chunks, vectors, **options)
        else:
            by_id = {document.id: document for document in cleaned}
            index.apply_changes(weaviate_client, changes, vectors, chunks, by_id, **options)
        summary.new_or_changed_documents = len(changes.documents)
        summary.removed_documents = len(changes.removed_documents)
        summary.stale_chunks_removed = 0 if rebuild else len(changes.stale_chunks)
        lap("index")

    cleaned_file, chunks_file = feature_files(paths, author_id)
    write_jsonl(cleaned_file, cleaned)
    write_jsonl(chunks_file, chunks)
    write_redactions(redactions_file(paths, author_id), author_id, len(cleaned), redactions)
    _fingerprint_file(paths, author_id).write_text(fingerprint)
    write_report(cleaned_report, report_path(paths, "cleaned_documents", author_id))
    write_report(chunks_report, report_path(paths, "chunks", author_id))
    lap("write")
    log.info(summary.line())
    return summary
