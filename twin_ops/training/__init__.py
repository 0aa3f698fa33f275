"""Fine-tuning: LoRA SFT on the instruction dataset, then DPO on the preference dataset.

``train.py`` is the whole recipe (a config object plus a trainer call); ``base_model`` finds and
loads the base model; ``artifacts`` writes what a run leaves behind; ``container`` runs the same
entrypoint (``python -m twin_ops.training``) in a Docker container. Nothing heavy is imported here,
so the CLI and DAG files can import the package for free.
"""

STAGES = ("sft", "dpo")
