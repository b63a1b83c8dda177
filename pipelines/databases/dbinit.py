"""Apply the numbered SQL scripts in sql/postgres or sql/oracle (`tootlake db init`).

PostgreSQL scripts are idempotent by themselves (IF NOT EXISTS, ON CONFLICT, DO blocks): each file runs
as one transaction. Oracle has no IF NOT EXISTS before 23ai, so its scripts are plain statements (they
also parse with sqlglot) and this runner makes them idempotent: it skips a statement that fails only
because its object already exists (ORA_ALREADY_EXISTS). Seeds are MERGEs; GRANTs can be repeated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# ORA-00955 name already used, ORA-01408 column list already indexed, ORA-01430 column exists,
# ORA-01920 user exists, ORA-01921 role exists, ORA-02260/02261 primary/unique key exists,
# ORA-02264 constraint name exists, ORA-02275 referential constraint exists.
ORA_ALREADY_EXISTS = {955, 1408, 1430, 1920, 1921, 2260, 2261, 2264, 2275}


def script_files(target: str, sql_dir: Path = SQL_DIR) -> list[Path]:
    files = sorted((sql_dir / target).glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no SQL scripts in {sql_dir / target}")
    return files


def split_statements(text: str) -> list[str]:
    """Split a script on `;` outside quotes and comments; comments are dropped (Oracle rejects `;`)."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:  # doubled quote inside a literal
                        end += 2
                        continue
                    break
                end += 1
            current.append(text[i : end + 1])
            i = end + 1
            continue
        if ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return [re.sub(r"[ \t]+\n", "\n", s) for s in statements]


def oracle_statements(sql_dir: Path = SQL_DIR) -> Iterator[tuple[Path, str]]:
    for path in script_files("oracle", sql_dir):
        for statement in split_statements(path.read_text(encoding="utf-8")):
            yield path, statement


def init_postgres(conninfo: str, log: Callable[[str], None] = print, sql_dir: Path = SQL_DIR) -> int:
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


def init_oracle(connection, log: Callable[[str], None] = print, sql_dir: Path = SQL_DIR) -> int:
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
