"""Streaming 1-minute counts: watermark, late events counted (never silently lost), replays are no-ops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gold_reference import connect, duckdb_rows, post, reference_sql, spark_rows

from tootlake.pipelines.bench.gold import load_statuses, silver_rows
from tootlake.pipelines.jobs.gold_stream import LATE_EVENTS, POSTS_PER_MINUTE, MinuteCounter, run_gold_stream
from tootlake.silver.schema import POSTS_SCHEMA

pytestmark = pytest.mark.integration
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _frame(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in POSTS_SCHEMA.fields) for r in rows], POSTS_SCHEMA)


def _at(minutes: float, name: str, **kw):
    return post(name, T0 + timedelta(minutes=minutes), **kw)


@pytest.fixture
def stream_settings(settings, tmp_path):
    return settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "ck",
                                       "gold_watermark_minutes": 10})


def _table(spark, settings, name):
    return spark.read.format("delta").load(str(settings.table_path(name)))


def _windows(spark, settings):
    return {(r["window_start"].strftime("%H:%M"), r["posts"])
            for r in _table(spark, settings, POSTS_PER_MINUTE).collect()}


def test_foreach_batch_watermark_and_replay(spark, stream_settings):
    sink = MinuteCounter(stream_settings, spark, progress=False)
    sink.reset()
    sink.ensure_tables()
    batch0 = [_at(1.5, "a"), _at(1.7, "b"), _at(30.2, "c"), _at(5, "gone", is_deleted=True)]
    sink(_frame(spark, batch0), 0)
    assert _windows(spark, stream_settings) == {("12:01", 2), ("12:30", 1)}

    # watermark for batch 1 = 12:30:12 - 10 min = 12:20:12
    batch1 = [_at(25.5, "in-watermark"), _at(30.9, "same-window"), _at(20.1, "window-ends-12:21"),
              _at(19.5, "late-1"), _at(2.0, "late-2")]
    sink(_frame(spark, batch1), 1)
    expected = {("12:01", 2), ("12:30", 2), ("12:25", 1), ("12:20", 1)}
    assert _windows(spark, stream_settings) == expected
    metrics = {r["batch_id"]: r for r in _table(spark, stream_settings, LATE_EVENTS).collect()}
    m0 = metrics[0]
    assert (m0["late_events"], m0["watermark"], m0["input_rows"]) == (0, None, 3)
    m1 = metrics[1]
    assert (m1["input_rows"], m1["on_time_rows"], m1["late_events"]) == (5, 3, 2)
    assert m1["watermark"] == datetime(2024, 5, 1, 12, 20, 12)
    assert m1["min_late_event_time"] == datetime(2024, 5, 1, 12, 2)

    # a replayed batch (same id after a crash) changes nothing
    sink(_frame(spark, batch1), 1)
    assert _windows(spark, stream_settings) == expected
    assert _table(spark, stream_settings, LATE_EVENTS).count() == 2
    # the next batch's starting point: kept in memory by the sink that wrote batch 1, read from
    # gold/late_events by a new one (a restarted query): the same
    restarted = MinuteCounter(stream_settings, spark, progress=False)
    assert sink.last is not None and sink.last[0] == 1
    assert restarted.previous_max_event_time(2) == sink.previous_max_event_time(2) == sink.last[1]


def test_stream_from_silver_change_feed(spark, stream_settings, shared_data):
    silver_path = str(stream_settings.table_path("silver.posts"))
    rows = silver_rows(load_statuses(shared_data))
    _frame(spark, rows).write.format("delta").save(silver_path)  # CDF off: the stream turns it on

    first = run_gold_stream(stream_settings, spark, progress=False)
    assert first["late_events"] == 0
    con = connect(rows)
    columns, got = spark_rows(_table(spark, stream_settings, POSTS_PER_MINUTE).drop("last_batch_id"))
    assert got == duckdb_rows(con, reference_sql(5)["posts_per_minute"], columns)
    assert first["posts_per_minute"] == len(got)

    # new posts: one inside the watermark of the newest event, one far too late, one edit of an old post
    newest = max(r["created_at"] for r in rows)
    fresh = post("fresh", newest - timedelta(minutes=3))
    too_late = post("too-late", newest - timedelta(hours=5))
    edited = dict(rows[0], text_length=999)
    from delta.tables import DeltaTable
    (DeltaTable.forPath(spark, silver_path).alias("t")
     .merge(_frame(spark, [fresh, too_late, edited]).alias("s"), "t.post_id = s.post_id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    second = run_gold_stream(stream_settings, spark, progress=False)
    assert second["late_events"] == 1
    columns, got = spark_rows(_table(spark, stream_settings, POSTS_PER_MINUTE).drop("last_batch_id"))
    # the edit is not a new post; the late post is counted in late_events, not in its window
    assert got == duckdb_rows(connect(rows + [fresh]), reference_sql(5)["posts_per_minute"], columns)

    third = run_gold_stream(stream_settings, spark, progress=False)  # nothing new: nothing changes
    assert third == second


def test_a_restore_in_the_change_feed_is_not_counted_again(spark):
    from tootlake.gold.windowed import new_posts

    changes = spark.createDataFrame(
        [("a", "insert", 3), ("b", "insert", 3),   # new posts
         ("a", "delete", 7), ("a", "insert", 7),   # restore: a rewritten, not new
         ("c", "insert", 7), ("b", "delete", 9)],  # c is new; b physically deleted
        "post_id string, _change_type string, _commit_version long")
    assert sorted(r.post_id for r in new_posts(changes).collect()) == ["a", "b", "c"]
    assert "_change_type" not in new_posts(changes).columns
