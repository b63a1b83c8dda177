"""Bronze entry point: `spark-submit pipelines/jobs/bronze.py` or `tootlake bronze`."""

from __future__ import annotations

import argparse
import sys

from tootlake.pipelines.streaming import AVAILABLE_NOW, parse_trigger


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bronze", description=__doc__)
    parser.description = "Stream the Kafka topic into the Delta table bronze/posts_raw (exactly once)."
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], default="earliest",
                        help="where a NEW checkpoint starts reading; ignored once the checkpoint exists")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: read what is there, then exit) or an interval "
                             "such as '10 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None,
                        help="cap on Kafka records per micro-batch")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.bronze_job import run_bronze
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-bronze")
    report = run_bronze(spark, settings, args.starting_offsets, args.trigger, args.max_offsets_per_trigger)
    print(f"[bronze] done: {report.rows} rows in {report.batches} batches, {report.elapsed_s:.1f} s "
          f"-> {settings.table_path('bronze.posts_raw')}")
    from tootlake.pipelines.dq_gx import after_job_run

    after_job_run(settings, "bronze")  # GX suite once per run (bronze has no per-batch hook)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
