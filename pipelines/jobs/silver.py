"""Silver entry point: `spark-submit pipelines/jobs/silver.py` or `tootlake silver`."""

from __future__ import annotations

import argparse
import json
import sys

from tootlake.pipelines.streaming import AVAILABLE_NOW, parse_trigger


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="silver", description=__doc__)
    parser.description = ("Stream bronze/posts_raw into silver/posts (parse, quarantine, UTC timestamps, "
                          "latest edit wins, threat + sentiment scores) and silver/posts_quarantine.")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: process what bronze holds, then exit) or an interval "
                             "such as '30 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-files-per-trigger", type=int, default=None,
                        help="cap on bronze files per micro-batch (smaller, more frequent batches)")
    parser.add_argument("--no-scoring", action="store_true",
                        help="skip the models (rows get processing_status FAILED; scored when seen again)")
    parser.add_argument("--summary", action="store_true",
                        help="print the silver/quarantine summary at the end")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.models.sentiment import SentimentModelError
    from tootlake.models.threat import ModelLoadError
    from tootlake.pipelines.dq import DataQualityError
    from tootlake.pipelines.dq_gx import after_job_run
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.silver_job import SilverError, format_summary, run_silver, silver_summary
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-silver")
    try:
        report = run_silver(settings, spark, args.trigger, scorer=None if args.no_scoring else "models",
                            max_files_per_trigger=args.max_files_per_trigger)
    except (SilverError, ModelLoadError, SentimentModelError) as exc:
        print(f"[silver] {exc}", file=sys.stderr)
        return 2
    except DataQualityError as exc:
        print(f"[silver] {exc}", file=sys.stderr)
        return 3
    print("[silver] done: " + json.dumps(report))
    after_job_run(settings, "silver", report.get("dq_run_id"))  # GX suites once per run, not per batch
    if args.summary:
        print(format_summary(silver_summary(spark, settings)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
