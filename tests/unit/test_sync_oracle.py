"""Oracle sync path against a fake python-oracledb connection: statements, binds, transaction order."""

from __future__ import annotations

import datetime as dt

import oracledb
import pytest
import sqlglot
from sqlglot import exp

from tootlake.pipelines.databases import dbinit, oracle
from tootlake.pipelines.databases.records import STAGE_COLUMNS, STAGE_NAMES, stage_rows
from tootlake.pipelines.databases.retry import RetryPolicy, SyncError
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


# --- preparation rules a PostgreSQL engine cannot prove (see sql/README.md, "What is proven") -----------
def _stage_ddl() -> dict[str, dict[str, exp.DataType]]:
    """{table: {column: type}} of the Oracle scripts, parsed with sqlglot's oracle dialect."""
    tables: dict[str, dict[str, exp.DataType]] = {}
    for _path, statement in dbinit.oracle_statements():
        parsed = sqlglot.parse_one(statement, read="oracle")
        if isinstance(parsed, exp.Create) and parsed.kind == "TABLE":
            tables[parsed.this.this.name.upper()] = {
                c.name.lower(): c.args["kind"]
                for c in parsed.this.expressions if isinstance(c, exp.ColumnDef)
            }
    return tables


def _varchar_limit(kind: exp.DataType) -> tuple[int, str] | None:
    if kind.this not in (exp.DataType.Type.VARCHAR, exp.DataType.Type.NVARCHAR):
        return None
    param = kind.expressions[0]
    return int(param.this.name), (param.expression.name.upper() if param.expression is not None else "BYTE")


def test_varchar_limits_are_the_scripts_own():
    tables = _stage_ddl()
    stage = {name: _varchar_limit(kind) for name, kind in tables["SYNC_STAGE"].items()}
    assert {name: limit for name, limit in stage.items() if limit is not None} == oracle.VARCHAR_LIMITS
    kinds = dict(STAGE_COLUMNS)
    for name, kind in kinds.items():  # text -> VARCHAR2 (checked), clob -> CLOB (any length)
        if kind in ("text", "key"):
            assert name in oracle.VARCHAR_LIMITS, name
        if kind == "clob":
            assert tables["SYNC_STAGE"][name].this == exp.DataType.Type.TEXT, name  # CLOB reads as TEXT
    for table, key in (("RAWPOSTS", "post_id"), ("PROCESSEDPOSTS", "raw_post_id")):
        for name, kind in tables[table].items():  # a target column never narrower than the stage's check
            limit = _varchar_limit(kind)
            if limit is not None:
                assert limit == oracle.VARCHAR_LIMITS["post_id" if name == key else name], (table, name)


def test_the_upgrade_script_adds_the_columns_new_databases_get():
    """055_sync_order.sql (the order key) and 056_scoring_note.sql bring an older database to what 020/030/050
    create."""
    tables = _stage_ddl()
    added = 0
    for _path, statement in dbinit.oracle_statements():
        parsed = sqlglot.parse_one(statement, read="oracle")
        if isinstance(parsed, exp.Alter):
            for column in parsed.find_all(exp.ColumnDef):
                created = tables[parsed.this.name.upper()][column.name.lower()]
                assert column.args["kind"] == created, (parsed.this.name, column.name)
                added += 1
    assert added == 8  # 055: SOURCE_TABLE, SOURCE_VERSION on three tables; 056: SCORING_NOTE on two


def _row(deleted: bool = False, **stage_values) -> tuple:
    post = silver("p1", is_deleted=deleted, text=None if deleted else "hello")
    row = list(stage_rows([post])[0])
    for name, value in stage_values.items():
        row[STAGE_NAMES.index(name)] = value
    return tuple(row)


@pytest.mark.parametrize("column", sorted(oracle.VARCHAR_LIMITS))
def test_a_value_at_its_column_size_is_bound_whole_and_one_more_character_is_rejected(column):
    size, unit = oracle.VARCHAR_LIMITS[column]
    assert unit == "CHAR"  # CHAR semantics: a 4-byte emoji is one character (AL32UTF8)
    at_size = "😀" * size
    bound = oracle.oracle_row(_row(**{column: at_size}))
    assert bound[STAGE_NAMES.index(column)] == at_size  # never cut
    over = _row(**{column: at_size + "a"})
    accepted, rejected = oracle.check_rows([over, _row()])
    assert accepted == [_row()]
    assert [(r.reasons, r.row) for r in rejected] == [((f"too_long:{column}",), over)]
    with pytest.raises(oracle.RowsRejected):
        oracle.oracle_row(over)


def test_byte_semantics_and_the_4000_byte_ceiling():
    assert oracle.fits_varchar("é" * 10, 20, "BYTE") and not oracle.fits_varchar("é" * 11, 20, "BYTE")
    assert oracle.fits_varchar("a" * 20, 20, "BYTE") and not oracle.fits_varchar("😀" * 6, 20, "BYTE")
    # CHAR semantics still stop at 4000 bytes (MAX_STRING_SIZE = STANDARD)
    assert oracle.fits_varchar("a" * 4000, 4000, "CHAR")
    assert not oracle.fits_varchar("😀" * 1001, 2000, "CHAR")
    limits = {**oracle.VARCHAR_LIMITS, "display_name": (20, "BYTE")}
    assert oracle.row_problems(_row(display_name="é" * 10), limits) == ()
    assert oracle.row_problems(_row(display_name="é" * 11), limits) == ("too_long:display_name",)


def test_two_keys_equal_in_their_first_1000_characters_are_both_rejected_before_the_database():
    """The defect: cutting post_id to 1000 characters merged two different posts into one row."""
    base = "https://x.example/" + "p" * 990
    rows = stage_rows([silver(base + "/statuses/1"), silver(base + "/statuses/2"), silver("p3")])
    accepted, rejected = oracle.check_rows(rows)
    assert [r.post_id for r in rejected] == [base + "/statuses/1", base + "/statuses/2"]
    assert {r.reasons for r in rejected} == {("too_long:post_id",)}
    assert [row[0] for row in accepted] == ["p3"]
    connected = []
    target = oracle.OracleTarget(lambda: connected.append(1) or FakeConnection(), retry=RetryPolicy(1),
                                 log=lambda _: None)
    with pytest.raises(oracle.RowsRejected) as refused:
        target.write_batch(rows)
    assert refused.value.keys == [base + "/statuses/1", base + "/statuses/2"]
    assert "too_long:post_id" in str(refused.value)
    assert connected == []  # nothing reached the database
    assert target.check_rows(rows) == (accepted, rejected)
    target.write_batch(accepted)
    assert connected == [1]


def test_status_id_past_64_characters_is_rejected():
    rows = stage_rows([silver("p1", status_id="9" * 64), silver("p2", status_id="9" * 65)])
    accepted, rejected = oracle.check_rows(rows)
    assert [row[0] for row in accepted] == ["p1"]
    assert [(r.post_id, r.reasons) for r in rejected] == [("p2", ("too_long:status_id",))]


def test_an_empty_key_is_rejected_because_oracle_would_store_null():
    assert oracle.row_problems(_row(post_id="")) == ("empty:post_id",)


def test_a_tombstone_is_checked_on_its_key_only_and_binds_null_elsewhere():
    gone = _row(deleted=True, display_name="a" * 600, username="b" * 300)
    assert oracle.row_problems(gone) == ()
    bound = dict(zip(STAGE_NAMES, oracle.oracle_row(gone), strict=True))
    assert bound["display_name"] is None and bound["username"] is None
    assert bound["is_deleted"] == 1 and bound["post_id"] == "p1"
    assert bound["updated_at"] == T0.replace(tzinfo=None)
    assert set(name for name, value in bound.items() if value is not None) <= oracle.TOMBSTONE_COLUMNS
    # everything the deletes read of the staged row is kept
    read = set()
    for statement in (oracle.DELETE_RAW_SQL, oracle.DELETE_PROCESSED_SQL):
        read |= {c.name.lower() for c in sqlglot.parse_one(statement, read="oracle").find_all(exp.Column)
                 if c.table in ("l", "s")}
    assert read - {"rn", "*"} <= oracle.TOMBSTONE_COLUMNS, read - oracle.TOMBSTONE_COLUMNS
    assert oracle.row_problems(_row(deleted=True, post_id="x" * 1001)) == ("too_long:post_id",)


def test_clob_columns_take_any_length_and_are_the_only_long_binds():
    long_text = "😀" * 50_000 + "x" * 50_000  # 300,000 bytes
    bound = oracle.oracle_row(_row(post_content=long_text, content_html=long_text, spoiler_text=long_text))
    for name in ("post_content", "content_html", "spoiler_text"):
        assert bound[STAGE_NAMES.index(name)] == long_text
    sizes = dict(zip(STAGE_NAMES, oracle._input_sizes(), strict=True))
    stage = _stage_ddl()["SYNC_STAGE"]
    clobs = {name for name, kind in stage.items() if kind.this == exp.DataType.Type.TEXT}
    assert {name for name, size in sizes.items() if size is oracledb.DB_TYPE_LONG} == clobs
    assert all(sizes[name] is None for name in oracle.VARCHAR_LIMITS)  # strings, sized by the driver
    assert {name for name, size in sizes.items() if size is oracledb.DB_TYPE_TIMESTAMP} == {
        name for name, kind in STAGE_COLUMNS if kind == "ts"}
    assert {name for name, size in sizes.items() if size is oracledb.DB_TYPE_BINARY_DOUBLE} == {
        name for name, kind in stage.items() if kind.this == exp.DataType.Type.DOUBLE}


def test_timestamps_bind_as_utc_without_zone_and_booleans_as_0_1():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    row = _row(created_at=dt.datetime(2026, 1, 1, 14, 0, tzinfo=plus_two), sensitive=True, is_reblog=False)
    bound = dict(zip(STAGE_NAMES, oracle.oracle_row(row), strict=True))
    assert bound["created_at"] == dt.datetime(2026, 1, 1, 12, 0) and bound["created_at"].tzinfo is None
    for name, kind in STAGE_COLUMNS:
        if kind == "ts" and bound[name] is not None:
            assert bound[name].tzinfo is None, name
        if kind == "bool":
            assert type(bound[name]) is int and bound[name] in (0, 1), name  # not a Python bool


def test_binds_hold_no_nul_and_are_valid_utf8():
    rows = stage_rows([silver("p\x001", text="a\x00b \ud83d", account_display_name="x\x00")])
    for value in oracle.oracle_row(rows[0]):
        if isinstance(value, str):
            assert "\x00" not in value
            value.encode("utf-8")
    assert rows[0][0] == "p1"


def test_merge_never_updates_its_on_column():
    """ORA-38104 (columns referenced in the ON clause cannot be updated): PostgreSQL allows it."""
    for statement in (oracle.MERGE_RAW_SQL, oracle.MERGE_PROCESSED_SQL):
        merge = sqlglot.parse_one(statement, read="oracle")
        on = {c.name.upper() for c in merge.args["on"].find_all(exp.Column) if c.table == "t"}
        update = next(w.args["then"] for w in merge.args["whens"].expressions if w.args.get("matched"))
        assert on and not on & {eq.this.name.upper() for eq in update.expressions}, on


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


def test_split_statements_keeps_plsql_blocks_whole():
    text = ("CREATE OR REPLACE PROCEDURE P AS\nBEGIN\n  INSERT INTO T VALUES (1); -- inner\n"
            "  UPDATE T SET A = 2;\nEND;\n/\n"
            "BEGIN\n  EXECUTE IMMEDIATE 'CREATE TABLE X (A NUMBER)';\nEXCEPTION WHEN OTHERS THEN\n"
            "  IF SQLCODE != -955 THEN RAISE; END IF;\nEND;\n/\n"
            "CREATE OR REPLACE VIEW V AS SELECT 1 AS A FROM DUAL;\n")
    assert dbinit.split_statements(text) == [
        "CREATE OR REPLACE PROCEDURE P AS\nBEGIN\n  INSERT INTO T VALUES (1);\n  UPDATE T SET A = 2;\nEND;",
        "BEGIN\n  EXECUTE IMMEDIATE 'CREATE TABLE X (A NUMBER)';\nEXCEPTION WHEN OTHERS THEN\n"
        "  IF SQLCODE != -955 THEN RAISE; END IF;\nEND;",
        "CREATE OR REPLACE VIEW V AS SELECT 1 AS A FROM DUAL",
    ]


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
