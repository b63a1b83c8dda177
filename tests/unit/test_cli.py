"""The `tootlake` command's parser: every sub-command is registered and has `--help`; `--help` stays light."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tootlake.pipelines.cli import build_parser, main

COMMANDS = {"services", "produce", "producer", "bronze", "silver", "gold", "sync", "models", "demo", "bench",
            "history", "show", "diff", "restore", "sql", "db", "dq", "run", "drill", "maintain", "status"}
BENCHES = {"bronze", "silver", "gold", "sync", "models", "dq", "fuzz", "freshness", "objectstore", "scale"}
# Imported by handlers only, never to build the parser (`tootlake --help` would pay for them).
HEAVY = ("great_expectations", "matplotlib", "onnxruntime", "tokenizers", "sklearn", "torch",
         "confluent_kafka", "mastodon", "oracledb", "sqlglot", "pyspark.ml")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _every_command(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, sub in _subcommands(parser).items():
        found.append((*prefix, name))
        found.extend(_every_command(sub, (*prefix, name)))
    return found


def test_every_command_is_registered():
    parser = build_parser()
    assert set(_subcommands(parser)) == COMMANDS
    assert set(_subcommands(_subcommands(parser)["bench"])) == BENCHES


@pytest.mark.parametrize("command", _every_command(build_parser()), ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tootlake {' '.join(command)}" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "Run `tootlake COMMAND --help`" in capsys.readouterr().out


def test_help_does_not_import_the_heavy_libraries():
    code = ("import json, sys\n"
            "from tootlake.pipelines.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert "usage: tootlake" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
