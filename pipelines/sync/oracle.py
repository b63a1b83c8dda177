"""Oracle target (python-oracledb, thin mode): executemany into SYNC_STAGE, then one MERGE per table.

Per batch, one transaction (retried whole on connection loss):
  1. executemany INSERT into the global temporary table SYNC_STAGE (ON COMMIT DELETE ROWS);
  2. DELETE tombstoned posts from PROCESSEDPOSTS, then RAWPOSTS (FK order);
  3. MERGE INTO RAWPOSTS, then MERGE INTO PROCESSEDPOSTS, each from SYNC_STAGE deduplicated on the key
     (ROW_NUMBER ... = 1; a MERGE refuses two source rows per target row, ORA-30926), updating only when the
     incoming row is newer;
  4. COMMIT.
Timestamps are bound as UTC without zone (TIMESTAMP columns), booleans as 0/1. Oracle stores '' as NULL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tootlake.pipelines.sync.postgres import BatchCounts
from tootlake.pipelines.sync.records import PROCESSED_COLUMNS, RAW_COLUMNS, STAGE_COLUMNS, STAGE_NAMES
from tootlake.pipelines.sync.retry import RetryPolicy, with_retry

# VARCHAR2 sizes (characters) of sql/oracle/*.sql; longer values are cut to fit (and to 4000 bytes).
VARCHAR_SIZES = {
    "post_id": 1000, "hashtag": 1000, "username": 255, "display_name": 500, "language": 35, "url": 1000,
    "visibility": 32, "instance": 255, "status_id": 64, "account_id": 64, "account_acct": 500,
    "threat_level": 16, "threat_label": 32, "sentiment_label": 32, "threat_model_version": 100,
    "sentiment_model_version": 100, "processing_status": 10,
}
MAX_VARCHAR_BYTES = 4000

INSERT_STAGE_SQL = (
    f"INSERT INTO SYNC_STAGE ({', '.join(name.upper() for name in STAGE_NAMES)}) "
    f"VALUES ({', '.join(':' + name for name in STAGE_NAMES)})"
)

# one source row per post: newest UPDATED_AT, a tombstone winning a tie
_LATEST = (
    "SELECT * FROM (SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.POST_ID "
    "ORDER BY s.UPDATED_AT DESC, s.IS_DELETED DESC) AS RN FROM SYNC_STAGE s) WHERE RN = 1"
)

DELETE_PROCESSED_SQL = (
    f"DELETE FROM PROCESSEDPOSTS t WHERE EXISTS (SELECT 1 FROM ({_LATEST}) l "
    "WHERE l.IS_DELETED = 1 AND l.POST_ID = t.RAW_POST_ID AND l.UPDATED_AT >= t.UPDATED_AT)"
)
DELETE_RAW_SQL = (
    f"DELETE FROM RAWPOSTS t WHERE EXISTS (SELECT 1 FROM ({_LATEST}) l "
    "WHERE l.IS_DELETED = 1 AND l.POST_ID = t.POST_ID AND l.UPDATED_AT >= t.UPDATED_AT)"
)


def _merge(table: str, key: str, columns: Sequence[str], source: Sequence[str]) -> str:
    pairs = [(col.upper(), src.upper()) for col, src in zip(columns, source, strict=True)]
    updates = ", ".join(f"t.{col} = src.{src}" for col, src in pairs if col != key)
    return (
        f"MERGE INTO {table} t USING ({_LATEST} AND IS_DELETED = 0) src "
        f"ON (t.{key} = src.{dict((c, s) for c, s in pairs)[key]}) "
        f"WHEN MATCHED THEN UPDATE SET {updates}, t.SYNCED_AT = SYS_EXTRACT_UTC(SYSTIMESTAMP) "
        "WHERE src.UPDATED_AT > t.UPDATED_AT "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(col for col, _ in pairs)}, SYNCED_AT) "
        f"VALUES ({', '.join('src.' + src for _, src in pairs)}, SYS_EXTRACT_UTC(SYSTIMESTAMP))"
    )


MERGE_RAW_SQL = _merge("RAWPOSTS", "POST_ID", RAW_COLUMNS, RAW_COLUMNS)
MERGE_PROCESSED_SQL = _merge(
    "PROCESSEDPOSTS", "RAW_POST_ID", ["raw_post_id", *PROCESSED_COLUMNS], ["post_id", *PROCESSED_COLUMNS]
)

BATCH_STATEMENTS = [DELETE_PROCESSED_SQL, DELETE_RAW_SQL, MERGE_RAW_SQL, MERGE_PROCESSED_SQL]


def fit_varchar(value: str | None, chars: int) -> str | None:
    """Cut a string to `chars` characters and at most 4000 UTF-8 bytes (VARCHAR2's standard limit)."""
    if value is None:
        return None
    value = value[:chars]
    while len(value.encode("utf-8")) > MAX_VARCHAR_BYTES:
        value = value[: max(0, len(value) - 16)]
    return value


def oracle_timestamp(value: dt.datetime | None) -> dt.datetime | None:
    """UTC without zone, as the TIMESTAMP columns hold it."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def oracle_row(row: Sequence[Any]) -> tuple:
    """A staging tuple (records.STAGE_NAMES order) -> Oracle bind values in the same order."""
    out = []
    for (name, kind), value in zip(STAGE_COLUMNS, row, strict=True):
        if kind == "ts":
            value = oracle_timestamp(value)
        elif kind == "bool" and value is not None:
            value = 1 if value else 0
        elif name in VARCHAR_SIZES:
            value = fit_varchar(value, VARCHAR_SIZES[name])
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
    log: Callable[[str], None] = print
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

    def _write_once(self, rows: Sequence[tuple]) -> BatchCounts:
        conn = self.connect()
        counts = BatchCounts(staged=len(rows))
        try:
            cursor = conn.cursor()
            cursor.setinputsizes(*_input_sizes())
            cursor.executemany(INSERT_STAGE_SQL, [oracle_row(row) for row in rows])
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
        if not rows:
            return BatchCounts()
        return with_retry(
            lambda: self._write_once(rows),
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
