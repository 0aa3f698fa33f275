"""`python -m twin_ops.training --stage sft|dpo --author <id> [--set section.key=value]...`

The training containers' entrypoint (and a way to train without the CLI): one stage as a local
process, whatever ``training.runner`` says — this process IS the runner. It imports neither the CLI
nor typer: a training image needs the library and its ML stack only. Progress is one log line per
step; a TwinOpsError exits with its exit_code and its message, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from twin_ops.training import STAGES, passive_cpu_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin_ops.training", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--author", required=True, help="Author id.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    passive_cpu_threads()  # before anything imports torch
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    log = logging.getLogger("twin_ops.training")

    from twin_ops.config import load_params, resolve_paths
    from twin_ops.errors import TwinOpsError
    from twin_ops.training.train import train

    try:
        params = load_params(overrides=args.overrides)
        paths = resolve_paths(params)
        train(args.stage, args.author, params, paths, report=lambda step: log.info(step.line()), log=log.info)
    except TwinOpsError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
