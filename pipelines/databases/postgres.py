"""PostgreSQL target: COPY a batch into a temp table, then set-based newer-wins upserts, one transaction.

Per batch (one transaction, retried whole on connection loss):
  1. COPY the staging rows (text format) into the session's temp table `sync_stage`;
  2. DELETE tombstoned posts from processedposts, then from rawposts (FK order);
  3. INSERT ... SELECT DISTINCT ON (post_id) ... ON CONFLICT DO UPDATE ... WHERE newer, rawposts then
     processedposts;
  4. COMMIT. A replayed batch matches nothing newer, so it changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions

from tootlake.pipelines.databases.records import (
    PROCESSED_COLUMNS,
    RAW_COLUMNS,
    STAGE_COLUMNS,
    STAGE_NAMES,
    is_deleted,
)
from tootlake.pipelines.databases.retry import RetryPolicy, with_retry

logger = logging.getLogger(__name__)

_PG_TYPES = {
    "key": "text",
    "text": "text",
    "clob": "text",
    "bool": "boolean",
    "int": "bigint",
    "float": "double precision",
    "ts": "timestamptz",
}

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sync_stage ("
    + ", ".join(f"{name} {_PG_TYPES[kind]}" for name, kind in STAGE_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
# the DISTINCT ON sort carries whole rows: keep a batch's sort in memory (this transaction only)
WORK_MEM_SQL = "SET LOCAL work_mem = '64MB'"
COPY_SQL = f"COPY sync_stage ({', '.join(STAGE_NAMES)}) FROM STDIN"

# One row per post: the latest silver commit, then the newest updated_at, a tombstone winning a tie
# (records.latest_per_post has already kept one row per post; this only guards ON CONFLICT).
_LATEST = (
    "(SELECT DISTINCT ON (post_id) * FROM sync_stage "
    "ORDER BY post_id, source_version DESC NULLS LAST, updated_at DESC, is_deleted DESC)"
)


def newer_than_target(s: str, or_equal_clock: bool) -> str:
    """Is the staged row (alias `s`) newer than target row `t`? By silver commit when both come from the
    same silver table, else (another lake, or rows synced before versions were kept) by updated_at."""
    clock = ">=" if or_equal_clock else ">"
    return (
        f"(CASE WHEN {s}.source_version IS NOT NULL AND t.source_version IS NOT NULL "
        f"AND {s}.source_table IS NOT DISTINCT FROM t.source_table "
        f"THEN {s}.source_version > t.source_version ELSE {s}.updated_at {clock} t.updated_at END)"
    )


# A delete needs a strictly later commit: a physical delete and a re-insert in one commit (a restore
# split over two micro-batches) must not remove the re-inserted post.
DELETE_PROCESSED_SQL = (
    f"DELETE FROM processedposts AS t USING {_LATEST} AS s "
    f"WHERE s.is_deleted AND t.raw_post_id = s.post_id AND {newer_than_target('s', True)}"
)
DELETE_RAW_SQL = (
    f"DELETE FROM rawposts AS t USING {_LATEST} AS s "
    f"WHERE s.is_deleted AND t.post_id = s.post_id AND {newer_than_target('s', True)}"
)


def _upsert(table: str, key: str, columns: Sequence[str], source: Sequence[str]) -> str:
    updates = ", ".join(f"{col} = excluded.{col}" for col in [*columns, "synced_at"] if col != key)
    return (
        f"INSERT INTO {table} AS t ({', '.join(columns)}, synced_at) "
        f"SELECT {', '.join(f's.{col}' for col in source)}, now() FROM {_LATEST} AS s "
        "WHERE NOT s.is_deleted "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} "
        f"WHERE {newer_than_target('excluded', False)}"
    )


UPSERT_RAW_SQL = _upsert("rawposts", "post_id", RAW_COLUMNS, RAW_COLUMNS)
UPSERT_PROCESSED_SQL = _upsert(
    "processedposts", "raw_post_id", ["raw_post_id", *PROCESSED_COLUMNS], ["post_id", *PROCESSED_COLUMNS]
)

# --- COPY text format ------------------------------------------------------------------------------
def _escape(value: str) -> str:
    # chained str.replace runs in C; str.translate with a dict is ~10x slower on long text
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    return value


def copy_value(value: object) -> str:
    """One value in COPY text format (NULL is \\N; backslash, tab, CR, LF escaped)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)


def copy_payload(rows: Sequence[Sequence[object]]) -> bytes:
    """Rows -> a COPY text-format payload (UTF-8). Strings must already follow the text policy (no NUL)."""
    # the hot loop of the sync: NULLs and strings inline, timestamps (few distinct per batch) memoised
    stamps: dict[dt.datetime, str] = {}
    lines = []
    for row in rows:
        parts = []
        for value in row:
            if value is None:
                parts.append("\\N")
            elif value.__class__ is str:
                parts.append(_escape(value))
            elif value.__class__ is dt.datetime:
                text = stamps.get(value)
                if text is None:
                    text = stamps[value] = copy_value(value)
                parts.append(text)
            else:
                parts.append(copy_value(value))
        lines.append("\t".join(parts))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


# --- connection handling ---------------------------------------------------------------------------
def describe_conninfo(conninfo: str) -> str:
    """host:port/dbname of a libpq string, for messages (never the password)."""
    try:
        parts = psycopg2.extensions.parse_dsn(conninfo)
    except psycopg2.ProgrammingError:
        return "PostgreSQL"
    host, port = parts.get("host", "localhost"), parts.get("port", "5432")
    return f"PostgreSQL at {host}:{port}/{parts.get('dbname', '')}"


def is_connection_error(exc: BaseException) -> bool:
    """psycopg2 reports a lost or refused connection as OperationalError / InterfaceError."""
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError):
        # OperationalError also covers e.g. a cancelled statement; connection loss has no SQLSTATE
        # or one of class 08 (connection exception) / 57P01-57P03 (server shutting down / starting).
        code = getattr(exc, "pgcode", None)
        return code is None or code.startswith("08") or code in {"57P01", "57P02", "57P03"}
    return False


@dataclass
class BatchCounts:
    staged: int = 0
    raw_upserted: int = 0
    processed_upserted: int = 0
    processed_deleted: int = 0
    raw_deleted: int = 0

    def add(self, other: BatchCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PostgresTarget:
    """Writes staging rows (records.stage_rows) to rawposts/processedposts; keeps one connection."""

    conninfo: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: Callable[[str], None] = logger.info
    sleep: Callable[[float], None] = time.sleep
    connect_timeout_s: int = 5
    name: str = "postgres"
    _conn: psycopg2.extensions.connection | None = field(default=None, init=False, repr=False)

    def connect(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(
                self.conninfo, connect_timeout=self.connect_timeout_s, application_name="tootlake-sync"
            )
            self._conn.set_client_encoding("UTF8")
            with self._conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute(STAGE_DDL)
            self._conn.commit()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):  # the connection may be gone already
                self._conn.close()
            self._conn = None

    def _write_once(self, rows: Sequence[tuple], payload: bytes | None = None) -> BatchCounts:
        """One transaction; `payload` = copy_payload(rows) when the caller has it already (the benchmark)."""
        conn = self.connect()
        counts = BatchCounts(staged=len(rows))
        try:
            with conn.cursor() as cur:
                cur.execute(WORK_MEM_SQL)
                cur.copy_expert(COPY_SQL, io.BytesIO(copy_payload(rows) if payload is None else payload))
                if any(is_deleted(row) for row in rows):  # most batches have no tombstone: skip two scans
                    cur.execute(DELETE_PROCESSED_SQL)
                    counts.processed_deleted = cur.rowcount
                    cur.execute(DELETE_RAW_SQL)
                    counts.raw_deleted = cur.rowcount
                cur.execute(UPSERT_RAW_SQL)
                counts.raw_upserted = cur.rowcount
                cur.execute(UPSERT_PROCESSED_SQL)
                counts.processed_upserted = cur.rowcount
            conn.commit()
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):  # the connection may be gone already
                    conn.rollback()
            raise
        return counts

    def write_batch(self, rows: Sequence[tuple]) -> BatchCounts:
        """Apply one batch of staging rows in one transaction; retried whole on connection loss."""
        if not rows:
            return BatchCounts()
        return with_retry(
            lambda: self._write_once(rows),
            is_connection_error,
            self.retry,
            what=f"sync to {describe_conninfo(self.conninfo)}",
            on_retry=self.close,
            log=self.log,
            sleep=self.sleep,
        )

    def table_counts(self) -> dict[str, int]:
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM rawposts), (SELECT count(*) FROM processedposts)")
            raw, processed = cur.fetchone()
        conn.commit()
        return {"rawposts": raw, "processedposts": processed}
