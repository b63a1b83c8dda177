"""`tootlake dq report|check`: the data-quality report and the Great Expectations gate."""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dq", help="data quality: HTML report, Great Expectations checks (see `tootlake dq --help`)",
        description="Data quality between layers: per-batch rules (expectations/tables.py) counted into "
                    "the Delta table dq.metrics, and Great Expectations suites (expectations/suites.py).")
    sub = parser.add_subparsers(dest="dq", metavar="ACTION")
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)

    report = sub.add_parser(
        "report", help="write one self-contained HTML report (latest results, trends, quarantine)",
        description="Write an HTML page with, per table and rule, the latest result and a trend plot over "
                    "runs, the quarantine counts by rule, and a link to the Great Expectations Data Docs.")
    report.add_argument("--out", type=Path, default=None,
                        help="where to write it (default: <lake>/dq/report.html)")
    report.set_defaults(func=_report)

    check = sub.add_parser(
        "check", help="run a layer's Great Expectations suites now; exit 1 when one fails",
        description="Validate the layer's published tables (a sample of DQ_GX_SAMPLE_ROWS rows each, read "
                    "with delta-rs) against their suites, rebuild the Data Docs, record the results in "
                    "dq.metrics. Exit status: 0 all met, 1 an expectation failed, 2 a table is missing.")
    check.add_argument("--layer", required=True, choices=["bronze", "silver", "gold"])
    check.add_argument("--verbose", "-v", action="store_true",
                       help="list every expectation, not only failures")
    check.set_defaults(func=_check)


def _report(args) -> int:
    from tootlake.pipelines.quality.report import write_report
    from tootlake.pipelines.settings import load_settings

    path = write_report(load_settings(), args.out)
    print(f"dq report: {path}")
    print(f"open it: {path.resolve().as_uri()}")
    return 0


def _check(args) -> int:
    from tootlake.pipelines.quality.gx import format_validation, validate_layer
    from tootlake.pipelines.settings import load_settings

    print(f"dq check: validating the {args.layer} suites (Great Expectations, pandas samples)...", flush=True)
    outcome = validate_layer(load_settings(), args.layer)
    print(format_validation(outcome, verbose=args.verbose))
    if any(t.error for t in outcome.tables):
        print(f"dq check: a {args.layer} table is missing or unreadable: run `tootlake {args.layer}` "
              "(or `tootlake demo`) first", file=sys.stderr)
        return 2
    return 0 if outcome.success else 1
