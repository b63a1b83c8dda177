"""`tootlake bronze|silver|gold|sync`: the same entry points that spark-submit runs.

Each job module in pipelines/jobs has `build_parser(parser)`, `run(args) -> int` and `main(argv)`.
"""

from __future__ import annotations

from tootlake.pipelines.jobs import bronze, gold, silver, sync

# (command, entry-point module, one-line help)
LAYER_JOBS = (
    ("bronze", bronze, "Kafka -> Delta bronze/posts_raw"),
    ("silver", silver, "bronze/posts_raw -> silver/posts + quarantine, scored"),
    ("gold", gold, "silver/posts -> Delta gold tables (batch, or --stream)"),
    ("sync", sync, "silver/posts + gold -> PostgreSQL / Oracle (newer wins)"),
)


def register(subparsers) -> None:
    for command, module, help_text in LAYER_JOBS:
        parser = subparsers.add_parser(command, help=help_text)
        module.build_parser(parser)
        parser.set_defaults(func=module.run)
