"""Training progress for people (CLI bar, task log) and a checkpoint at the very last step.

Tokens/s counts the non-padding input tokens the Trainer saw since this process started
(``include_num_input_tokens_seen="non_padding"``), so a resumed run reports its own speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback


@dataclass(frozen=True)
class StepReport:
    stage: str
    step: int
    total: int
    loss: float | None
    tokens_per_second: float
    eta_s: float | None

    def line(self) -> str:
        loss = f"{self.loss:.4f}" if self.loss is not None else "-"
        eta = f"{self.eta_s:.0f}s" if self.eta_s is not None else "-"
        return f"{self.stage} step {self.step}/{self.total} loss {loss} {self.tokens_per_second:.0f} tok/s eta {eta}"


Report = Callable[[StepReport], None]


class ProgressCallback(TrainerCallback):
    def __init__(self, stage: str, report: Report) -> None:
        self.stage = stage
        self.report = report
        self.loss: float | None = None
        self.started = 0.0
        self.first_step = 0
        self.first_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.first_step = state.global_step
        self.first_tokens = state.num_input_tokens_seen

    def _emit(self, state) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = state.global_step - self.first_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done else None
        tokens = (state.num_input_tokens_seen - self.first_tokens) / elapsed
        self.report(StepReport(self.stage, state.global_step, state.max_steps, self.loss, tokens, eta))

    def on_step_end(self, args, state, control, **kwargs):
        # Without this the last steps after the final multiple of save_steps would be lost, and a
        # rerun of a finished stage would train them again instead of finding it done.
        if state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            self._emit(state)
