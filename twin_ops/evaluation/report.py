"""What an evaluation leaves in <evaluation.output_dir>/<author>/:

metrics.json     DVC metrics: per model, every metric; the gate's verdict (`dvc metrics show`)
decision.json    the gate's decision, its reasons and the versions compared (promotion reads it)
comparison.png   one bar chart per metric, the models side by side
report.md        the decision and reasons, the metrics table, sample generations side by side
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from twin_ops.config import DECISION_FILE, Params
from twin_ops.evaluation.gate import GateDecision
from twin_ops.evaluation.metrics import METRICS
from twin_ops.evaluation.records import EvaluationResult

EXCERPT_CHARS = 600


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf/nan; DVC shows null as "-"


def _write(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def metrics_payload(result: EvaluationResult) -> dict[str, Any]:
    return {
        "samples": len(result.samples),
        "models": {m.role: {k: _number(v) for k, v in sorted(m.metrics.items())} for m in result.models},
        "author_reference": {k: _number(v) for k, v in sorted(result.author_style.items())},
        "gate": {"promote": result.decision.promote},
    }


def decision(result: EvaluationResult) -> GateDecision:
    """The gate's decision with what promotion needs: the model, the versions compared, the notes."""
    return result.decision.model_copy(
        update={
            "model_name": result.model_name,
            "candidate_version": result.candidate_version,
            "production_version": result.production_version,
            "notes": result.notes,
        }
    )


def plot(result: EvaluationResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display in containers and Airflow workers
    import matplotlib.pyplot as plt

    names = [n for n in METRICS if any(n in m.metrics and math.isfinite(m.metrics[n]) for m in result.models)]
    columns = 4
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    colours = {"candidate": "tab:blue", "production": "tab:green", "base": "tab:gray"}
    for axis, name in zip(axes.flat, names, strict=False):
        shown = [m for m in result.models if math.isfinite(m.metrics.get(name, math.nan))]
        axis.bar([m.role for m in shown], [m.metrics[name] for m in shown], color=[colours[m.role] for m in shown])
        if name in result.author_style:
            axis.axhline(result.author_style[name], color="tab:red", linestyle="--", linewidth=1, label="author")
        better = "higher" if METRICS[name][0] else "lower"
        axis.set_title(f"{name} ({better} is better)", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    verdict = "promote" if result.decision.promote else "reject"
    figure.suptitle(f"{result.author_id}: {result.decision.candidate} — gate: {verdict}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _cell(text: str) -> str:
    text = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + " …"
    return text.replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def markdown(result: EvaluationResult, params: Params) -> str:
    d = result.decision
    lines = [
        f"# Evaluation · {result.author_id} · {d.candidate}",
        "",
        f"**Gate: {'PROMOTE' if d.promote else 'REJECT'}** — candidate `{d.candidate}` against "
        f"{d.reference_role} `{d.reference}` (primary metric `{params.evaluation.primary_metric}`, "
        f"margin {params.evaluation.margin:.1%}).",
        "",
        *[f"- {reason}" for reason in d.reasons],
        "",
        "Notes:",
        *[f"- {note}" for note in result.notes],
        "",
        f"## Metrics ({len(result.samples)} held-out samples, the same for every model)",
        "",
        "| metric | better | " + " | ".join(f"{m.role} `{m.label}`" for m in result.models) + " | author (held-out) |",
        "|---|---|" + "---|" * (len(result.models) + 1),
    ]
    extra = sorted({k for m in result.models for k in m.metrics} - set(METRICS))
    for name in [*[n for n in METRICS if any(n in m.metrics for m in result.models)], *extra]:
        better = ("higher" if METRICS[name][0] else "lower") if name in METRICS else ""
        values = [f"{m.metrics[name]:.4g}" if name in m.metrics else "—" for m in result.models]
        author = f"{result.author_style[name]:.4g}" if name in result.author_style else "—"
        lines.append(f"| {name} | {better} | " + " | ".join(values) + f" | {author} |")
    lines += ["", "![comparison](comparison.png)", "", "## Sample generations", ""]
    header = "| instruction | author's answer | " + " | ".join(m.role for m in result.models) + " |"
    lines += [header, "|---|---|" + "---|" * len(result.models)]
    for index, sample in enumerate(result.samples):
        cells = [_cell(sample.instruction), _cell(sample.answer), *[_cell(m.generations[index]) for m in result.models]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Metric definitions", ""]
    lines += [f"- `{name}`: {description}" for name, (_, description) in METRICS.items()]
    return "\n".join(lines) + "\n"


def write_all(result: EvaluationResult, params: Params) -> dict[str, Path]:
    folder = result.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "metrics": _write(folder / "metrics.json", json.dumps(metrics_payload(result), indent=2) + "\n"),
        "decision": decision(result).save(folder / DECISION_FILE),
        "plot": plot(result, folder / "comparison.png"),
        "report": _write(folder / "report.md", markdown(result, params)),
    }
