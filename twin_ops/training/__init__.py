"""Fine-tuning: LoRA SFT on the instruction dataset, then DPO on the preference dataset.

``train.py`` is the whole recipe (a config object plus a trainer call); ``base_model`` finds and
loads the base model; ``artifacts`` writes what a run leaves behind; ``container`` runs the same
entrypoint (``python -m twin_ops.training``) in a Docker container. Nothing heavy is imported here,
so the CLI and DAG files can import the package for free.
"""

from __future__ import annotations

import os

STAGES = ("sft", "dpo")


def passive_cpu_threads() -> None:
    """Make idle OpenMP threads sleep instead of spin (unless the environment already says).

    torch's CPU kernels run on OpenMP threads that, by default, busy-wait between parallel
    regions. On a host whose cores are shared (an Airflow worker running several tasks, CI) the
    spinning threads steal the cores the working ones need: measured on a busy 2-core machine, a
    SmolLM2-135M training step took ~30 s with spinning threads and ~3 s with sleeping ones. The
    variable is read once, when torch loads its OpenMP runtime, so this must run before torch is
    imported; the CLI commands that train or generate call it first.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
