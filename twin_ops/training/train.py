"""One training stage: a trl config object built from params.yaml, then a trainer call.

SFT trains a fresh LoRA adapter on the instruction dataset. DPO loads that adapter (trainable) and
keeps training it on the preference dataset; trl copies it as a frozen "ref" adapter, so the
reference policy is the SFT model, as DPO expects. Checkpoints go to models/<author>/<stage>/
checkpoints every ``save_steps``; a rerun resumes from the last complete one when the data and
parameters are unchanged (a fingerprint file says so), and starts over otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin_ops.config import Params, Paths
from twin_ops.datasets import formats
from twin_ops.errors import InputError
from twin_ops.llm import load_model, load_tokenizer, pick_device, resolve_model
from twin_ops.training import artifacts
from twin_ops.training.progress import ProgressCallback, Report

Log = Callable[[str], None]


class NothingToTrain(InputError, ValueError):
    """No training sample has a token left to learn from (bad lengths, not a transient failure)."""


@dataclass
class TrainResult:
    """One finished stage; its files are under ``output_dir`` (see twin_ops.training.artifacts)."""

    stage: str
    author_id: str
    output_dir: Path
    steps: int
    resumed_from: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def adapter(self) -> Path:
        """The LoRA adapter (PEFT safetensors + tokenizer): load it on the base model."""
        return self.output_dir / "adapter"

    @property
    def merged(self) -> Path:
        """Base model + adapter merged: a plain checkpoint ``from_pretrained`` loads."""
        return self.output_dir / "merged"

    @property
    def card(self) -> Path:
        """The model card (also copied into adapter/ and merged/ as README.md)."""
        return self.output_dir / "README.md"

    @property
    def metrics_path(self) -> Path:
        """DVC metrics: the ``metrics`` above as JSON."""
        return self.output_dir / "metrics.json"

    @property
    def plots(self) -> Path:
        """DVC plots: loss.csv (step,loss) and loss.png."""
        return self.output_dir / "plots"

    def line(self) -> str:
        m = self.metrics
        resumed = f" (resumed at step {self.resumed_from})" if self.resumed_from else ""
        evaluated = f", eval loss {m['eval_loss']:.3f}" if "eval_loss" in m else ""
        return (
            f"train {self.stage} {self.author_id}: {self.steps} steps{resumed}, loss "
            f"{m.get('train_loss_start', float('nan')):.3f} -> {m.get('train_loss_end', float('nan')):.3f}"
            f"{evaluated}, {m.get('tokens_per_second', 0):.0f} tok/s, {self.seconds:.0f}s -> {self.output_dir}"
        )


def stage_dir(params: Params, paths: Paths, author_id: str, stage: str) -> Path:
    return paths.root / params.training.output_dir / author_id / stage


def lora_config(params: Params):
    from peft import LoraConfig

    lora = params.training.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def trainer_kwargs(stage: str, params: Params, output_dir: Path, device: str) -> dict[str, Any]:
    """The stage's trl config as keywords: fp32 on CPU; bf16, checkpointing and packing on GPU."""
    t = params.training
    s = t.sft if stage == "sft" else t.dpo
    gpu = device == "cuda"
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        seed=t.seed,
        data_seed=t.seed,
        learning_rate=s.learning_rate,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps or -1,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        warmup_steps=s.warmup_steps,
        lr_scheduler_type=s.lr_scheduler,
        max_length=t.max_length,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="no",  # evaluated once at the end; the evaluate stage does the real judging
        report_to=[],
        disable_tqdm=True,  # progress comes from ProgressCallback (CLI bar or log lines)
        include_num_input_tokens_seen="non_padding",
        use_cpu=not gpu,
        bf16=gpu,
        activation_checkpointing=gpu and t.gradient_checkpointing,
        dataloader_pin_memory=gpu,
    )
    if stage == "sft":
        # Prompt-completion data: the loss is on the author's answer only.
        kwargs.update(packing=gpu and t.packing, completion_only_loss=True)
    else:
        kwargs.update(beta=t.dpo.beta)
    return kwargs


def trainer_args(stage: str, params: Params, output_dir: Path, device: str):
    from trl import DPOConfig, SFTConfig

    config = SFTConfig if stage == "sft" else DPOConfig
    return config(**trainer_kwargs(stage, params, output_dir, device))


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose trainer state was written; partial ones (a kill mid-save) go."""
    if not folder.is_dir():
        return None
    candidates = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for checkpoint in candidates:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return checkpoint
        except (FileNotFoundError, json.JSONDecodeError):
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def is_finished(checkpoint: Path) -> bool:
    """A checkpoint saved at the run's last step (the fingerprint says the plan is the same)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state.get("max_steps", 0) > 0 and state.get("global_step", 0) >= state["max_steps"]


def restore_finished(trainer, checkpoint: Path) -> None:
    """The trained adapter weights and the trainer state (loss history, step) of a finished run."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    set_peft_model_state_dict(trainer.model, weights, adapter_name="default")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))


def _fingerprint(stage: str, params: Params, data_hashes: dict[str, str], start_from: str) -> str:
    """What makes two runs the same run: data, training params (minus where it runs), start point."""
    relevant = params.training.model_dump(mode="json", exclude={"runner", "container", "output_dir"})
    payload = {"stage": stage, "training": relevant, "data": data_hashes, "start": start_from}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def resume_point(checkpoints: Path, fingerprint: str, log: Log) -> Path | None:
    stamp = checkpoints / "fingerprint.txt"
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        log(f"{checkpoints}: data or parameters changed since these checkpoints; starting over")
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return last_complete_checkpoint(checkpoints)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(
    stage: str,
    author_id: str,
    params: Params,
    paths: Paths,
    *,
    report: Report | None = None,
    log: Log = print,
) -> TrainResult:
    """Run (or resume, or find finished) one stage and write its adapter, merged model and card."""
    from peft import PeftModel
    from transformers import PrinterCallback, set_seed
    from trl import DPOTrainer, SFTTrainer

    started = time.perf_counter()
    t = params.training
    device = pick_device(t.device)
    base_path = resolve_model(t.base_model, paths.cache)
    files = formats.split_files(paths, stage, author_id)
    hashes = formats.content_hashes(files)
    data = formats.load_stage_data(files, stage)
    out = stage_dir(params, paths, author_id, stage)
    sft_adapter = stage_dir(params, paths, author_id, "sft") / "adapter"
    if stage == "dpo" and not (sft_adapter / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"DPO starts from the SFT adapter, and {sft_adapter} has none: run --stage sft first")
    start_from = _file_hash(sft_adapter / "adapter_model.safetensors") if stage == "dpo" else t.base_model
    checkpoint = resume_point(out / "checkpoints", _fingerprint(stage, params, hashes, start_from), log)

    # LoRA weights are drawn when the trainer wraps the model, before the Trainer seeds itself.
    set_seed(t.seed)
    tokenizer = load_tokenizer(base_path)
    model = load_model(base_path, device, load_in_4bit=t.load_in_4bit)
    args = trainer_args(stage, params, out / "checkpoints", device)
    callbacks = [ProgressCallback(stage, report or (lambda step: log(step.line())))]
    common = dict(
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("test"),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if stage == "sft":
        trainer = SFTTrainer(model=model, peft_config=lora_config(params), **common)
    else:
        model = PeftModel.from_pretrained(model, str(sft_adapter), is_trainable=True)
        trainer = DPOTrainer(model=model, **common)
    trainer.remove_callback(PrinterCallback)  # it would print every log dict a second time
    if len(trainer.train_dataset) == 0:  # trl drops samples whose answer was truncated away entirely
        raise NothingToTrain(
            f"{stage}: no training sample keeps any answer tokens within training.max_length={t.max_length}; "
            "raise it (or shorten the prompts)"
        )
    resumed_from = int(checkpoint.name.split("-")[-1]) if checkpoint else None
    tokens_before = 0
    train_started = time.perf_counter()
    if checkpoint is not None and is_finished(checkpoint):
        # Resuming at the last step would still train one more; the checkpoint IS the result.
        log(f"{stage} already trained to step {resumed_from} ({checkpoint}); writing its outputs")
        restore_finished(trainer, checkpoint)
        tokens_before = trainer.state.num_input_tokens_seen
    else:
        if checkpoint is not None:
            log(f"resuming {stage} from {checkpoint}")
            tokens_before = json.loads((checkpoint / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - train_started

    history = artifacts.loss_history(trainer.state.log_history)
    metrics = artifacts.loss_summary(history)
    tokens = trainer.state.num_input_tokens_seen - tokens_before
    metrics.update(steps=trainer.state.global_step, train_seconds=train_seconds, train_tokens=tokens)
    metrics["tokens_per_second"] = tokens / train_seconds if tokens else 0.0
    if not tokens and (out / "metrics.json").exists():  # a finished stage rerun: keep the run's speed
        previous = json.loads((out / "metrics.json").read_text())
        for key in ("train_seconds", "train_tokens", "tokens_per_second"):
            metrics[key] = previous.get(key, metrics[key])
    if "test" in data:
        evaluated = trainer.evaluate()
        # Keep what describes the model; drop timings and counters of the evaluation itself.
        noise = ("runtime", "per_second", "num_tokens", "epoch", "num_input_tokens_seen")
        metrics.update({k: float(v) for k, v in evaluated.items() if k.startswith("eval_") and not k.endswith(noise)})

    adapter_dir = out / "adapter"
    staged = out / ".adapter.new"
    shutil.rmtree(staged, ignore_errors=True)
    # DPO's model also holds the frozen "ref" copy; only the trained adapter is the output.
    trainer.model.save_pretrained(str(staged), selected_adapters=["default"])
    tokenizer.save_pretrained(str(staged))
    artifacts.replace_dir(staged, adapter_dir)
    steps = trainer.state.global_step
    del trainer, model
    artifacts.save_merged(base_path, adapter_dir, out / "merged", tokenizer, device)

    artifacts.write_json(out / "metrics.json", metrics)
    artifacts.write_plots(out / "plots", history, f"{author_id} · {stage}")
    card = artifacts.model_card(
        author_id=author_id,
        stage=stage,
        base_model=t.base_model,
        base_path=base_path,
        params=params,
        data=artifacts.data_versions(paths, files, hashes),
        metrics=metrics,
    )
    for folder in (out, adapter_dir, out / "merged"):
        (folder / "README.md").write_text(card)
    result = TrainResult(stage, author_id, out, steps, resumed_from, metrics, time.perf_counter() - started)
    log(result.line())
    return result
