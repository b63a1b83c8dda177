"""`tootlake status [--json]`: one screen answering "is it healthy?" (logic in pipelines/ops/status.py)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "status", help="is it healthy? services, stages, Kafka lag, tables, quarantine, DQ (no JVM)",
        description="Services up, per-stage last batch (from the stream checkpoints and stage logs) and the "
                    "supervisor's state when `tootlake run` runs, Kafka consumer lag per partition (end "
                    "offsets vs bronze's committed offsets), Delta version and rows per table, quarantine "
                    "rows per rule, the last data-quality run. Works when services are down (says so). "
                    "Exit 0 when healthy, 1 when not.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=_status)


def _status(args) -> int:
    from tootlake.pipelines.ops.status import collect_status, format_status
    from tootlake.pipelines.settings import load_settings

    status = collect_status(load_settings())
    print(json.dumps(status, indent=1, default=str) if args.json else format_status(status))
    return 0 if status["healthy"] else 1
