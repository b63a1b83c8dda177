"""The `tootlake` command: one sub-command per area, each defined in its own module.

Each module in COMMANDS has `register(subparsers)`, which adds its parser(s) and sets `func(args) -> int`
as the default handler. The modules import their heavy dependencies inside their handlers, so
`tootlake --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys

from tootlake.pipelines.cli import (
    analysis,
    bench,
    db,
    demo,
    dq,
    layers,
    maintain,
    models,
    produce,
    run,
    services,
    status,
)
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.settings import SettingsError

# In `tootlake --help` order.
COMMANDS = (services, produce, layers, models, demo, bench, analysis, db, dq, run, maintain, status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tootlake",
        description="A Delta Lake lakehouse for Mastodon posts. Run `tootlake COMMAND --help` for details.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging()
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tootlake: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tootlake: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The process entry point (the `tootlake` script, `python -m tootlake.pipelines.cli`)."""
    from tootlake.pipelines.storage import exit_process

    exit_process(main())


if __name__ == "__main__":
    entry()
