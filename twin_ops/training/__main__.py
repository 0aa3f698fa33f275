"""`python -m twin_ops.training --stage sft|dpo --author <id> [--set key=value]...`

The same command as `twin-ops train` (the container images use this form as their entrypoint).
"""

from __future__ import annotations

import sys

from twin_ops.training import passive_cpu_threads

if __name__ == "__main__":
    passive_cpu_threads()  # before anything imports torch
    from twin_ops.cli import app

    app(["train", *sys.argv[1:]], prog_name="python -m twin_ops.training")
