"""One author's state across every stage, from the files each stage leaves (what `make demo` prints).

Read-only: documents and chunks (data/features), dataset sizes (data/datasets), training losses
(models/<author>/<stage>/metrics.json), the evaluation verdict (reports/evaluation), the registry's
production version and the twin API's address.
"""

from __future__ import annotations

import json
from pathlib import Path

from twin_ops.config import Params, Paths, Settings


def _count_lines(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _parquet_rows(folder: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {file.stem: pq.ParquetFile(file).metadata.num_rows for file in sorted(folder.glob("*.parquet"))}


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def author_summary(
    author_id: str, params: Params, paths: Paths, settings: Settings | None = None
) -> list[tuple[str, str]]:
    from twin_ops.evaluation.candidate import model_name
    from twin_ops.evaluation.gate import GateDecision, NoGateDecision
    from twin_ops.registry.store import PRODUCTION, Registry, RegistryError

    missing = "—"
    rows: list[tuple[str, str]] = []
    documents = _count_lines(paths.dataset("cleaned_documents", author_id))
    chunks = _count_lines(paths.dataset("chunks", author_id))
    rows.append(("documents", str(documents) if documents is not None else missing))
    rows.append(("chunks (indexed)", str(chunks) if chunks is not None else missing))
    for dataset in ("instruct_dataset", "preference_dataset"):
        sizes = _parquet_rows(paths.dataset(dataset, author_id))
        rows.append((dataset, " · ".join(f"{split} {n}" for split, n in sizes.items()) or missing))
    for stage in ("sft", "dpo"):
        metrics = _json(paths.training_metrics(author_id, stage))
        if metrics:
            start, end = metrics.get("train_loss_start", float("nan")), metrics.get("train_loss_end", float("nan"))
            loss = f"{start:.3f} → {end:.3f}"
            rows.append((f"{stage} training loss", f"{loss} ({metrics.get('steps', '?')} steps)"))
        else:
            rows.append((f"{stage} training loss", missing))
    try:
        decision = GateDecision.load(paths.gate_decision(author_id))
    except NoGateDecision:
        rows.append(("evaluation", missing))
    else:
        verdict = "PROMOTE" if decision.promote else "REJECT"
        reason = decision.reasons[0] if decision.reasons else ""
        rows.append(("evaluation", f"{verdict} {decision.candidate} vs {decision.reference}: {reason}"))
    name = model_name(params, author_id)
    try:
        production = Registry(paths.models).alias(name, PRODUCTION)
    except RegistryError:
        production = None
    rows.append(
        (
            "production model",
            f"{name}:v{production.version}" if production else f"none (serves {params.training.base_model})",
        )
    )
    settings = settings or Settings()
    rows.append(("twin API", settings.twin_ops_serve_url or f"http://{params.serving.host}:{params.serving.port}"))
    return rows
