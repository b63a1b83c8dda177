"""Gold entry point: `spark-submit pipelines/jobs/gold.py [--stream]` or `tootlake gold`."""

from __future__ import annotations

import argparse
import sys

from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines.streaming import AVAILABLE_NOW, parse_trigger


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="gold", description=__doc__)
    parser.description = (
        "Rebuild the batch gold tables from silver/posts (idempotent Delta overwrite) and print a summary, "
        "or, with --stream, run the 1-minute windowed post counts (watermark + late_events metric)."
    )
    parser.add_argument("--table", action="append", choices=sorted(BATCH_TABLES), metavar="NAME",
                        help=f"rebuild only this table (repeatable; default all): {', '.join(BATCH_TABLES)}")
    parser.add_argument("--no-summary", action="store_true", help="batch: do not print the summary")
    parser.add_argument("--stream", action="store_true",
                        help="run the streaming gold/posts_per_minute + gold/late_events instead")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="with --stream: 'available-now' (default: process what silver holds, then exit) "
                             "or an interval such as '30 seconds' (run until Ctrl-C / SIGTERM)")
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here so `--help` answers without starting the JVM.
    from tootlake.pipelines.dq import DataQualityError
    from tootlake.pipelines.dq_gx import after_job_run
    from tootlake.pipelines.gold_job import GoldInputMissing, format_summary, gold_summary, run_gold
    from tootlake.pipelines.gold_stream import run_gold_stream
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-gold-stream" if args.stream else "tootlake-gold")
    try:
        if args.stream:
            result = run_gold_stream(settings, spark, trigger=args.trigger)
            print(f"[gold] stream done: {result['posts_per_minute']} windows, "
                  f"{result['late_events']} late events")
            return 0
        counts = run_gold(settings, spark, tables=args.table)
        gold_dir = settings.path(settings.lake_dir) / "gold"
        print(f"[gold] done: {len(counts)} tables, {sum(counts.values())} rows -> {gold_dir}")
        after_job_run(settings, "gold")  # GX suites once per run
        if not args.no_summary and not args.table:
            print(format_summary(gold_summary(settings, spark)))
        return 0
    except GoldInputMissing as exc:
        print(f"[gold] {exc}", file=sys.stderr)
        return 1
    except DataQualityError as exc:
        print(f"[gold] {exc}", file=sys.stderr)
        return 3


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
