"""The Oracle sync's semantics on a real SQL engine: its own statements, translated to PostgreSQL 15.

The same randomised change-feed sequences (tests/integration/sync_sequences.py: inserts, edits with newer,
equal and older timestamps, deletes, replays, odd text, values one past their Oracle column) go through
  - the PostgreSQL target (pipelines/databases/postgres.py, PostgresTarget.write_batch), and
  - the Oracle target (pipelines/databases/oracle.py, OracleTarget.write_batch, unchanged) on a connection
    that runs its SQL on PostgreSQL (oracle_on_postgres.py: sqlglot oracle -> postgres plus a thin adapter),
and after every batch both must hold exactly what the plain-Python model says (newer wins, a tombstone
deletes, a replay writes nothing, rows that do not fit Oracle are quarantined, never cut), which in the end
is what silver says is current. TOOTLAKE_SYNC_SEQUENCES sets how many sequences run (default 100).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from oracle_on_postgres import OracleOnPostgres, create_schema, translate
from sync_sequences import (
    ORDER_BY_COMMIT,
    PREFIX,
    TABLE_ID,
    Batch,
    Post,
    SyncSequence,
    Version,
    postgres_sink,
    run_sequence,
    sequences,
)
from sync_support import T0, scratch_database

from tootlake.pipelines.databases import oracle
from tootlake.pipelines.databases.oracle import OracleTarget, RowsRejected
from tootlake.pipelines.databases.postgres import PostgresTarget
from tootlake.pipelines.databases.records import RAW_COLUMNS
from tootlake.pipelines.databases.retry import RetryPolicy

pytestmark = pytest.mark.integration
CONTENT = RAW_COLUMNS.index("post_content")
EXAMPLES = int(os.environ.get("TOOTLAKE_SYNC_SEQUENCES", "100"))
SEQUENCE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the work tree; a failure prints its example and seed
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


class Targets:
    """Both targets on their own scratch databases, kept for the module; emptied before each sequence."""

    def __init__(self, pg_db: str, ora_db: str):
        self.pg_db, self.ora_db = pg_db, ora_db
        self.readers = [psycopg2.connect(pg_db), psycopg2.connect(ora_db)]
        for conn in self.readers:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
        quiet = RetryPolicy(1)
        self.postgres = PostgresTarget(pg_db, retry=quiet, log=lambda _: None)
        self.connections: list[OracleOnPostgres] = []
        self.oracle = OracleTarget(self._connect, retry=quiet, log=lambda _: None)
        self.sinks = [postgres_sink("postgres", self.postgres, self.readers[0]),
                      postgres_sink("oracle", self.oracle, self.readers[1], empty_is_null=True)]

    def _connect(self) -> OracleOnPostgres:
        self.connections.append(OracleOnPostgres(self.ora_db))
        return self.connections[-1]

    def empty(self) -> None:
        for conn in self.readers:
            with conn.cursor() as cur:
                cur.execute("TRUNCATE processedposts, rawposts")

    def close(self) -> None:
        self.postgres.close()
        self.oracle.close()
        for conn in self.readers:
            conn.close()


@pytest.fixture(scope="module")
def targets(postgres_conninfo: str):
    with (scratch_database(postgres_conninfo) as pg_db,
          scratch_database(postgres_conninfo, init=False) as ora_db):
        create_schema(ora_db)
        both = Targets(pg_db, ora_db)
        try:
            yield both
        finally:
            both.close()


RUNS: list = []


@SEQUENCE_SETTINGS
@given(sequence=sequences())
def test_random_sequences_end_in_the_same_rows_as_silver(targets: Targets, sequence: SyncSequence):
    targets.empty()
    RUNS.append(run_sequence(sequence, targets.sinks))


def test_sequences_ran_and_covered_the_cases():
    """Reports what the randomised test exercised (runs after it, in file order); fails if it ran nothing."""
    if not RUNS:
        pytest.skip("the randomised test did not run in this session")
    total = {name: sum(getattr(s, name) for s in RUNS) for name in ("batches", "replays", "rows", "rejected",
                                                                     "deleted")}
    print(f"\n[oracle semantics] {len(RUNS)} sequences: {total}")
    assert total["replays"] and total["rejected"] and total["deleted"], total


# --- focused cases, each a fixed sequence (readable when they fail) ------------------------------------
def _post(n: int, kind: str = "plain", status_id: str | None = None) -> Post:
    return Post(n, kind, status_id or str(100000 + n))


def _live(post: Post, commit: int, minutes: float, **values) -> Version:
    at = T0.replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    return Version(post, commit, at, False, tuple({"text": f"v{commit}", **values}.items()))


def _gone(post: Post, commit: int, minutes: float) -> Version:
    return Version(post, commit, T0.replace(tzinfo=None) + dt.timedelta(minutes=minutes), True)


def _run(targets: Targets, *batches: list[Version]) -> None:
    targets.empty()
    posts = tuple({v.post for b in batches for v in b})
    run_sequence(SyncSequence(posts, tuple(Batch(tuple(b), False) for b in batches)), targets.sinks)


def test_newer_wins_equal_and_older_change_nothing(targets):
    p = _post(1)
    _run(targets, [_live(p, 1, 0)], [_live(p, 3, 5, text="newer")],
         [_live(p, 1, 0)], [_live(p, 2, 1, text="older, delivered late")])


def test_a_tombstone_wins_a_tie_and_deletes_both_tables(targets):
    p, q = _post(1), _post(2)
    _run(targets, [_live(p, 1, 0), _live(q, 1, 0)], [_gone(p, 2, 0), _live(q, 2, 1), _gone(q, 3, 1)])


def test_the_statements_deduplicate_a_batch_themselves(targets):
    """Rows handed over without records.latest_per_post: the SQL's own one-row-per-post rule decides."""
    from tootlake.pipelines.databases.records import stage_row

    p, q, r = _post(1), _post(2), _post(3)
    targets.empty()
    first = [_live(p, 1, 0), _live(q, 1, 0), _live(r, 1, 0)]
    run_sequence(SyncSequence((p, q, r), (Batch(tuple(first), False),)), targets.sinks)

    def unversioned(version: Version) -> tuple:
        return stage_row({**version.silver_row(PREFIX), "_commit_version": None})

    # p: an edit, then a tombstone at the same updated_at (the later commit wins); q: an older and a newer
    # edit; r: without commit versions, an edit and a tombstone at the same updated_at (the tombstone wins)
    rows = [stage_row(v.silver_row(PREFIX)) for v in
            (_live(p, 2, 1, text="edit"), _gone(p, 3, 1), _live(q, 3, 2, text="newest"), _live(q, 2, 1))]
    rows += [unversioned(_gone(r, 2, 1)), unversioned(_live(r, 2, 1, text="tie"))]
    for sink in targets.sinks:
        sink.target.write_batch(rows)
    for sink in targets.sinks:
        raw, processed = sink.read()
        assert list(raw) == list(processed) == [q.post_id(PREFIX)], sink.name
        assert raw[q.post_id(PREFIX)][CONTENT] == "newest", sink.name  # post_content


needs_commit_order = pytest.mark.skipif(not ORDER_BY_COMMIT, reason="the sync orders by updated_at here")


@needs_commit_order
def test_a_later_commit_wins_when_silver_s_clock_stepped_back(targets):
    p = _post(1)
    _run(targets, [_live(p, 1, 60)], [_live(p, 2, 0, text="later commit, earlier clock")], [_live(p, 1, 60)])
    assert targets.sinks[0].read()[0][p.post_id(PREFIX)][CONTENT] == "later commit, earlier clock"


@needs_commit_order
@pytest.mark.parametrize("delete_first", [True, False])
def test_a_restore_split_over_two_batches_keeps_the_post(targets, delete_first):
    """restore: a physical delete and a re-insert of an older version in one commit, in either batch order."""
    p = _post(1)
    current = _live(p, 2, 10, text="current")
    gone = Version(p, 3, current.updated_at, True, current.values, physical=True)
    back = Version(p, 3, T0.replace(tzinfo=None), False, (("text", "restored"),))
    halves = [[gone], [back]] if delete_first else [[back], [gone]]
    _run(targets, [_live(p, 1, 0)], [current], *halves)
    for sink in targets.sinks:
        assert sink.read()[0][p.post_id(PREFIX)][CONTENT] == "restored", sink.name


def test_rows_without_a_commit_or_from_another_lake_fall_back_to_updated_at(targets):
    """Rows synced before commit versions were kept, or from another silver table, compare by updated_at."""
    from tootlake.pipelines.databases.records import stage_row

    if not ORDER_BY_COMMIT:
        pytest.skip("the sync orders by updated_at here")
    targets.empty()
    p, q = _post(1), _post(2)

    def row(version: Version, **change) -> tuple:
        silver = version.silver_row(PREFIX)
        silver.update(change)
        return stage_row(silver)

    r = _post(3)
    steps = [
        [row(_live(p, 5, 10), _commit_version=None), row(_live(q, 5, 10), _table_id="old-lake"),
         row(_live(r, 5, 10), _commit_version=None)],
        # p: versioned now, but the stored row has none -> an older updated_at loses, a newer one wins
        [row(_live(p, 1, 5, text="older clock")), row(_live(q, 1, 5, text="other lake, older clock"))],
        [row(_live(p, 2, 20, text="newer clock")), row(_live(q, 2, 20, text="other lake, newer clock")),
         row(_gone(r, 1, 10))],  # r: a tombstone as old as the stored row deletes it (a tie)
    ]
    for rows in steps:
        for sink in targets.sinks:
            sink.target.write_batch(rows)
    for sink in targets.sinks:
        raw = sink.read()[0]
        assert r.post_id(PREFIX) not in raw, sink.name
        assert raw[p.post_id(PREFIX)][CONTENT] == "newer clock", sink.name
        assert raw[q.post_id(PREFIX)][CONTENT] == "other lake, newer clock", sink.name
        assert raw[q.post_id(PREFIX)][RAW_COLUMNS.index("source_table")] == TABLE_ID, sink.name
        assert raw[q.post_id(PREFIX)][RAW_COLUMNS.index("source_version")] == 2, sink.name


def test_keys_one_past_the_column_are_quarantined_not_merged_into_one_row(targets):
    """Two ids equal in their first 1000 characters: truncating would have stored them as one post."""
    a, b = _post(1, "long_over"), _post(2, "long_over")
    assert a.post_id(PREFIX)[:1000] == b.post_id(PREFIX)[:1000]
    fits = _post(3, "long_ascii")
    long_status = _post(4, status_id="9" * 65)
    _run(targets, [_live(a, 1, 0), _live(b, 1, 0), _live(fits, 1, 0), _live(long_status, 1, 0)])
    assert [len(k) for k in targets.sinks[1].read()[0]] == [1000]


def test_the_oracle_target_refuses_a_batch_with_a_long_key_before_the_database(targets):
    from tootlake.pipelines.databases.records import stage_rows

    targets.empty()
    rows = stage_rows([_live(_post(1, "long_over"), 1, 0).silver_row(PREFIX),
                       _live(_post(2), 1, 0).silver_row(PREFIX)])
    sent = len(targets.connections[-1].statements) if targets.connections else 0
    with pytest.raises(RowsRejected) as refused:
        targets.oracle.write_batch(rows)
    assert refused.value.keys == [_post(1, "long_over").post_id(PREFIX)]
    assert refused.value.rejected[0].reasons == ("too_long:post_id",)
    assert (len(targets.connections[-1].statements) if targets.connections else 0) == sent


def test_the_translation_keeps_newer_wins_and_the_delete_rule():
    """sqlglot alone drops Oracle's `UPDATE ... WHERE` of a MERGE: the adapter must carry it over whole."""

    def condition(s: str, or_equal: bool) -> str:
        query = f"SELECT 1 FROM DUAL WHERE {oracle.newer_than_target(s, or_equal)}"
        return translate(query).split(" WHERE ", 1)[1]

    for statement in (oracle.MERGE_RAW_SQL, oracle.MERGE_PROCESSED_SQL):
        merge = translate(statement)
        assert f"WHEN MATCHED AND {condition('src', False)} THEN UPDATE" in merge
        assert "WHERE RN = 1 AND IS_DELETED = 0) AS src" in merge
    for statement in (oracle.DELETE_RAW_SQL, oracle.DELETE_PROCESSED_SQL):
        delete = translate(statement)
        assert "WHERE l.IS_DELETED = 1 AND" in delete and f"AND {condition('l', True)})" in delete


def test_the_adapter_behaves_like_oracle_on_empty_strings_and_long_values(postgres_conninfo):
    with scratch_database(postgres_conninfo, init=False) as db:
        create_schema(db)
        conn = OracleOnPostgres(db)
        with contextlib.closing(conn):
            cur = conn.cursor()
            cur.execute("INSERT INTO PLATFORMS (PLATFORM_ID, NAME, API_SOURCE) VALUES (9, 'x', :a)",
                        {"a": ""})
            cur.execute("SELECT API_SOURCE FROM PLATFORMS WHERE PLATFORM_ID = 9")
            assert cur.fetchone() == (None,)  # '' is NULL
            with pytest.raises(psycopg2.errors.CheckViolation):  # ORA-12899, not a silent cut
                cur.execute("INSERT INTO PLATFORMS (PLATFORM_ID, NAME) VALUES (8, :n)", {"n": "y" * 50 + " "})
            conn.rollback()
            cur = conn.cursor()
            cur.execute("INSERT INTO PLATFORMS (PLATFORM_ID, NAME) VALUES (8, :n)", {"n": "😀" * 50})
            conn.commit()
            cur.execute("SELECT COUNT(*) FROM SYNC_STAGE")
            assert cur.fetchone() == (0,)
