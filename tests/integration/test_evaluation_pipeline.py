"""Train → register → evaluate → gate → promote with tiny local models (no downloads, no Ray).

A ~3M-parameter random Llama with SmolLM2's tokenizer trains on the author's (synthetic, very
regular) writing in seconds, so the whole lifecycle runs here: a first model beats the base model
and is promoted; a longer-trained second one is compared with production AND base; a candidate
whose weights were corrupted is rejected and production stays where it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from twin_ops.config import Settings, load_params, resolve_paths
from twin_ops.evaluation.candidate import model_name, register_candidate
from twin_ops.evaluation.gate import GateDecision
from twin_ops.evaluation.promote import promote_from_decision
from twin_ops.evaluation.run import evaluate
from twin_ops.registry.store import Registry
from twin_ops.training.train import train

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = "tide-writer"
COLUMNS = ["id", "author_id", "instruction", "answer", "source_document_id", "split"]


def author_rows(count: int = 24) -> list[dict]:
    rows = []
    for i in range(count):
        answer = (
            f"On day {i} the tide turns at {i % 12} o'clock. We launch an hour before it, because the river "
            f"is kinder then. I always check the lines twice. The dinghy waits by the yard on day {i}."
        )
        split = "test" if i % 4 == 0 else "train"
        rows.append(
            dict(
                id=f"s{i:02d}",
                author_id=AUTHOR,
                instruction=f"When do you launch on day {i}?",
                answer=answer,
                source_document_id=f"doc-{i}",
                split=split,
            )
        )
    return rows


def write_instruct_dataset(root: Path) -> None:
    folder = root / "data" / "datasets" / AUTHOR / "instruct"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(author_rows(), columns=COLUMNS)
    for split in ("train", "test"):
        frame[frame["split"] == split].reset_index(drop=True).to_parquet(folder / f"{split}.parquet")


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("eval-project")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["training"].update(base_model=str(tiny_model), device="cpu", max_length=96, save_steps=1000, logging_steps=1)
    raw["training"]["sft"].update(batch_size=4, learning_rate=0.005)
    # No Weaviate here (context metrics are skipped with a note); tiny models generate noise, so the
    # gate guards only what they can be judged on.
    raw["evaluation"].update(num_samples=4, max_new_tokens=12, retrieval=False, guarded={"loss": 0.5})
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_instruct_dataset(root)
    settings = Settings(twin_ops_home=root)
    params = load_params(root / "params.yaml", use_env=False)
    return params, resolve_paths(params, settings), settings


def train_sft(project, steps: int):
    params, paths, _ = project
    tuned = params.model_copy(
        update={
            "training": params.training.model_copy(
                update={"sft": params.training.sft.model_copy(update={"max_steps": steps})}
            )
        }
    )
    return train("sft", AUTHOR, tuned, paths, log=lambda line: None)


def corrupt_weights(folder: Path) -> None:
    """Scramble every weight of a trained model: a deliberately broken candidate."""
    import torch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    for file in folder.glob("*.safetensors"):
        tensors = {name: torch.randn_like(t) * 3 for name, t in load_file(str(file)).items()}
        save_file(tensors, str(file), metadata={"format": "pt"})


def test_lifecycle_register_evaluate_gate_promote(project, monkeypatch):
    params, paths, settings = project
    registry = Registry(paths.models)
    name = model_name(params, AUTHOR)
    lines: list[str] = []

    # 1. A first trained model, no production yet: it must beat the base model.
    train_sft(project, steps=4)
    first = register_candidate(AUTHOR, params, paths, stage="sft")
    assert first.version == 1 and first.lineage["data"]["instruct_dataset"]["sha256"]["test"]
    assert first.lineage["params"]["training"]["base_model"] == params.training.base_model
    assert (paths.root / first.merged_path / "model.safetensors").exists()  # snapshotted, not the stage dir
    assert register_candidate(AUTHOR, params, paths, stage="sft") == first  # idempotent
    result = evaluate(AUTHOR, params, paths, settings, log=lines.append)
    assert [m.role for m in result.models] == ["candidate", "base"]
    assert result.decision.reference_role == "base" and result.decision.promote, result.decision.reasons
    promote_from_decision(GateDecision.load(paths.gate_decision(AUTHOR)), params, paths)
    assert registry.get(name, "production").version == 1

    # 2. Trained longer: compared with production and base on the same samples; all three reported.
    train_sft(project, steps=16)
    second = register_candidate(AUTHOR, params, paths, stage="sft")
    assert second.version == 2
    result = evaluate(AUTHOR, params, paths, settings, log=lines.append)
    assert [(m.role, m.label) for m in result.models] == [
        ("candidate", f"{name}:v2"),
        ("production", f"{name}:v1"),
        ("base", f"base:{params.training.base_model}"),
    ]
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"candidate", "production", "base"}
    for role in ("candidate", "production", "base"):
        for metric in ("perplexity", "style_similarity", "burrows_delta", "reference_overlap", "ttr_gap"):
            assert metrics["models"][role][metric] is not None
    base, production, candidate = (metrics["models"][r]["perplexity"] for r in ("base", "production", "candidate"))
    assert candidate < production < base  # more training on the author's text, lower held-out perplexity
    report = (result.output_dir / "report.md").read_text()
    assert f"candidate `{name}:v2`" in report and f"production `{name}:v1`" in report and "base `base:" in report
    assert report.count("| When do you launch on day") == 4  # every sample's generations side by side
    assert "Weaviate is not running" in report or "retrieval off" in report
    assert (result.output_dir / "comparison.png").stat().st_size > 10_000
    assert result.decision.promote and result.decision.reference_role == "production"
    assert registry.get(name, 2).metrics["heldout_perplexity"] == pytest.approx(candidate)
    promote_from_decision(GateDecision.load(paths.gate_decision(AUTHOR)), params, paths)
    assert registry.get(name, "production").version == 2 and registry.get(name, "previous").version == 1

    # 3. A broken candidate (its trained weights scrambled) is rejected; production does not change.
    broken_stage = paths.root / params.training.output_dir / AUTHOR / "dpo"
    import shutil

    shutil.copytree(paths.root / params.training.output_dir / AUTHOR / "sft", broken_stage)
    shutil.rmtree(broken_stage / "adapter")
    corrupt_weights(broken_stage / "merged")
    before = registry.file.read_text()
    # Through the CLI, as a user (or a BashOperator) would run it.
    from typer.testing import CliRunner

    from twin_ops.cli import app

    monkeypatch.setenv("TWIN_OPS_HOME", str(paths.root))
    runner = CliRunner()
    evaluated = runner.invoke(app, ["evaluate", "--author", AUTHOR, "--stage", "dpo", "--fail-on-reject"])
    assert evaluated.exit_code == 3, evaluated.output
    assert f"{name}:v3 is the candidate" in evaluated.output and "gate: REJECT" in evaluated.output
    decision = GateDecision.load(paths.gate_decision(AUTHOR))
    assert decision.candidate_version == 3 and not decision.promote
    assert "perplexity" in decision.reasons[0] and decision.reasons[0].endswith("fail")
    assert "REJECT" in (paths.root / params.evaluation.output_dir / AUTHOR / "report.md").read_text()
    refused = runner.invoke(app, ["promote", "--author", AUTHOR])
    assert refused.exit_code == 1 and "the gate rejected" in refused.output
    after = json.loads(registry.file.read_text())["models"][name]["aliases"]
    assert after == {"candidate": 3, "production": 2, "previous": 1}  # production did not change
    assert json.loads(before)["models"][name]["aliases"] == {"candidate": 2, "production": 2, "previous": 1}
