"""What an evaluation produces: each contender's scores and the whole result (the report reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from twin_ops.evaluation.bootstrap import Comparison, SampleScores
from twin_ops.evaluation.gate import GateDecision
from twin_ops.evaluation.samples import Sample
from twin_ops.rag import Passage


@dataclass
class ModelScores:
    role: str  # candidate | production | base
    label: str
    samples: SampleScores  # one row per held-out sample: what the bootstrap resamples
    generations: list[str]
    passages: dict[str, list[Passage]] | None = None  # the context each sample's prompt carried

    @property
    def metrics(self) -> dict[str, float]:
        """Every metric on all samples."""
        return self.samples.metrics()


@dataclass
class EvaluationResult:
    author_id: str
    model_name: str
    candidate_version: int
    production_version: int | None
    samples: list[Sample]
    models: list[ModelScores]
    author_style: dict[str, float]  # the held-out answers' own stylometry and repetition: what "the author" scores
    notes: list[str]
    decision: GateDecision
    output_dir: Path
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)

    def scores(self, role: str) -> ModelScores | None:
        return next((m for m in self.models if m.role == role), None)

    def comparisons(self, against: str) -> dict[str, Comparison]:
        """The candidate's paired intervals against ``against`` (production | base), by metric."""
        return {c.metric: c for c in self.decision.comparisons if c.against == against}

    def line(self) -> str:
        primary = self.decision.reasons[0] if self.decision.reasons else ""
        models = ", ".join(m.label for m in self.models)
        return (
            f"evaluate {self.author_id}: {len(self.samples)} held-out samples, {models}; "
            f"{'PROMOTE' if self.decision.promote else 'REJECT'} ({primary}); {self.seconds:.0f}s -> {self.output_dir}"
        )
