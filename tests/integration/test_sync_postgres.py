"""PostgreSQL sync path on the real test server (no Spark): upserts, replays, edits, deletes, text, faults."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from sync_support import (  # tests/integration is on sys.path (no __init__)
    EDGE_TEXTS,
    T0,
    counts,
    free_port,
    query,
    scratch_database,
    silver_post,
    snapshot,
    tombstone,
)

from tootlake.pipelines.databases.postgres import PostgresTarget
from tootlake.pipelines.databases.records import stage_rows
from tootlake.pipelines.databases.retry import RetryPolicy, SyncError
from tootlake.pipelines.ops import services

pytestmark = pytest.mark.integration
N = 60


@pytest.fixture
def db(postgres_conninfo: str):
    with scratch_database(postgres_conninfo) as conninfo:
        yield conninfo


def target(conninfo: str, attempts: int = 2) -> PostgresTarget:
    return PostgresTarget(conninfo, retry=RetryPolicy(attempts, 0.2, 1.0), log=lambda _: None)


def batch(n: int = N) -> list[dict]:
    posts = [silver_post(i) for i in range(n)]
    for i, text in enumerate(EDGE_TEXTS):
        posts[i]["text"] = text
        posts[i]["account_display_name"] = text
    posts[n - 1]["processing_status"] = "FAILED"
    posts[n - 1].update(threat_label=None, threat_score=None, threat_level=None, contains_hate_speech=None)
    return posts


def test_n_posts_give_n_rows_and_a_replay_changes_nothing(db):
    sink = target(db)
    first = sink.write_batch(stage_rows(batch()))
    assert (first.raw_upserted, first.processed_upserted) == (N, N)
    assert counts(db) == (N, N)
    before = snapshot(db)
    again = sink.write_batch(stage_rows(batch()))
    assert (again.raw_upserted, again.processed_upserted, again.raw_deleted) == (0, 0, 0)
    assert snapshot(db) == before  # same row versions: not even a no-op update was written
    sink.close()


def test_text_is_stored_verbatim_and_nul_is_stripped(db):
    sink = target(db)
    sink.write_batch(stage_rows(batch()))
    for i, text in enumerate(EDGE_TEXTS):
        post_id = silver_post(i)["post_id"]
        [(raw_text, display_name, processed_text)] = query(
            db, "SELECT r.post_content, r.display_name, p.post_content FROM rawposts r "
                "JOIN processedposts p ON p.raw_post_id = r.post_id WHERE r.post_id = %s", (post_id,))
        expected = text.replace("\x00", "")  # documented policy: U+0000 removed, nothing else touched
        assert raw_text == expected and display_name == expected and processed_text == expected, repr(text)
    sink.close()


def test_failed_scoring_is_synced_as_failed(db):
    sink = target(db)
    sink.write_batch(stage_rows(batch()))
    rows = query(db, "SELECT processing_status, max(threat_score), count(*) FROM processedposts "
                     "GROUP BY 1 ORDER BY 1")
    assert [(status, n) for status, _, n in rows] == [("FAILED", 1), ("SUCCESS", N - 1)]
    assert rows[0][1] is None
    sink.close()


def test_an_edit_updates_the_row_and_an_older_version_is_ignored(db):
    sink = target(db)
    sink.write_batch(stage_rows(batch()))
    [(processed_id,)] = query(db, "SELECT processed_id FROM processedposts WHERE raw_post_id = %s",
                              (silver_post(10)["post_id"],))
    later = T0 + dt.timedelta(minutes=5)
    edited = silver_post(10, later, text="edited text", threat_level="HIGH", contains_hate_speech=1,
                         edited_at=later.replace(tzinfo=None))
    result = sink.write_batch(stage_rows([edited, silver_post(11, T0 - dt.timedelta(days=1), text="stale")]))
    assert (result.raw_upserted, result.processed_upserted) == (1, 1)
    assert counts(db) == (N, N)
    assert query(db, "SELECT r.post_content, p.threat_level, p.contains_hate_speech, p.processed_id "
                     "FROM rawposts r JOIN processedposts p ON p.raw_post_id = r.post_id "
                     "WHERE r.post_id = %s", (edited["post_id"],)) == [
        ("edited text", "HIGH", 1, processed_id)
    ]
    assert query(db, "SELECT post_content FROM rawposts WHERE post_id = %s",
                 (silver_post(11)["post_id"],)) == [("post 11",)]
    sink.close()


def test_a_tombstone_deletes_processed_then_raw(db):
    sink = target(db)
    sink.write_batch(stage_rows(batch()))
    later = T0 + dt.timedelta(minutes=1)
    result = sink.write_batch(stage_rows([tombstone(3, later), tombstone(4, later), tombstone(N + 5, later)]))
    assert (result.processed_deleted, result.raw_deleted) == (2, 2)
    assert counts(db) == (N - 2, N - 2)
    gone = silver_post(3)["post_id"]
    assert query(db, "SELECT count(*) FROM rawposts WHERE post_id = %s", (gone,)) == [(0,)]
    # an edit and the delete of the same post in one batch: the delete is newer and wins
    sink.write_batch(stage_rows([silver_post(5, later), tombstone(5, later + dt.timedelta(seconds=1))]))
    assert counts(db) == (N - 3, N - 3)
    sink.close()


@pytest.fixture
def private_postgres(settings, tmp_path):
    """A PostgreSQL cluster of this test's own (it gets stopped: never the shared test server)."""
    own = settings.model_copy(
        update={"state_dir": tmp_path / "state", "log_dir": tmp_path / "log", "postgres_port": free_port()})
    services.start_postgres(own)
    yield own
    services.stop_postgres(own)
    shutil.rmtree(services.postgres_data_dir(own), ignore_errors=True)


def test_server_stopped_mid_run_retries_fails_clearly_then_completes(private_postgres):
    own = private_postgres
    with scratch_database(own.postgres_conninfo()) as db:
        sink = target(db, attempts=3)
        logged: list[str] = []
        sink.log = logged.append
        posts = batch()
        sink.write_batch(stage_rows(posts[:20]))
        services.stop_postgres(own)
        with pytest.raises(SyncError) as failure:
            sink.write_batch(stage_rows(posts[20:]))
        message = str(failure.value)
        assert "after 3 tries" in message and "tootlake sync" in message and "checkpoint" in message
        assert "password" not in message.lower()
        assert len([line for line in logged if "retry" in line]) == 2
        services.start_postgres(own)
        assert counts(db) == (20, 20)  # nothing of the failed batch was committed
        sink.write_batch(stage_rows(posts[20:]))  # the rerun of the failed batch
        assert counts(db) == (N, N)
        sink.close()


def _at(post: dict, version: int, change: str = "update_postimage", table: str = "lake-a") -> dict:
    deleted = {"is_deleted": True} if change == "delete" else {}
    return {**post, **deleted, "_commit_version": version, "_change_type": change, "_table_id": table}


def _text(db: str, i: int) -> str | None:
    rows = query(db, "SELECT post_content FROM rawposts WHERE post_id = %s", (silver_post(i)["post_id"],))
    return rows[0][0] if rows else None


def test_a_later_commit_wins_even_when_silver_clock_stepped_back(db):
    sink = target(db)
    sink.write_batch(stage_rows([_at(silver_post(1, T0, text="v3"), 3)]))
    sink.write_batch(stage_rows([_at(silver_post(1, T0 - dt.timedelta(hours=1), text="v4"), 4)]))
    assert _text(db, 1) == "v4"
    sink.write_batch(stage_rows([_at(silver_post(1, T0 + dt.timedelta(hours=1), text="v2 replayed"), 2)]))
    assert _text(db, 1) == "v4"  # an older commit never wins, whatever its clock says


def test_a_restore_split_over_two_batches_keeps_the_post_live(db):
    sink = target(db)
    post = silver_post(2, T0, text="live")
    sink.write_batch(stage_rows([_at(post, 5, "insert")]))
    # restore at commit 9 = delete + insert of the same row; the insert arrives first, then the delete
    sink.write_batch(stage_rows([_at(post, 9, "insert")]))
    result = sink.write_batch(stage_rows([_at(post, 9, "delete")]))
    assert result.raw_deleted == 0 and _text(db, 2) == "live"
    # other order: deleted, then re-inserted -> live again
    sink.write_batch(stage_rows([_at(post, 12, "delete")]))
    sink.write_batch(stage_rows([_at(post, 12, "insert")]))
    assert _text(db, 2) == "live" and counts(db) == (1, 1)


def test_rows_from_another_lake_fall_back_to_updated_at(db):
    sink = target(db)
    sink.write_batch(stage_rows([_at(silver_post(3, T0, text="old lake"), 50, table="lake-a")]))
    sink.write_batch(stage_rows([_at(silver_post(3, T0 + dt.timedelta(minutes=1), text="new lake"), 1,
                                     table="lake-b")]))
    assert _text(db, 3) == "new lake"


def test_the_order_columns_are_added_to_a_database_created_before_them(postgres_conninfo):
    with scratch_database(postgres_conninfo, init=False) as db:
        import psycopg2

        from tootlake.pipelines.databases import dbinit

        with psycopg2.connect(db) as conn, conn.cursor() as cur:  # the tables as an older release made them
            for path in dbinit.script_files("postgres"):
                if not path.name.startswith("035"):
                    cur.execute(path.read_text())
        with psycopg2.connect(db) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO rawposts (post_id, platform_id, post_content, updated_at) "
                        "VALUES (%s, 1, 'before', %s)", (silver_post(4)["post_id"], T0))
        dbinit.init_postgres(db, log=lambda _: None)  # `tootlake db init` again: adds the columns, keeps rows
        assert _text(db, 4) == "before"
        sink = target(db)
        later = T0 + dt.timedelta(minutes=1)  # no version on the old row: the clock decides
        sink.write_batch(stage_rows([_at(silver_post(4, later, text="after migration"), 1)]))
        assert _text(db, 4) == "after migration"
        sink.close()


def _unscored_on_purpose(i: int, note: str, **overrides) -> dict:
    """A post silver left unscored because its language is outside the models' coverage."""
    return silver_post(i, threat_label=None, threat_score=None, threat_level=None, contains_hate_speech=None,
                       sentiment_label=None, sentiment_score=None, scoring_note=note, **overrides)


def test_scoring_note_round_trips_with_null_scores_and_success(db):
    sink = target(db)
    posts = [silver_post(0, language="en"), _unscored_on_purpose(1, "language_not_covered:ja", language="ja"),
             _unscored_on_purpose(2, "language_unknown", language=None)]
    sink.write_batch(stage_rows(posts))
    rows = query(db, "SELECT raw_post_id, processing_status, scoring_note, threat_level, sentiment_label "
                     "FROM processedposts ORDER BY raw_post_id")
    assert [row[1:] for row in rows] == [("SUCCESS", None, "NONE", "neutral"),
                                         ("SUCCESS", "language_not_covered:ja", None, None),
                                         ("SUCCESS", "language_unknown", None, None)]
    # the coverage widens (a new model scores the post): the newer row clears the note
    later = T0 + dt.timedelta(minutes=1)
    sink.write_batch(stage_rows([silver_post(1, later, language="ja", scoring_note=None)]))
    assert query(db, "SELECT scoring_note, threat_level FROM processedposts WHERE raw_post_id = %s",
                 (silver_post(1)["post_id"],)) == [(None, "NONE")]
    sink.close()


def test_the_scoring_note_is_added_to_a_database_created_before_it(postgres_conninfo):
    with scratch_database(postgres_conninfo, init=False) as db:
        import psycopg2

        from tootlake.pipelines.databases import dbinit

        with psycopg2.connect(db) as conn, conn.cursor() as cur:  # the tables as the last release made them
            for path in dbinit.script_files("postgres"):
                if not path.name.startswith("036"):
                    cur.execute(path.read_text())
            cur.execute("SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'processedposts' AND column_name = 'scoring_note'")
            assert cur.fetchone() == (0,)
        dbinit.init_postgres(db, log=lambda _: None)  # `tootlake db init` again: adds the column
        sink = target(db)
        sink.write_batch(stage_rows([_unscored_on_purpose(5, "language_not_covered:de", language="de")]))
        assert query(db, "SELECT scoring_note, processing_status FROM processedposts") == [
            ("language_not_covered:de", "SUCCESS")]
        sink.close()
