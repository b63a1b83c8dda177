"""`tootlake bench <area>`: benchmarks; each area's logic lives in its own module.

Each module in BENCHES has `build_parser(parser)` and `run(args) -> int` (add a line to add a benchmark).
"""

from __future__ import annotations

import importlib

# (sub-command, module, one-line help)
BENCHES = [
    ("bronze", "tootlake.pipelines.bench.bronze", "producer, bronze ingest and plain consumer rates"),
    ("silver", "tootlake.pipelines.bench.silver", "silver scoring posts/s vs plain onnxruntime"),
    ("gold", "tootlake.pipelines.bench.gold", "gold run time on 1x/10x/100x the bundled posts"),
    ("sync", "tootlake.pipelines.bench.sync", "PostgreSQL upsert rows/s vs plain COPY (ratio)"),
    ("models", "tootlake.models.bench", "threat model posts/s per batch size, sentiment posts/s"),
    ("dq", "tootlake.pipelines.bench.dq", "silver/gold time with data-quality rules on vs off, one GX run"),
    ("fuzz", "tootlake.pipelines.bench.fuzz", "hostile records through broker, bronze, silver and sync"),
    ("freshness", "tootlake.pipelines.bench.freshness",
     "per-post latency Kafka -> PROCESSEDPOSTS under `tootlake run`, backlog, peak RSS, CPU"),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (see `tootlake bench --help`)",
                                   description="Measure how parts of the pipeline perform.")
    bench_subparsers = parser.add_subparsers(dest="bench", metavar="BENCH")
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    for name, module_name, help_text in BENCHES:
        module = importlib.import_module(module_name)
        sub = bench_subparsers.add_parser(name, help=help_text)
        module.build_parser(sub)
        sub.set_defaults(func=module.run)
