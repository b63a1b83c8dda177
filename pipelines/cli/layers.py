"""`tootlake bronze|silver|gold|sync`: the same entry points that spark-submit runs.

Each job module in pipelines/jobs has `build_parser(parser)`, `run(args) -> int` and `main(argv)`.
"""

from __future__ import annotations

import importlib

# (command, entry-point module, one-line help)
LAYER_JOBS = [
    ("bronze", "tootlake.pipelines.jobs.bronze", "Kafka -> Delta bronze/posts_raw"),
    ("silver", "tootlake.pipelines.jobs.silver", "bronze/posts_raw -> silver/posts + quarantine, scored"),
    ("gold", "tootlake.pipelines.jobs.gold", "silver/posts -> Delta gold tables (batch, or --stream)"),
    ("sync", "tootlake.pipelines.jobs.sync", "silver/posts + gold -> PostgreSQL / Oracle (newer wins)"),
]


def register(subparsers) -> None:
    for command, module_name, help_text in LAYER_JOBS:
        module = importlib.import_module(module_name)
        parser = subparsers.add_parser(command, help=help_text)
        module.build_parser(parser)
        parser.set_defaults(func=module.run)
