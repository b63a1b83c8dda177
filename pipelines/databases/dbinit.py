"""Apply the numbered SQL scripts in sql/postgres or sql/oracle (`tootlake db init`).

PostgreSQL scripts are idempotent by themselves (IF NOT EXISTS, ON CONFLICT, DO blocks): each file runs
as one transaction. Oracle has no IF NOT EXISTS before 23ai, so its scripts are plain statements (they
also parse with sqlglot) and this runner makes them idempotent: it skips a statement that fails only
because its object already exists (ORA_ALREADY_EXISTS). Seeds are MERGEs; GRANTs can be repeated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlparse

from tootlake.package_data import package_path

logger = logging.getLogger(__name__)

SQL_DIR = package_path("tootlake.sql")  # sql/ of the checkout, shipped as package data

# ORA-00955 name already used, ORA-01408 column list already indexed, ORA-01430 column exists,
# ORA-01920 user exists, ORA-01921 role exists, ORA-02260/02261 primary/unique key exists,
# ORA-02264 constraint name exists, ORA-02275 referential constraint exists.
ORA_ALREADY_EXISTS = {955, 1408, 1430, 1920, 1921, 2260, 2261, 2264, 2275}


def script_files(target: str, sql_dir: Path = SQL_DIR) -> list[Path]:
    files = sorted((sql_dir / target).glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no SQL scripts in {sql_dir / target}")
    return files


# A PL/SQL block keeps the `;` after its END (Oracle needs it there); a SQL statement must not end with one.
_PLSQL_BLOCK = re.compile(r"(DECLARE|BEGIN|CREATE\s+(OR\s+REPLACE\s+)?((NON)?EDITIONABLE\s+)?"
                          r"(PROCEDURE|FUNCTION|PACKAGE|TRIGGER|TYPE\s+BODY))\b", re.IGNORECASE)


def split_statements(text: str) -> list[str]:
    """Split a script into statements (sqlparse: `;` outside quotes, comments and PL/SQL blocks); comments
    are dropped, and so are the `;` after a SQL statement (Oracle rejects it) and SQL*Plus's `/` lines
    after a PL/SQL block."""
    statements: list[str] = []
    for chunk in sqlparse.split(sqlparse.format(text, strip_comments=True), strip_semicolon=False):
        statement = re.sub(r"\A/[ \t]*(\n|\Z)", "", chunk.strip()).strip()  # a `/` ends the block before
        if not _PLSQL_BLOCK.match(statement):
            statement = statement.removesuffix(";").rstrip()
        if statement and statement != "/":
            statements.append(re.sub(r"[ \t]+\n", "\n", statement))
    return statements


def oracle_statements(sql_dir: Path = SQL_DIR) -> Iterator[tuple[Path, str]]:
    for path in script_files("oracle", sql_dir):
        for statement in split_statements(path.read_text(encoding="utf-8")):
            yield path, statement


def init_postgres(conninfo: str, log: Callable[[str], None] = logger.info, sql_dir: Path = SQL_DIR) -> int:
    import psycopg2

    conn = psycopg2.connect(conninfo, connect_timeout=10, application_name="tootlake-db-init")
    try:
        for path in script_files("postgres", sql_dir):
            with conn.cursor() as cur:
                cur.execute(path.read_text(encoding="utf-8"))
            conn.commit()
            log(f"[db init] postgres: applied {path.name}")
    finally:
        conn.close()
    return len(script_files("postgres", sql_dir))


def init_oracle(connection, log: Callable[[str], None] = logger.info, sql_dir: Path = SQL_DIR) -> int:
    """Run every Oracle statement on an open python-oracledb connection; returns how many ran."""
    import oracledb

    ran = 0
    cursor = connection.cursor()
    for path, statement in oracle_statements(sql_dir):
        try:
            cursor.execute(statement)
            ran += 1
        except oracledb.DatabaseError as exc:
            code = getattr(exc.args[0], "code", None) if exc.args else None
            if code in ORA_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"{path.name}: {str(exc).splitlines()[0]} in: {statement[:80]}...") from exc
    connection.commit()
    log(f"[db init] oracle: {ran} statements applied (existing objects kept)")
    return ran
