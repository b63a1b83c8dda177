"""Oracle sync path against a fake python-oracledb connection: statements, binds, transaction order."""

from __future__ import annotations

import datetime as dt

import oracledb
import pytest
import sqlglot
from sqlglot import exp

from tootlake.pipelines.sync import dbinit, oracle
from tootlake.pipelines.sync.records import STAGE_NAMES, stage_rows
from tootlake.pipelines.sync.retry import RetryPolicy, SyncError
from tootlake.silver.schema import POSTS_SCHEMA

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def silver(post_id: str, updated_at=T0, **overrides) -> dict:
    row = {field.name: None for field in POSTS_SCHEMA.fields}
    row.update(post_id=post_id, is_deleted=False, platform="mastodon", text="hello", created_at=T0,
               updated_at=updated_at, processing_status="SUCCESS", sensitive=True)
    row.update(overrides)
    return row


class FakeCursor:
    def __init__(self, conn: FakeConnection):
        self.conn = conn
        self.rowcount = 0

    def setinputsizes(self, *sizes):
        self.conn.calls.append(("setinputsizes", sizes))

    def executemany(self, statement, rows):
        self.conn.calls.append(("executemany", statement, list(rows)))

    def execute(self, statement, binds=None):
        if self.conn.fail_on and self.conn.fail_on in statement and self.conn.failures:
            self.conn.failures -= 1
            raise self.conn.error
        self.conn.calls.append(("execute", statement))
        self.rowcount = 1


class FakeConnection:
    def __init__(self, fail_on: str | None = None, failures: int = 0, error: Exception | None = None):
        self.calls: list[tuple] = []
        self.fail_on, self.failures, self.error = fail_on, failures, error
        self.closed = False

    def cursor(self):
        return FakeCursor(self)

    def commit(self):
        self.calls.append(("commit",))

    def rollback(self):
        self.calls.append(("rollback",))

    def close(self):
        self.closed = True


def connection_lost() -> oracledb.DatabaseError:
    try:  # a real python-oracledb error object, as the driver raises it
        oracledb.connect(user="u", password="p", dsn="127.0.0.1:1/none", tcp_connect_timeout=0.5)
    except oracledb.Error as exc:
        return exc
    raise AssertionError("expected a connection error")


def test_batch_is_stage_then_deletes_then_merges_then_one_commit():
    conn = FakeConnection()
    target = oracle.OracleTarget(lambda: conn, retry=RetryPolicy(1), log=lambda _: None)
    rows = stage_rows(
        [silver("p1"), silver("p2", is_deleted=True, text=None), silver("p1", T0 - dt.timedelta(1))]
    )
    target.write_batch(rows)
    assert [c[0] for c in conn.calls] == ["setinputsizes", "executemany", "execute", "execute", "execute",
                                          "execute", "commit"]
    statements = [c[1] for c in conn.calls if c[0] == "execute"]
    assert statements == [oracle.DELETE_PROCESSED_SQL, oracle.DELETE_RAW_SQL, oracle.MERGE_RAW_SQL,
                          oracle.MERGE_PROCESSED_SQL]
    assert [s.split("(")[0].split(" t ")[0] for s in statements] == [
        "DELETE FROM PROCESSEDPOSTS", "DELETE FROM RAWPOSTS",
        "MERGE INTO RAWPOSTS", "MERGE INTO PROCESSEDPOSTS",
    ]


def test_binds_are_deduplicated_utc_naive_and_zero_one():
    conn = FakeConnection()
    target = oracle.OracleTarget(lambda: conn, retry=RetryPolicy(1), log=lambda _: None)
    later = T0 + dt.timedelta(hours=1)
    target.write_batch(stage_rows([silver("p1"), silver("p1", later, text="edited", display_name=None)]))
    (_, statement, binds) = next(c for c in conn.calls if c[0] == "executemany")
    assert statement == oracle.INSERT_STAGE_SQL
    assert len(binds) == 1
    row = dict(zip(STAGE_NAMES, binds[0], strict=True))
    assert row["post_content"] == "edited"
    assert row["updated_at"] == dt.datetime(2026, 1, 1, 13, 0) and row["updated_at"].tzinfo is None
    assert row["is_deleted"] == 0 and row["sensitive"] == 1
    sizes = next(c for c in conn.calls if c[0] == "setinputsizes")[1]
    assert sizes[STAGE_NAMES.index("post_content")] is oracledb.DB_TYPE_LONG
    assert sizes[STAGE_NAMES.index("updated_at")] is oracledb.DB_TYPE_TIMESTAMP


def test_long_varchar_values_are_cut_to_the_column():
    row = oracle.oracle_row(stage_rows([silver("p1", account_display_name="😀" * 2000)])[0])
    name = row[STAGE_NAMES.index("display_name")]
    assert len(name) == oracle.VARCHAR_SIZES["display_name"]
    assert oracle.fit_varchar("é" * 3000, 4000).encode("utf-8").__len__() <= 4000


def test_connection_loss_is_retried_with_a_new_connection_then_commits():
    error = connection_lost()
    assert oracle.is_connection_error(error)
    conns = [FakeConnection(fail_on="MERGE INTO RAWPOSTS", failures=1, error=error), FakeConnection()]
    made = []

    def connect():
        made.append(conns[len(made)])
        return made[-1]

    sleeps: list[float] = []
    target = oracle.OracleTarget(connect, retry=RetryPolicy(3, 0.5, 5), log=print, sleep=sleeps.append)
    target.write_batch(stage_rows([silver("p1")]))
    assert len(made) == 2 and made[0].closed
    assert ("rollback",) in made[0].calls and ("commit",) not in made[0].calls
    assert made[1].calls[-1] == ("commit",)
    assert sleeps == [0.5]


def test_connection_never_back_gives_a_clear_error():
    error = connection_lost()
    target = oracle.OracleTarget(lambda: FakeConnection("MERGE INTO RAWPOSTS", 99, error),
                                 retry=RetryPolicy(2, 0.01, 0.01), log=lambda _: None)
    with pytest.raises(SyncError, match="checkpoint did not advance"):
        target.write_batch(stage_rows([silver("p1")]))


def test_data_errors_are_not_retried():
    error = oracledb.DatabaseError("ORA-01400: cannot insert NULL")
    made = []

    def connect():
        made.append(FakeConnection("MERGE INTO RAWPOSTS", 1, error))
        return made[-1]

    target = oracle.OracleTarget(connect, retry=RetryPolicy(3, 0.01), log=lambda _: None)
    with pytest.raises(oracledb.DatabaseError):
        target.write_batch(stage_rows([silver("p1")]))
    assert len(made) == 1 and ("rollback",) in made[0].calls


@pytest.mark.parametrize("statement", [oracle.INSERT_STAGE_SQL, *oracle.BATCH_STATEMENTS])
def test_statements_parse_with_sqlglot_oracle(statement):
    parsed = sqlglot.parse_one(statement, read="oracle")
    assert not isinstance(parsed, exp.Command)


def test_scripts_parse_and_define_every_column_the_statements_use():
    columns: dict[str, set[str]] = {}
    commands = []
    for _path, statement in dbinit.oracle_statements():
        parsed = sqlglot.parse_one(statement, read="oracle")
        if isinstance(parsed, exp.Command):
            commands.append(statement)
            continue
        if isinstance(parsed, exp.Create) and parsed.kind == "TABLE":
            table = parsed.this.this.name.upper()
            columns[table] = {c.name.upper() for c in parsed.this.expressions if isinstance(c, exp.ColumnDef)}
    # sqlglot has no grammar for CREATE ROLE: those (and only those) fall back to a raw command
    assert commands and all(c.startswith("CREATE ROLE") for c in commands)
    assert set(columns) == {"PLATFORMS", "RAWPOSTS", "PROCESSEDPOSTS", "SYNC_STAGE"}
    assert columns["SYNC_STAGE"] == {name.upper() for name in STAGE_NAMES}
    for table in ("RAWPOSTS", "PROCESSEDPOSTS"):
        merge = oracle.MERGE_RAW_SQL if table == "RAWPOSTS" else oracle.MERGE_PROCESSED_SQL
        parsed = sqlglot.parse_one(merge, read="oracle")
        used = {c.name.upper() for c in parsed.find_all(exp.Column) if c.table == "t"}
        assert used <= columns[table], used - columns[table]
    older = {"RAWPOSTS": "POST_ID PLATFORM_ID HASHTAG USERNAME DISPLAY_NAME POST_CONTENT CREATED_AT LANGUAGE "
                         "URL VISIBILITY COLLECTED_AT",
             "PROCESSEDPOSTS": "PROCESSED_ID RAW_POST_ID PLATFORM_ID HASHTAG POST_CONTENT CREATED_AT "
                               "LANGUAGE URL THREAT_LEVEL CONTAINS_HATE_SPEECH PROCESSED_AT "
                               "PROCESSING_STATUS",
             "PLATFORMS": "PLATFORM_ID NAME API_SOURCE"}
    for table, names in older.items():
        assert set(names.split()) <= columns[table], table


def test_split_statements_respects_quotes_and_comments():
    text = "-- a; comment\nINSERT INTO T VALUES ('a;b', 'it''s');\n/* x; */ SELECT 1 FROM DUAL;\n"
    assert dbinit.split_statements(text) == ["INSERT INTO T VALUES ('a;b', 'it''s')", "SELECT 1 FROM DUAL"]


def test_init_oracle_skips_existing_objects_and_commits():
    class Exists(FakeCursor):
        def execute(self, statement, binds=None):
            if statement.startswith("CREATE TABLE RAWPOSTS"):
                raise oracledb.DatabaseError(_Err(955))
            super().execute(statement)

    class _Conn(FakeConnection):
        def cursor(self):
            return Exists(self)

    conn = _Conn()
    ran = dbinit.init_oracle(conn, log=lambda _: None)
    assert ran == len(list(dbinit.oracle_statements())) - 1
    assert conn.calls[-1] == ("commit",)


class _Err:
    def __init__(self, code: int):
        self.code = code
        self.full_code = f"ORA-{code:05d}"

    def __str__(self) -> str:
        return f"{self.full_code}: name is already used by an existing object"
