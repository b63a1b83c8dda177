"""Sync entry point: `spark-submit pipelines/jobs/sync.py` or `tootlake sync`."""

from __future__ import annotations

import argparse
import json
import sys

from tootlake.pipelines.streaming import AVAILABLE_NOW, parse_trigger


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="sync", description=__doc__)
    parser.description = (
        "Upsert silver/posts into RAWPOSTS and PROCESSEDPOSTS (newer wins, deletes followed) in PostgreSQL "
        "and/or Oracle, then copy the gold tables to PostgreSQL. Run `tootlake db init` once before."
    )
    parser.add_argument("--target", choices=["postgres", "oracle", "all"], default="postgres",
                        help="where to sync (default: postgres); each choice keeps its own checkpoint")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: sync what is there, then exit) or an interval "
                             "such as '5 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-files-per-trigger", type=int, default=None,
                        help="cap on silver files per micro-batch (smaller transactions)")
    parser.add_argument("--no-gold", action="store_true", help="skip copying the gold tables to PostgreSQL")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark
    from tootlake.pipelines.sync.retry import SyncError
    from tootlake.pipelines.sync.runner import run_sync

    settings = load_settings()
    spark = build_spark(settings, f"tootlake-sync-{args.target}")
    try:
        result = run_sync(settings, spark, args.target, args.trigger, args.max_files_per_trigger,
                          copy_gold=not args.no_gold)
    except SyncError as exc:
        print(f"[sync] FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"[sync] done: {json.dumps(result, default=str)}")
    from tootlake.pipelines.dq_gx import after_job_run

    after_job_run(settings, "silver")  # what sync published came from silver: its suites, once per run
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
