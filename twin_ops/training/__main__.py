"""`python -m twin_ops.training --stage sft|dpo --author <id> [--set key=value]...`

The same command as `twin-ops train` (the container images use this form as their entrypoint).
"""

from __future__ import annotations

import sys

from twin_ops.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="python -m twin_ops.training")
