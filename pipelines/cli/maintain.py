"""`tootlake maintain`: compaction, retention, VACUUM, tombstone expiry (see pipelines/ops/maintain.py)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "maintain", help="compact small files, VACUUM old ones, expire never-seen tombstones",
        description="For every table of the lake (or --table): OPTIMIZE into files of about "
                    "MAINTAIN_TARGET_FILE_MB, set the log and deleted-file retention properties, VACUUM "
                    "files older than MAINTAIN_VACUUM_RETAIN_HOURS (the time-travel window), and on "
                    "silver/posts remove tombstones of posts never seen, older than MAINTAIN_TOMBSTONE_DAYS. "
                    "Prints files per table and their median size before and after. `tootlake run` does this "
                    "every MAINTAIN_EVERY_S seconds. Safe beside running jobs: a writer that loses a race "
                    "retries.",
    )
    parser.add_argument("--table", dest="tables", action="append", metavar="LAYER.TABLE",
                        help="only this table (repeatable), e.g. silver.posts")
    parser.add_argument("--no-vacuum", action="store_true", help="compact, but delete no old files")
    parser.add_argument("--json", action="store_true", help="print the per-table results as JSON")
    parser.set_defaults(func=_maintain)


def _maintain(args) -> int:
    from tootlake.pipelines.lake import list_tables
    from tootlake.pipelines.ops.maintain import maintain
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    known = list_tables(settings)
    unknown = [t for t in args.tables or [] if t not in known]
    if unknown:
        print(f"[maintain] no such table: {', '.join(unknown)}; the lake has: {', '.join(known) or 'none'}")
        return 2
    spark = build_spark(settings, "tootlake-maintain")
    results = maintain(spark, settings, args.tables, vacuum=not args.no_vacuum,
                       log=lambda line: print(line, flush=True))
    if args.json:
        print(json.dumps(results, indent=1))
    return 1 if any("error" in r for r in results) else 0
