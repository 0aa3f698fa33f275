"""What an evaluation leaves in <evaluation.output_dir>/<author>/:

metrics.json     DVC metrics: per model, every metric; the candidate's changes with their intervals;
                 the gate's verdict (`dvc metrics show`)
decision.json    the gate's decision, its reasons, every interval and the versions compared (promotion reads it)
comparison.png   every metric's change with its paired bootstrap interval, vs production and vs base,
                 with the gate's margin and tolerances marked
report.md        the decision and reasons, the metrics table with intervals, generations side by side
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from twin_ops.config import DECISION_FILE, Params
from twin_ops.evaluation.bootstrap import Comparison
from twin_ops.evaluation.gate import GateDecision
from twin_ops.evaluation.metrics import METRICS, is_absolute
from twin_ops.evaluation.records import EvaluationResult

EXCERPT_CHARS = 600


def finite(value: float | None) -> float | None:
    """A metric as JSON can carry it: nan, inf (not measurable) and None become None (DVC shows "-")."""
    return value if value is not None and math.isfinite(value) else None


def _write(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def metrics_payload(result: EvaluationResult) -> dict[str, Any]:
    return {
        "samples": len(result.samples),
        "models": {m.role: {k: finite(v) for k, v in sorted(m.metrics.items())} for m in result.models},
        "author_reference": {k: finite(v) for k, v in sorted(result.author_style.items())},
        # The candidate's change (positive = better) with its paired bootstrap interval, per reference.
        "intervals": {
            against: {
                c.metric: {"change": finite(c.change), "low": finite(c.low), "high": finite(c.high)}
                for c in result.comparisons(against).values()
            }
            for against in ("production", "base")
            if result.comparisons(against)
        },
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


CLIP = 2.0  # the plot's x axis ends at +-200 %: a broken model's change would squash the rest


def _gate_mark(decision: GateDecision, metric: str) -> float | None:
    """Where the gate draws its line for this metric: +margin (primary) or -tolerance (guarded)."""
    if metric == decision.primary_metric:
        return decision.margin
    return -decision.guarded[metric] if metric in decision.guarded else None


def plot(result: EvaluationResult, path: Path) -> Path:
    """A forest plot: per metric, the candidate's change (point) and its interval (line) against
    production and against base; the gate's margin / tolerance as a red tick on that metric's row."""
    import matplotlib

    matplotlib.use("Agg")  # no display in containers and Airflow workers
    import matplotlib.pyplot as plt

    d = result.decision
    groups = [(role, result.comparisons(role)) for role in ("production", "base") if result.comparisons(role)]
    names = [n for n in METRICS if any(n in found for _, found in groups)]
    colours = {"production": "tab:green", "base": "tab:gray"}
    figure, axis = plt.subplots(figsize=(9, 1.2 + 0.42 * max(len(names), 1)))
    clipped = False
    for row, name in enumerate(names):
        y = len(names) - 1 - row
        for offset, (role, found) in zip((0.12, -0.12), groups, strict=False):
            c: Comparison | None = found.get(name)
            if c is None or math.isnan(c.change):
                continue
            low, high, change = (float(min(max(v, -CLIP), CLIP)) for v in (c.low, c.high, c.change))
            clipped = clipped or any(abs(v) > CLIP for v in (c.low, c.high, c.change))
            label = f"vs {role}" if row == 0 else None
            axis.hlines(y + offset, low * 100, high * 100, color=colours[role], linewidth=2)
            axis.plot(change * 100, y + offset, "o", color=colours[role], markersize=4, label=label)
        mark = _gate_mark(d, name)
        if mark is not None:
            axis.plot(mark * 100, y, "|", color="tab:red", markersize=16, markeredgewidth=2)
    axis.axvline(0, color="black", linewidth=0.8)
    labels = []
    for name in names:
        role = " (primary)" if name == d.primary_metric else " (guarded)" if name in d.guarded else ""
        labels.append(f"{name}{' [pt]' if is_absolute(name) else ''}{role}")
    axis.set_yticks(range(len(names) - 1, -1, -1), labels, fontsize=8)
    confidence = f"{d.comparisons[0].confidence:.0%} " if d.comparisons else ""
    axis.set_xlabel(
        f"candidate's change, % of the reference (pt: absolute points), positive = better; "
        f"{confidence}paired bootstrap intervals" + (f"; clipped at ±{CLIP:.0%}" if clipped else ""),
        fontsize=8,
    )
    axis.tick_params(axis="x", labelsize=8)
    axis.grid(axis="x", alpha=0.3)
    if groups:
        axis.legend(fontsize=8, loc="lower right")
    verdict = "promote" if d.promote else "reject"
    figure.suptitle(
        f"{result.author_id}: {d.candidate} — gate: {verdict} ({len(result.samples)} samples; red: margin / tolerance)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _cell(text: str) -> str:
    text = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + " …"
    return text.replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def markdown(result: EvaluationResult, params: Params) -> str:
    d = result.decision
    versus = {against: result.comparisons(against) for against in ("production", "base") if result.comparisons(against)}
    confidence = params.evaluation.bootstrap.confidence
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
        f"The last columns: the candidate's change against production and against base, positive = "
        f"better (for a lower-is-better metric, a drop), relative to the reference's value — in absolute "
        f"points (pt) for the repetition shares — with its paired bootstrap {confidence:.0%} interval "
        f"({d.resamples} resamples of the {d.samples} samples, the same for every model and metric). "
        f"The gate promotes when the primary metric's interval lies above the margin; a guarded metric "
        f"blocks when its interval lies below -tolerance.",
        "",
        # One cell per column, so the header, the rule and the rows agree (also with no comparison).
        "| "
        + " | ".join(
            ["metric", "better", *(f"{m.role} `{m.label}`" for m in result.models), "author (held-out)"]
            + [f"vs {against}" for against in versus]
        )
        + " |",
        "|---|---|" + "---|" * (len(result.models) + 1 + len(versus)),
    ]
    extra = sorted({k for m in result.models for k in m.metrics} - set(METRICS))
    metrics = [m.metrics for m in result.models]
    for name in [*[n for n in METRICS if any(n in values for values in metrics)], *extra]:
        better = ("higher" if METRICS[name].higher_is_better else "lower") if name in METRICS else ""
        role = (
            " (primary)" if name == d.primary_metric else f" (guarded {d.guarded[name]:g})" if name in d.guarded else ""
        )
        values = [f"{row[name]:.4g}" if name in row else "—" for row in metrics]
        author = f"{result.author_style[name]:.4g}" if name in result.author_style else "—"
        changes = [versus[against][name].interval() if name in versus[against] else "—" for against in versus]
        lines.append(f"| {name}{role} | {better} | " + " | ".join([*values, author, *changes]) + " |")
    lines += ["", "![comparison](comparison.png)", "", "## Sample generations", ""]
    header = "| instruction | author's answer | " + " | ".join(m.role for m in result.models) + " |"
    lines += [header, "|---|---|" + "---|" * len(result.models)]
    for index, sample in enumerate(result.samples):
        cells = [_cell(sample.instruction), _cell(sample.answer), *[_cell(m.generations[index]) for m in result.models]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Metric definitions", ""]
    lines += [f"- `{name}`: {metric.description}" for name, metric in METRICS.items()]
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
