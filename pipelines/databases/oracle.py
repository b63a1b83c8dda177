"""Oracle target (python-oracledb, thin mode): executemany into SYNC_STAGE, then one MERGE per table.

Per batch, one transaction (retried whole on connection loss):
  1. executemany INSERT into the global temporary table SYNC_STAGE (ON COMMIT DELETE ROWS);
  2. DELETE tombstoned posts from PROCESSEDPOSTS, then RAWPOSTS (FK order);
  3. MERGE INTO RAWPOSTS, then MERGE INTO PROCESSEDPOSTS, each from SYNC_STAGE deduplicated on the key
     (ROW_NUMBER ... = 1; a MERGE refuses two source rows per target row, ORA-30926), updating only when the
     incoming row is newer: a later silver commit (SOURCE_VERSION, the change feed's _commit_version) of
     the same silver table (SOURCE_TABLE), else a later UPDATED_AT (records.py, "Order");
  4. COMMIT.
Timestamps are bound as UTC without zone (TIMESTAMP columns), booleans as 0/1. Oracle stores '' as NULL.
A value longer than its VARCHAR2 column is never cut: `check_rows` returns such rows as RejectedRow
("too_long:<column>") for the caller's quarantine, and write_batch refuses a batch that holds one
(RowsRejected) before the database sees it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tootlake.pipelines.databases.postgres import BatchCounts
from tootlake.pipelines.databases.records import PROCESSED_COLUMNS, RAW_COLUMNS, STAGE_COLUMNS, STAGE_NAMES
from tootlake.pipelines.databases.retry import RetryPolicy, with_retry

logger = logging.getLogger(__name__)

# VARCHAR2 columns of SYNC_STAGE, RAWPOSTS and PROCESSEDPOSTS (sql/oracle/*.sql): (size, unit). CHAR: at most
# `size` characters (code points in AL32UTF8, a 4-byte emoji is one); BYTE: at most `size` UTF-8 bytes. Either
# way a VARCHAR2 holds at most MAX_VARCHAR_BYTES (MAX_STRING_SIZE = STANDARD). A unit test checks this table
# against the scripts. Values that do not fit are rejected (check_rows), never cut: a cut key would merge two
# posts into one row.
VARCHAR_LIMITS: dict[str, tuple[int, str]] = {
    "post_id": (1000, "CHAR"), "hashtag": (1000, "CHAR"), "username": (255, "CHAR"),
    "display_name": (500, "CHAR"), "language": (35, "CHAR"), "url": (1000, "CHAR"),
    "visibility": (32, "CHAR"), "instance": (255, "CHAR"), "status_id": (64, "CHAR"),
    "account_id": (64, "CHAR"), "account_acct": (500, "CHAR"), "threat_level": (16, "CHAR"),
    "threat_label": (32, "CHAR"), "sentiment_label": (32, "CHAR"), "threat_model_version": (100, "CHAR"),
    "sentiment_model_version": (100, "CHAR"), "processing_status": (10, "CHAR"), "source_table": (64, "CHAR"),
    "scoring_note": (100, "CHAR"),
}
MAX_VARCHAR_BYTES = 4000
# what the statements read of a tombstone (the deletes; a unit test derives it from them); its other
# columns are staged as NULL
TOMBSTONE_COLUMNS = frozenset(
    {"post_id", "is_deleted", "platform_id", "deleted_at", "updated_at", "source_table", "source_version"}
)

INSERT_STAGE_SQL = (
    f"INSERT INTO SYNC_STAGE ({', '.join(name.upper() for name in STAGE_NAMES)}) "
    f"VALUES ({', '.join(':' + name for name in STAGE_NAMES)})"
)

# One source row per post: the latest silver commit, then the newest UPDATED_AT, a tombstone winning a tie
# (records.latest_per_post has already kept one row per post; this only guards the MERGE, ORA-30926).
_LATEST = (
    "SELECT * FROM (SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.POST_ID "
    "ORDER BY s.SOURCE_VERSION DESC NULLS LAST, s.UPDATED_AT DESC, s.IS_DELETED DESC) AS RN "
    "FROM SYNC_STAGE s) WHERE RN = 1"
)


def newer_than_target(s: str, or_equal_clock: bool) -> str:
    """Is staged row `s` newer than target row `t`? The rule of postgres.newer_than_target: by silver commit
    (SOURCE_VERSION) when both rows come from the same silver table, else by UPDATED_AT. Oracle SQL (before
    23ai) has no boolean values, so the CASE yields 1/0; DECODE compares the table ids NULL-safely."""
    clock = ">=" if or_equal_clock else ">"
    return (
        f"(CASE WHEN {s}.SOURCE_VERSION IS NOT NULL AND t.SOURCE_VERSION IS NOT NULL "
        f"AND DECODE({s}.SOURCE_TABLE, t.SOURCE_TABLE, 1, 0) = 1 "
        f"THEN CASE WHEN {s}.SOURCE_VERSION > t.SOURCE_VERSION THEN 1 ELSE 0 END "
        f"ELSE CASE WHEN {s}.UPDATED_AT {clock} t.UPDATED_AT THEN 1 ELSE 0 END END) = 1"
    )


# A delete needs a strictly later commit: a physical delete and a re-insert in one commit (a restore split
# over two micro-batches) must not remove the re-inserted post.
DELETE_PROCESSED_SQL = (
    f"DELETE FROM PROCESSEDPOSTS t WHERE EXISTS (SELECT 1 FROM ({_LATEST}) l "
    f"WHERE l.IS_DELETED = 1 AND l.POST_ID = t.RAW_POST_ID AND {newer_than_target('l', True)})"
)
DELETE_RAW_SQL = (
    f"DELETE FROM RAWPOSTS t WHERE EXISTS (SELECT 1 FROM ({_LATEST}) l "
    f"WHERE l.IS_DELETED = 1 AND l.POST_ID = t.POST_ID AND {newer_than_target('l', True)})"
)


def _merge(table: str, key: str, columns: Sequence[str], source: Sequence[str]) -> str:
    pairs = [(col.upper(), src.upper()) for col, src in zip(columns, source, strict=True)]
    updates = ", ".join(f"t.{col} = src.{src}" for col, src in pairs if col != key)
    return (
        f"MERGE INTO {table} t USING ({_LATEST} AND IS_DELETED = 0) src "
        f"ON (t.{key} = src.{dict((c, s) for c, s in pairs)[key]}) "
        f"WHEN MATCHED THEN UPDATE SET {updates}, t.SYNCED_AT = SYS_EXTRACT_UTC(SYSTIMESTAMP) "
        f"WHERE {newer_than_target('src', False)} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(col for col, _ in pairs)}, SYNCED_AT) "
        f"VALUES ({', '.join('src.' + src for _, src in pairs)}, SYS_EXTRACT_UTC(SYSTIMESTAMP))"
    )


MERGE_RAW_SQL = _merge("RAWPOSTS", "POST_ID", RAW_COLUMNS, RAW_COLUMNS)
MERGE_PROCESSED_SQL = _merge(
    "PROCESSEDPOSTS", "RAW_POST_ID", ["raw_post_id", *PROCESSED_COLUMNS], ["post_id", *PROCESSED_COLUMNS]
)

BATCH_STATEMENTS = [DELETE_PROCESSED_SQL, DELETE_RAW_SQL, MERGE_RAW_SQL, MERGE_PROCESSED_SQL]


@dataclass(frozen=True)
class RejectedRow:
    """A staging row the Oracle tables cannot hold, with why: route it to quarantine, never cut it."""

    post_id: str | None
    reasons: tuple[str, ...]  # "too_long:<column>" (size or 4000 bytes), "empty:post_id" ('' is NULL)
    row: tuple  # the staging row as given (records.STAGE_NAMES order)


class RowsRejected(ValueError):
    """write_batch was given rows that do not fit; nothing of the batch reached the database.

    `rejected` lists them (RejectedRow); `keys` their post ids. Split a batch with check_rows first to
    write the rest and quarantine these.
    """

    def __init__(self, rejected: Sequence[RejectedRow]):
        self.rejected = list(rejected)
        shown = "; ".join(f"{r.post_id!r:.120}: {', '.join(r.reasons)}" for r in self.rejected[:5])
        more = f" (and {len(self.rejected) - 5} more)" if len(self.rejected) > 5 else ""
        super().__init__(f"{len(self.rejected)} row(s) do not fit the Oracle columns: {shown}{more}")

    @property
    def keys(self) -> list[str | None]:
        return [r.post_id for r in self.rejected]


def fits_varchar(value: str, size: int, unit: str = "CHAR") -> bool:
    """Would Oracle store `value` in VARCHAR2(size unit) of an AL32UTF8 database without ORA-12899?"""
    if unit == "CHAR" and len(value) > size:  # quick reject before encoding
        return False
    encoded = len(value.encode("utf-8"))
    return encoded <= (size if unit == "BYTE" else MAX_VARCHAR_BYTES) and encoded <= MAX_VARCHAR_BYTES


def row_problems(row: Sequence[Any], limits: Mapping[str, tuple[int, str]] | None = None) -> tuple[str, ...]:
    """Why a staging row cannot be stored as it is (empty: it can). A tombstone is checked on its key only."""
    limits = VARCHAR_LIMITS if limits is None else limits
    values = dict(zip(STAGE_NAMES, row, strict=True))
    problems = []
    if values["post_id"] == "":
        problems.append("empty:post_id")  # Oracle stores '' as NULL: the key would be NULL (ORA-01400)
    deleted = bool(values["is_deleted"])
    for name, (size, unit) in limits.items():
        value = values.get(name)
        if deleted and name not in TOMBSTONE_COLUMNS:
            continue
        if isinstance(value, str) and not fits_varchar(value, size, unit):
            problems.append(f"too_long:{name}")
    return tuple(problems)


def check_rows(
    rows: Sequence[tuple], limits: Mapping[str, tuple[int, str]] | None = None
) -> tuple[list[tuple], list[RejectedRow]]:
    """Split staging rows into (rows Oracle can hold, RejectedRow for the others); no I/O, nothing cut."""
    accepted: list[tuple] = []
    rejected: list[RejectedRow] = []
    key = STAGE_NAMES.index("post_id")
    for row in rows:
        problems = row_problems(row, limits)
        if problems:
            rejected.append(RejectedRow(row[key], problems, tuple(row)))
        else:
            accepted.append(row)
    return accepted, rejected


def oracle_timestamp(value: dt.datetime | None) -> dt.datetime | None:
    """UTC without zone, as the TIMESTAMP columns hold it."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def oracle_row(row: Sequence[Any]) -> tuple:
    """A staging tuple (records.STAGE_NAMES order) -> Oracle bind values in the same order.

    Timestamps UTC without zone, booleans 0/1, text as given: a value that does not fit its VARCHAR2 raises
    RowsRejected (check_rows first); nothing is cut. A tombstone binds NULL outside TOMBSTONE_COLUMNS (no
    statement reads them, and an oversized account name must not stop a delete).
    """
    problems = row_problems(row)
    if problems:
        raise RowsRejected([RejectedRow(row[STAGE_NAMES.index("post_id")], problems, tuple(row))])
    deleted = bool(row[STAGE_NAMES.index("is_deleted")])
    out = []
    for (name, kind), value in zip(STAGE_COLUMNS, row, strict=True):
        if deleted and name not in TOMBSTONE_COLUMNS:
            value = None
        elif kind == "ts":
            value = oracle_timestamp(value)
        elif kind == "bool" and value is not None:
            value = 1 if value else 0
        out.append(value)
    return tuple(out)


def is_connection_error(exc: BaseException) -> bool:
    """A lost / refused connection (worth reconnecting for), not a data or SQL error."""
    import oracledb

    if isinstance(exc, oracledb.InterfaceError | oracledb.OperationalError):
        return True
    if isinstance(exc, oracledb.DatabaseError) and exc.args:
        error = exc.args[0]
        if getattr(error, "isrecoverable", False):
            return True
        full_code = getattr(error, "full_code", "") or ""
        # ORA-03113/03114/03135: connection lost; ORA-12xxx: listener/network; DPY-4011: closed by the DB
        return full_code in {"ORA-03113", "ORA-03114", "ORA-03135", "DPY-4011"} or full_code.startswith(
            "ORA-125"
        )
    return False


def connect_from_settings(settings) -> Any:
    """A python-oracledb thin-mode connection from ORACLE_DSN / ORACLE_USER / ORACLE_PASSWORD / wallet."""
    import oracledb

    if settings.oracle_dsn is None or not settings.oracle_user:
        raise RuntimeError("Oracle is not configured: set ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD "
                           "(and ORACLE_WALLET_DIR for a wallet) in .env (see .env.example)")
    kwargs: dict[str, Any] = {
        "user": settings.oracle_user,
        "password": settings.oracle_password.get_secret_value() if settings.oracle_password else None,
        "dsn": settings.oracle_dsn.get_secret_value(),
    }
    if settings.oracle_wallet_dir is not None:
        wallet = str(settings.path(settings.oracle_wallet_dir))
        kwargs.update(config_dir=wallet, wallet_location=wallet)
        if settings.oracle_wallet_password is not None:
            kwargs["wallet_password"] = settings.oracle_wallet_password.get_secret_value()
    return oracledb.connect(**kwargs)


def _input_sizes():
    import oracledb

    sizes = []
    for _, kind in STAGE_COLUMNS:
        if kind == "clob":
            sizes.append(oracledb.DB_TYPE_LONG)  # binds text of any length into a CLOB column
        elif kind == "ts":
            sizes.append(oracledb.DB_TYPE_TIMESTAMP)
        elif kind == "float":
            sizes.append(oracledb.DB_TYPE_BINARY_DOUBLE)
        else:
            sizes.append(None)
    return sizes


@dataclass
class OracleTarget:
    """Writes staging rows to RAWPOSTS/PROCESSEDPOSTS. `connect` returns a DB-API connection."""

    connect_fn: Callable[[], Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: Callable[[str], None] = logger.info
    sleep: Callable[[float], None] = time.sleep
    name: str = "oracle"
    _conn: Any = field(default=None, init=False, repr=False)

    def connect(self) -> Any:
        if self._conn is None:
            self._conn = self.connect_fn()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                self._conn.close()
            self._conn = None

    def check_rows(self, rows: Sequence[tuple]) -> tuple[list[tuple], list[RejectedRow]]:
        """(rows this target can hold, RejectedRow for the rest): the caller quarantines the rejected."""
        return check_rows(rows)

    def _write_once(self, binds: Sequence[tuple]) -> BatchCounts:
        conn = self.connect()
        counts = BatchCounts(staged=len(binds))
        try:
            cursor = conn.cursor()
            cursor.setinputsizes(*_input_sizes())
            cursor.executemany(INSERT_STAGE_SQL, binds)
            cursor.execute(DELETE_PROCESSED_SQL)
            counts.processed_deleted = cursor.rowcount
            cursor.execute(DELETE_RAW_SQL)
            counts.raw_deleted = cursor.rowcount
            cursor.execute(MERGE_RAW_SQL)
            counts.raw_upserted = cursor.rowcount
            cursor.execute(MERGE_PROCESSED_SQL)
            counts.processed_upserted = cursor.rowcount
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be gone already
                conn.rollback()
            raise
        return counts

    def write_batch(self, rows: Sequence[tuple]) -> BatchCounts:
        """Apply one batch of staging rows in one transaction; retried whole on connection loss.

        Raises RowsRejected (before connecting) when a row does not fit the Oracle columns.
        """
        if not rows:
            return BatchCounts()
        _, rejected = check_rows(rows)
        if rejected:
            raise RowsRejected(rejected)
        binds = [oracle_row(row) for row in rows]
        return with_retry(
            lambda: self._write_once(binds),
            is_connection_error,
            self.retry,
            what="sync to Oracle",
            on_retry=self.close,
            log=self.log,
            sleep=self.sleep,
        )

    def table_counts(self) -> dict[str, int]:
        cursor = self.connect().cursor()
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM RAWPOSTS), (SELECT COUNT(*) FROM PROCESSEDPOSTS) FROM DUAL"
        )
        raw, processed = cursor.fetchone()
        return {"rawposts": raw, "processedposts": processed}
