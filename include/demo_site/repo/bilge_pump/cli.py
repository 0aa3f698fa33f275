"""Command line for bilge-pump.

    bilge-pump survey --queue jobs.json
    bilge-pump pump   --queue jobs.json --stale-after 600 --dry-run
    bilge-pump pump   --queue jobs.json --watch 60

Exit codes: 0 bilge dry enough, 1 jobs were pumped, 2 refused (too many stuck at once).
"""

from __future__ import annotations

import argparse
import sys
import time

from bilge_pump.pump import FileQueue, Pump


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilge-pump", description="Pump out stuck jobs.")
    parser.add_argument("command", choices=["survey", "pump"], help="look, or look and act")
    parser.add_argument("--queue", required=True, help="path to the JSON queue file")
    parser.add_argument("--stale-after", type=float, default=900.0,
                        help="seconds without a heartbeat before a job is stuck (default 900)")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--max-per-run", type=int, default=50)
    parser.add_argument("--dry-run", action="store_true", help="say what would happen, do nothing")
    parser.add_argument("--watch", type=float, metavar="SECONDS",
                        help="repeat every SECONDS until interrupted")
    return parser


def run_once(args: argparse.Namespace) -> int:
    pump = Pump(FileQueue(args.queue), stale_after=args.stale_after,
                max_attempts=args.max_attempts, max_per_run=args.max_per_run)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        if args.command == "survey":
            verdicts = pump.survey()
        else:
            verdicts = pump.pump(dry_run=args.dry_run)
    except RuntimeError as exc:
        print(f"{stamp} refused: {exc}", file=sys.stderr)
        return 2
    for v in verdicts:
        print(f"{stamp} {v.action:<8} {v.job_id:<24} {v.reason}")
    acted = [v for v in verdicts if v.action != "leave"]
    if not verdicts:
        print(f"{stamp} bilge dry: no running jobs")
    return 1 if acted else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.watch is None:
        return run_once(args)
    try:
        while True:
            run_once(args)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
