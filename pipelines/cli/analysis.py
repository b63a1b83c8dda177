"""`tootlake history|show|diff|restore|sql`: Delta time travel and DuckDB over the lake, by logical name.

All of them read the tables with delta-rs (no Spark, no JVM), so they answer in about a second.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from tootlake.pipelines import lake
from tootlake.pipelines.settings import load_settings

FORMATS = ("table", "csv", "json")
_MAX_CELL = 60  # characters per cell in table output (long texts are cut)


def _plain(value: object) -> object:
    """A JSON-friendly value: datetimes/dates as ISO strings, decimals as strings, containers recursively."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _cell(value: object) -> str:
    if value is None:
        return ""
    plain = _plain(value)
    if isinstance(plain, list | dict):
        return json.dumps(plain, ensure_ascii=False)
    return str(plain)


def render(table: pa.Table, fmt: str = "table", max_cell: int | None = _MAX_CELL) -> str:
    """An Arrow table as an aligned text table (cells cut at `max_cell`), CSV or JSON lines (one per row)."""
    rows = table.to_pylist()
    if fmt == "json":
        return "".join(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False) + "\n"
                       for row in rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([_cell(row[name]) for name in table.column_names] for row in rows)
        return buffer.getvalue()
    if not table.num_columns:
        return "(no result)\n"

    def short(text: str) -> str:
        text = text.replace("\n", " ")
        return text if max_cell is None or len(text) <= max_cell else text[: max_cell - 1] + "…"

    names = table.column_names
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in table.schema.types]
    cells = [[short(_cell(row[name])) for name in names] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(names)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)] + [line(c) for c in cells]
    if not rows:
        out.append("(no rows)")
    return "\n".join(out) + "\n"


def _info(fmt: str, message: str) -> None:
    # Keep csv/json on stdout clean for pipes; the context line goes to stderr then.
    print(message, file=sys.stdout if fmt == "table" else sys.stderr, flush=True)


def _cmd_history(args: argparse.Namespace) -> int:
    settings = load_settings()
    commits = lake.history(settings, args.table, args.limit)
    table = pa.table({
        "version": [c.version for c in commits],
        "when_utc": [c.at.strftime("%Y-%m-%d %H:%M:%S") for c in commits],
        "operation": [c.operation for c in commits],
        "rows_written": pa.array([c.rows_written for c in commits], pa.int64()),
        "details": [c.details for c in commits],
    })
    _info(args.format, f"{args.table}: {len(commits)} version(s), newest first")
    sys.stdout.write(render(table, args.format))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    delta = lake.open_table(settings, args.table, args.as_of)
    dataset = delta.to_pyarrow_dataset()
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    unknown = sorted(set(columns or []) - set(dataset.schema.names))
    if unknown:
        print(f"tootlake show: unknown column(s) {unknown}; columns: {', '.join(dataset.schema.names)}",
              file=sys.stderr)
        return 2
    rows = dataset.head(args.limit, columns=columns)
    _info(args.format, f"{args.table} @ version {delta.version()}: {dataset.count_rows()} rows, "
                       f"showing {rows.num_rows}")
    sys.stdout.write(render(rows, args.format))
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    settings = load_settings()
    result = lake.diff(settings, args.table, args.from_version, args.to_version)
    key = ", ".join(result.key) if result.key else "whole row (no key known for this table)"
    counts = result.counts
    print(f"{result.name} version {result.from_version} -> {result.to_version} (key: {key})")
    print(f"added {counts['added']}, changed {counts['changed']}, removed {counts['removed']}")
    if result.changed_columns:
        print("changed columns: " + ", ".join(f"{c} ({n})" for c, n in result.changed_columns.items()))
    for label, rows in (("added", result.added), ("changed", result.changed), ("removed", result.removed)):
        if rows.num_rows and args.rows:
            shown = rows.select(list(result.key)) if result.key else rows
            print(f"\n{label} (first {min(args.rows, rows.num_rows)}):")
            sys.stdout.write(render(shown.slice(0, args.rows), max_cell=None if result.key else _MAX_CELL))
    return 0


def _confirm(prompt: str) -> bool:
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _cmd_restore(args: argparse.Namespace) -> int:
    settings = load_settings()
    current = lake.open_table(settings, args.table).version()
    target = lake.open_table(settings, args.table, args.to).version()
    if target == current:
        print(f"{args.table} is at version {current} already: nothing to restore")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"tootlake restore: refusing to restore {args.table} without confirmation (no terminal to "
                  "ask on); re-run with --yes", file=sys.stderr)
            return 2
        if not _confirm(f"Restore {args.table} (now version {current}) to the content of version {target}? "
                        f"This writes version {current + 1}. [y/N] "):
            print("not restored", file=sys.stderr)
            return 1
    metrics = lake.restore(settings, args.table, args.to)
    after = lake.open_table(settings, args.table).version()
    restored, removed = metrics.get("numRestoredFile", "?"), metrics.get("numRemovedFile", "?")
    files = f"files restored {restored}, removed {removed}"
    print(f"{args.table}: restored to the content of version {target} as version {after} ({files}); "
          f"undo with `tootlake restore {args.table} --to {current}`")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    if bool(args.query) == bool(args.file):
        print("tootlake sql: give a query or --file FILE (one of them)", file=sys.stderr)
        return 2
    text = args.query or Path(args.file).read_text(encoding="utf-8")
    settings = load_settings()
    pins = lake.parse_as_of_pins(args.as_of)
    try:
        result = lake.query(settings, text, pins)
    except duckdb.Error as exc:
        names = ", ".join(lake.list_tables(settings)) or "(none yet)"
        print(f"tootlake sql: {exc}\ntables: {names}", file=sys.stderr)
        return 1
    sys.stdout.write(render(result, args.format))
    return 0


def _guard(handler):
    """Turn a LakeError (unknown table / version) into a one-line message and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except lake.LakeError as exc:
            print(f"tootlake {args.command}: {exc}", file=sys.stderr)
            return 2

    return run


def register(subparsers) -> None:
    table_help = "logical table name, e.g. silver.posts (a wrong name lists the tables in the lake)"

    p = subparsers.add_parser("history", help="versions of a Delta table: operation, rows written, when")
    p.add_argument("table", help=table_help)
    p.add_argument("--limit", type=int, default=None, help="newest N versions only")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=_guard(_cmd_history))

    p = subparsers.add_parser("show", help="rows of a Delta table, now or as of a version / timestamp")
    p.add_argument("table", help=table_help)
    p.add_argument("--as-of", default=None, metavar="VERSION|TIMESTAMP",
                   help="a version number or an ISO timestamp (UTC unless a zone is given); default: latest")
    p.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    p.add_argument("--columns", default=None, help="comma-separated columns to print (default: all)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=_guard(_cmd_show))

    p = subparsers.add_parser("diff", help="rows added / changed / removed between two versions, by key")
    p.add_argument("table", help=table_help)
    p.add_argument("--from", dest="from_version", required=True, metavar="V1", help="version or timestamp")
    p.add_argument("--to", dest="to_version", required=True, metavar="V2", help="version or timestamp")
    p.add_argument("--rows", type=int, default=5, help="keys to print per kind of change (0: none)")
    p.set_defaults(func=_guard(_cmd_diff))

    p = subparsers.add_parser("restore", help="make an old version the current content (a new version)")
    p.add_argument("table", help=table_help)
    p.add_argument("--to", required=True, metavar="VERSION|TIMESTAMP", help="the version to bring back")
    p.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    p.set_defaults(func=_guard(_cmd_restore))

    p = subparsers.add_parser("sql", help="DuckDB SQL over the lake; tables by name, e.g. silver.posts")
    p.add_argument("query", nargs="?", help='e.g. "SELECT language, count(*) FROM silver.posts GROUP BY 1"')
    p.add_argument("--file", help="run the statement in this file (e.g. sql/duckdb/020_top_hashtags.sql)")
    p.add_argument("--as-of", action="append", metavar="TABLE=VERSION",
                   help="read TABLE at a version or timestamp (repeatable), e.g. silver.posts=3")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=_guard(_cmd_sql))
