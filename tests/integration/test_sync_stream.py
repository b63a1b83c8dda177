"""The sync job end to end: silver/posts (Delta, change data feed) -> PostgreSQL, with Spark.

Covers: N silver posts -> N rows; a rerun with nothing new changes nothing; edits, tombstones and failed
scoring in later silver commits; the gold copy; the server stopped during a run (checkpoint not advanced,
rerun completes); SIGKILL mid-sync and restart (exact counts).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from sync_support import (  # tests/integration is on sys.path (no __init__)
    T0,
    counts,
    free_port,
    query,
    scratch_database,
    silver_post,
    snapshot,
    tombstone,
)

from tootlake.pipelines.databases.retry import SyncError
from tootlake.pipelines.jobs.sync import run_sync
from tootlake.pipelines.ops import services
from tootlake.silver.schema import POSTS_SCHEMA

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


def lake_settings(settings, tmp_path: Path, conninfo: str, **extra):
    import psycopg2.extensions

    parts = psycopg2.extensions.parse_dsn(conninfo)
    return settings.model_copy(update={
        "lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "checkpoints",
        "postgres_port": int(parts["port"]), "postgres_db": parts["dbname"],
        "sync_retry_attempts": 2, "sync_retry_base_s": 0.2, **extra,
    })


def append_silver(spark, own, rows: list[dict]) -> None:
    spark.createDataFrame(rows, POSTS_SCHEMA).coalesce(1).write.format("delta").mode("append").save(
        str(own.table_path("silver.posts")))


def merge_silver(spark, own, rows: list[dict]) -> None:
    """Upsert like the silver job does (latest wins): produces update pre/post images in the change feed."""
    source = spark.createDataFrame(rows, POSTS_SCHEMA)
    (DeltaTable.forPath(spark, str(own.table_path("silver.posts"))).alias("t")
     .merge(source.alias("s"), "t.post_id = s.post_id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())


def test_stream_sync_edits_deletes_failed_gold_and_rerun(spark, settings, postgres_conninfo, tmp_path):
    with scratch_database(postgres_conninfo) as db:
        own = lake_settings(settings, tmp_path, db)
        n = 40
        append_silver(spark, own, [silver_post(i) for i in range(n)])
        gold = spark.createDataFrame(
            [(dt.datetime(2026, 3, 1, 12), dt.datetime(2026, 3, 1, 12, 1), 3, ["a", "b"], "x\x00y")],
            "window_start timestamp, window_end timestamp, posts long, tags array<string>, note string")
        gold = gold.selectExpr("named_struct('start', window_start, 'end', window_end) AS window", "posts",
                               "tags", "note")
        gold.write.format("delta").save(str(own.table_path("gold.posts_per_minute")))

        first = run_sync(own, spark, log=lambda _: None)
        assert counts(db) == (n, n)
        assert first["postgres"]["raw_upserted"] == n and first["gold_tables"] == {"posts_per_minute": 1}
        assert query(db, "SELECT window_start, posts, tags, note FROM gold.posts_per_minute") == [
            (dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), 3, ["a", "b"], "xy")]

        later = T0 + dt.timedelta(minutes=10)
        merge_silver(spark, own, [
            silver_post(1, later, text="edited", edited_at=later.replace(tzinfo=None)),
            tombstone(2, later),
            silver_post(3, later, processing_status="FAILED", threat_score=None, threat_level=None,
                        threat_label=None, contains_hate_speech=None),
            silver_post(n, later),  # a new post
        ])
        second = run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert second["postgres"]["raw_deleted"] == 1
        assert counts(db) == (n, n)  # one deleted, one new
        assert query(db, "SELECT post_content FROM rawposts WHERE post_id = %s",
                     (silver_post(1)["post_id"],)) == [("edited",)]
        assert query(db, "SELECT count(*) FROM rawposts WHERE post_id = %s", (silver_post(2)["post_id"],)) \
            == [(0,)]
        assert query(db, "SELECT processing_status FROM processedposts WHERE raw_post_id = %s",
                     (silver_post(3)["post_id"],)) == [("FAILED",)]

        before = snapshot(db)
        third = run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert third["rows_read"] == 0 and snapshot(db) == before

        # a new checkpoint re-reads the whole table as of its latest commit: rows last written by an
        # older commit are rewritten with the same content (the order key is the silver commit), the rest
        # and the tombstone change nothing
        content = "SELECT post_id, post_content, updated_at FROM rawposts ORDER BY post_id"
        rows_before = query(db, content)
        shutil.rmtree(own.checkpoint_path("sync-postgres"))
        replay = run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert replay["rows_read"] == n + 1 and replay["postgres"]["raw_upserted"] == n - 3
        assert query(db, content) == rows_before and counts(db) == (n, n)


def test_server_stopped_during_a_run_then_rerun_completes(spark, settings, tmp_path):
    own = settings.model_copy(update={"state_dir": tmp_path / "state", "log_dir": tmp_path / "log",
                                      "postgres_port": free_port()})
    services.start_postgres(own)
    try:
        with scratch_database(own.postgres_conninfo()) as db:
            own = lake_settings(own, tmp_path, db)
            for part in range(3):  # three silver commits -> three micro-batches (one file each)
                append_silver(spark, own, [silver_post(i) for i in range(part * 10, part * 10 + 10)])

            def stop_before_second_batch(batch_id: int) -> None:
                if batch_id == 1:
                    services.stop_postgres(own)

            logged: list[str] = []
            with pytest.raises(SyncError, match="checkpoint did not advance"):
                run_sync(own, spark, max_files_per_trigger=1, copy_gold=False,
                         before_batch=stop_before_second_batch, log=logged.append)
            assert any("retry 1/1" in line for line in logged)
            services.start_postgres(own)
            assert counts(db) == (10, 10)
            result = run_sync(own, spark, max_files_per_trigger=1, copy_gold=False, log=lambda _: None)
            assert counts(db) == (30, 30)
            assert result["postgres"]["raw_upserted"] == 20
    finally:
        services.stop_postgres(own)
        shutil.rmtree(services.postgres_data_dir(own), ignore_errors=True)


KILLABLE = textwrap.dedent("""
    import sys, time
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark
    from tootlake.pipelines.jobs.sync import run_sync
    settings = load_settings()
    spark = build_spark(settings, "sync-sigkill-test")
    delay = float(sys.argv[1])
    print(run_sync(settings, spark, max_files_per_trigger=1, copy_gold=False,
                   before_batch=lambda batch_id: time.sleep(delay)), flush=True)
""")


def test_sigkill_mid_sync_then_restart_gives_exact_counts(spark, settings, postgres_conninfo, tmp_path):
    with scratch_database(postgres_conninfo) as db:
        own = lake_settings(settings, tmp_path, db)
        parts, per_part = 8, 25
        for part in range(parts):
            append_silver(spark, own, [silver_post(i) for i in range(part * per_part, (part + 1) * per_part)])
        env = {**os.environ, "TOOTLAKE_HOME": str(REPO_ROOT), "LAKE_DIR": str(own.lake_dir),
               "CHECKPOINT_DIR": str(own.checkpoint_dir), "POSTGRES_PORT": str(own.postgres_port),
               "POSTGRES_DB": own.postgres_db, "SPARK_MASTER": "local[1]", "SPARK_DRIVER_MEMORY": "1g"}
        env.pop("POSTGRES_DSN", None)
        script = tmp_path / "killable_sync.py"
        script.write_text(KILLABLE)

        proc = subprocess.Popen([sys.executable, str(script), "3"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 600
        seen = 0
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                seen = counts(db)[0]
                if seen >= per_part:
                    break
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the Python driver and its Spark JVM
            proc.wait()
        killed_at = counts(db)
        assert per_part <= killed_at[0] < parts * per_part, killed_at  # killed mid-run, after a commit
        assert killed_at[0] == killed_at[1]  # a batch commits raw and processed together

        rerun = subprocess.run([sys.executable, str(script), "0"], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=900)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert counts(db) == (parts * per_part, parts * per_part)
        assert query(db, "SELECT count(DISTINCT post_id) FROM rawposts") == [(parts * per_part,)]


def test_restore_then_sync_keeps_live_posts_and_odd_rows_go_to_quarantine(
        spark, settings, postgres_conninfo, tmp_path):
    with scratch_database(postgres_conninfo) as db:
        own = lake_settings(settings, tmp_path, db)
        posts = [silver_post(i) for i in range(5)]
        posts.append(silver_post(5, visibility="v" * 40))  # too long for varchar(32): not from silver
        append_silver(spark, own, posts)
        first = run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert counts(db) == (5, 5) and first["rejected"] == 1
        quarantine = spark.read.format("delta").load(str(own.table_path("silver.posts_quarantine"))).collect()
        assert [list(r.rules) for r in quarantine] == [["sync_rejected"]]
        assert quarantine[0].key == posts[5]["post_id"] and "visibility is 40 chars" in quarantine[0].reason

        later = T0 + dt.timedelta(hours=1)
        merge_silver(spark, own, [silver_post(i, later, text=f"edited {i}") for i in range(3)])
        run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert query(db, "SELECT count(*) FROM rawposts WHERE post_content LIKE 'edited%%'", ())[0][0] == 3

        # restore: the change feed shows delete + insert of each row, equal updated_at per pair
        DeltaTable.forPath(spark, str(own.table_path("silver.posts"))).restoreToVersion(0)
        run_sync(own, spark, copy_gold=False, log=lambda _: None)
        assert counts(db) == (5, 5)  # nothing deleted
        assert query(db, "SELECT count(*) FROM rawposts WHERE post_content LIKE 'edited%%'", ())[0][0] == 0
        quarantined = spark.read.format("delta").load(str(own.table_path("silver.posts_quarantine")))
        assert quarantined.count() == 2  # the restore's commit carried the odd row again
        run_sync(own, spark, copy_gold=False, log=lambda _: None)  # a rerun quarantines nothing twice
        assert spark.read.format("delta").load(str(own.table_path("silver.posts_quarantine"))).count() == 2


def test_a_batch_above_the_chunk_size_is_written_in_chunks_of_whole_posts(spark, settings, postgres_conninfo,
                                                                          tmp_path):
    """SYNC_CHUNK_ROWS bounds what the driver holds: a batch of 290 change rows with a chunk of 100 goes in
    3 chunks; posts edited twice in the batch keep their latest version (a post's rows share a chunk)."""
    with scratch_database(postgres_conninfo) as db:
        own = lake_settings(settings, tmp_path, db, sync_chunk_rows=100)
        append_silver(spark, own, [silver_post(i) for i in range(10)])
        run_sync(own, spark, copy_gold=False, log=lambda _: None)  # the checkpoint: the next batch = changes
        first, second = T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=9)
        merge_silver(spark, own, [silver_post(i) for i in range(10, 260)])
        merge_silver(spark, own, [silver_post(i, first, text=f"first edit {i}") for i in range(20)])
        merge_silver(spark, own, [silver_post(i, second, text=f"second edit {i}") for i in range(20)]
                     + [tombstone(i, second) for i in range(20, 25)])
        lines: list[str] = []
        result = run_sync(own, spark, copy_gold=False, log=lines.append)
        assert result["batches"] == 1
        assert sum(" chunk " in line for line in lines) == 3, lines
        assert counts(db) == (255, 255)
        edited = dict(query(db, "SELECT post_id, post_content FROM rawposts "
                                "WHERE post_content LIKE '%%edit%%'"))
        assert edited == {silver_post(i)["post_id"]: f"second edit {i}" for i in range(20)}
