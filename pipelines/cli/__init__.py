"""The `tootlake` command: one sub-command per area, each defined in its own module.

Each module listed in COMMAND_MODULES has `register(subparsers)`, which adds its parser(s) and sets
`func(args) -> int` as the default handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tootlake.pipelines.settings import SettingsError

COMMAND_MODULES = [
    "tootlake.pipelines.cli.services",
    "tootlake.pipelines.cli.produce",
    "tootlake.pipelines.cli.layers",
    "tootlake.pipelines.cli.models",
    "tootlake.pipelines.cli.demo",
    "tootlake.pipelines.cli.bench",
    "tootlake.pipelines.cli.analysis",
    "tootlake.pipelines.cli.db",
    "tootlake.pipelines.cli.dq",
    "tootlake.pipelines.cli.run",
    "tootlake.pipelines.cli.status",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tootlake",
        description="A Delta Lake lakehouse for Mastodon posts. Run `tootlake COMMAND --help` for details.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tootlake: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tootlake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
