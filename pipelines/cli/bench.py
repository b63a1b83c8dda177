"""`tootlake bench <area>`: benchmarks; each area's logic lives in its own module.

Each module in BENCHES has `build_parser(parser)` and `run(args) -> int` (import it and add a line to add
a benchmark).
"""

from __future__ import annotations

from tootlake.models import bench as models_bench
from tootlake.pipelines.bench import bronze, dq, freshness, fuzz, gold, objectstore, scale, silver, sync

# (sub-command, module, one-line help)
BENCHES = (
    ("bronze", bronze, "producer, bronze ingest and plain consumer rates"),
    ("silver", silver, "silver scoring posts/s vs plain onnxruntime"),
    ("gold", gold, "gold run time on 1x/10x/100x the bundled posts"),
    ("sync", sync, "PostgreSQL upsert rows/s vs plain COPY (ratio)"),
    ("models", models_bench, "threat model posts/s per batch size, sentiment posts/s"),
    ("dq", dq, "silver/gold time with data-quality rules on vs off, one GX run"),
    ("fuzz", fuzz, "hostile records through broker, bronze, silver and sync"),
    ("freshness", freshness,
     "per-post latency Kafka -> PROCESSEDPOSTS under `tootlake run`, backlog, peak RSS, CPU"),
    ("objectstore", objectstore, "bronze and silver rows/s on an s3a:// lake vs a local lake (ratio)"),
    ("scale", scale, "one batch's silver, gold and sync time on silver of 10k / 100k / 1M posts (ratios)"),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (see `tootlake bench --help`)",
                                   description="Measure how parts of the pipeline perform.")
    bench_subparsers = parser.add_subparsers(dest="bench", metavar="BENCH")
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    for name, module, help_text in BENCHES:
        sub = bench_subparsers.add_parser(name, help=help_text)
        module.build_parser(sub)
        sub.set_defaults(func=module.run)
