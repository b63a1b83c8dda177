"""`tootlake db init --target postgres|oracle`: create the sync tables (idempotent SQL scripts in sql/)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="database set-up for the sync targets")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    init = db_sub.add_parser(
        "init",
        help="apply sql/<target>/*.sql in order (idempotent)",
        description="Create PLATFORMS (seeded), RAWPOSTS, PROCESSEDPOSTS, the gold schema and roles. "
                    "Safe to run again. PostgreSQL: POSTGRES_DSN or the embedded server "
                    "(`tootlake services up`). "
                    "Oracle: ORACLE_DSN / ORACLE_USER / ORACLE_PASSWORD / ORACLE_WALLET_DIR.",
    )
    init.add_argument("--target", choices=["postgres", "oracle", "all"], default="postgres")
    init.set_defaults(func=init_command)
    db.set_defaults(func=lambda args: (db.print_help(), 2)[1])


def init_command(args) -> int:
    from tootlake.pipelines.databases import dbinit
    from tootlake.pipelines.settings import load_settings

    settings = load_settings()
    if args.target in ("postgres", "all"):
        import psycopg2

        try:
            dbinit.init_postgres(settings.postgres_conninfo())
        except psycopg2.OperationalError as exc:
            print(f"[db init] cannot reach PostgreSQL ({str(exc).strip().splitlines()[0]}): start it with "
                  "`tootlake services up` or check POSTGRES_DSN", file=sys.stderr)
            return 1
    if args.target in ("oracle", "all"):
        from tootlake.pipelines.databases.oracle import connect_from_settings

        try:
            connection = connect_from_settings(settings)
        except RuntimeError as exc:
            print(f"[db init] {exc}", file=sys.stderr)
            return 1
        try:
            dbinit.init_oracle(connection)
        finally:
            connection.close()
    return 0
