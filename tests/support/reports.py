"""A project's report folders filled by the real writers: an evaluation report with its plot
(twin_ops.evaluation.report), a model card (twin_ops.training.artifacts), and, on request, real GX
Data Docs. The pages the Airflow report app serves."""

from __future__ import annotations

from pathlib import Path

from twin_ops.config import Params, Paths

AUTHOR = "wren-halvorsen"
# Generations and crawled text are quoted in the report: markup in them must stay text.
HOSTILE = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"


def scratch_paths(paths: Paths, root: Path) -> Paths:
    return paths.model_copy(
        update={
            "root": root,
            "reports": root / "reports",
            "models": root / "models",
            "evaluation": root / "reports" / "evaluation",
        }
    )


def write_evaluation_report(params: Params, paths: Paths) -> Path:
    from twin_ops.evaluation.bootstrap import SampleScores
    from twin_ops.evaluation.gate import GateDecision
    from twin_ops.evaluation.records import EvaluationResult, ModelScores

    per_sample = SampleScores.of_means
    from twin_ops.evaluation.report import write_all
    from twin_ops.evaluation.samples import Sample

    samples = [
        Sample("s1", "How should a retry wait?", "With jittered backoff.", "d1"),
        Sample("s2", "Why cap the delay?", "So a retry storm ends.", "d2"),
    ]
    result = EvaluationResult(
        author_id=AUTHOR,
        model_name=f"{AUTHOR}-twin",
        candidate_version=2,
        production_version=None,
        samples=samples,
        models=[
            ModelScores(
                "candidate", f"{AUTHOR}-twin:v2", per_sample({"perplexity": [8.0, 8.4]}), ["Jittered.", HOSTILE]
            ),
            ModelScores("base", "base", per_sample({"perplexity": [18.0, 18.4]}), ["Wait.", "Because\nit ends."]),
        ],
        author_style={},
        notes=["a test report"],
        decision=GateDecision(promote=True, candidate=f"{AUTHOR}-twin:v2", reference_role="base", reference="base",
                              reasons=["perplexity 8.2 < 18.2"]),
        output_dir=paths.evaluation_output(AUTHOR),
    )  # fmt: skip
    return write_all(result, params)["report"]


def write_model_card(params: Params, paths: Paths) -> Path:
    from twin_ops.training.artifacts import model_card

    folder = paths.training_output(AUTHOR, "sft")
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")  # never a page
    card = model_card(
        author_id=AUTHOR,
        stage="sft",
        base_model="tiny-base",
        base_path="/models/tiny-base",
        params=params,
        data={"instruct_dataset": {"rows": 12}},
        metrics={"train_loss": 1.25},
    )
    path = paths.model_card(AUTHOR, "sft")
    path.write_text(card)
    return path


def write_data_docs(params: Params, paths: Paths) -> Path:
    """A real GX validation of a small raw batch: its Data Docs page."""
    import pandas as pd

    from twin_ops.domain import sha256_text
    from twin_ops.quality.frames import with_derived_columns
    from twin_ops.quality.scrub import Scrubber
    from twin_ops.quality.validate import validate_frame

    rows = []
    for i in range(5):
        content = f"Post {i}. " + "Pump the bilge before you trust the hull. " * 12
        rows.append(
            {
                "id": f"{AUTHOR}:{i}",
                "author_id": AUTHOR,
                "kind": "article",
                "platform": "blog",
                "source_url": f"http://127.0.0.1:8000/posts/{i}/",
                "title": f"Post {i}",
                "content": content,
                "fetched_at": "2026-11-01T00:00:00+00:00",
                "content_hash": sha256_text(content),
                "revision": 1,
                "metadata": {},
            }
        )
    frame = with_derived_columns("raw_documents", pd.DataFrame(rows), Scrubber(params.scrub))
    report = validate_frame("raw_documents", frame, AUTHOR, params, paths)
    assert report.success and report.validation_page.is_file(), report
    return report.validation_page
