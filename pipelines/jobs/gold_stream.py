"""Streaming gold: 1-minute event-time post counts from silver/posts, with a watermark and a late-event count.

Source: the change data feed of silver/posts (silver MERGEs, so a plain Delta stream would fail on updates).
A stream started without a checkpoint first sees the table's current snapshot as inserts, then every
later commit. Only `insert` changes of live posts are counted: an edit does not create a post.

The watermark logic runs in `foreachBatch` (stateless on the Spark side, so nothing is dropped silently):
- watermark of batch N = max event time of batches < N (from gold/late_events) - GOLD_WATERMARK_MINUTES;
- a row whose window end <= watermark is late: it is counted in gold/late_events, not added to its window;
- other rows are MERGEd into gold/posts_per_minute (posts += batch count).
Replays are no-ops: the MERGE only touches windows whose `last_batch_id` < N and the metrics row is an
idempotent Delta append (txnAppId/txnVersion = batch id). A fresh checkpoint rebuilds both tables.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from tootlake.gold import windowed
from tootlake.gold.windowed import (
    LATE_EVENTS_SCHEMA,
    POSTS_PER_MINUTE_SCHEMA,
    new_posts,
    split_late,
    watermark_for,
    with_minute_window,
)
from tootlake.pipelines import storage
from tootlake.pipelines.jobs.gold import SILVER_POSTS, GoldInputMissing
from tootlake.pipelines.jobs.streaming import AVAILABLE_NOW, apply_trigger, run_query
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.settings import Settings

logger = logging.getLogger(__name__)

POSTS_PER_MINUTE = windowed.POSTS_PER_MINUTE.name
LATE_EVENTS = windowed.LATE_EVENTS.name
CHECKPOINT = "gold_posts_per_minute"
TXN_APP_ID = "tootlake-gold-posts-per-minute"


class MinuteCounter:
    """The foreachBatch sink: owns gold/posts_per_minute and gold/late_events."""

    def __init__(self, settings: Settings, spark: SparkSession, progress: bool = True) -> None:
        self.spark = spark
        self.lake = Lake(settings, spark)
        self.delay = timedelta(minutes=settings.gold_watermark_minutes)
        self.progress = progress
        # (batch id, max event time of the batches up to it) of the last batch this sink wrote: the next
        # batch needs no read of gold/late_events, which gains a file per batch
        self.last: tuple[int, datetime | None] | None = None

    def reset(self) -> None:
        """Drop both tables (their Delta txn ids belong to the old checkpoint's batch ids)."""
        for name in (POSTS_PER_MINUTE, LATE_EVENTS):
            self.lake.drop(name)

    def ensure_tables(self) -> None:
        self.lake.create(POSTS_PER_MINUTE, POSTS_PER_MINUTE_SCHEMA)
        self.lake.create(LATE_EVENTS, LATE_EVENTS_SCHEMA)

    def previous_max_event_time(self, batch_id: int) -> datetime | None:
        if self.last is not None and self.last[0] == batch_id - 1:
            return self.last[1]
        # the first batch of this sink, or a replay: from what earlier batches recorded
        row = (
            self.lake.read(LATE_EVENTS)
            .where(F.col("batch_id") < batch_id).agg(F.max("max_event_time")).first()
        )
        return row[0] if row else None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        previous_max = self.previous_max_event_time(batch_id)
        watermark = watermark_for(previous_max, self.delay)
        posts = (with_minute_window(new_posts(batch))
                 .select("created_at", "window_start", "window_end").persist())
        try:
            on_time, late = split_late(posts, watermark)
            counts = on_time.groupBy("window_start", "window_end").agg(F.count("*").alias("posts"))
            (
                self.lake.merge(POSTS_PER_MINUTE, counts, "t.window_start = s.window_start")
                .whenMatchedUpdate(
                    condition=f"t.last_batch_id < {int(batch_id)}",
                    set={"posts": "t.posts + s.posts", "last_batch_id": F.lit(batch_id).cast("long")},
                )
                .whenNotMatchedInsert(values={
                    "window_start": "s.window_start", "window_end": "s.window_end", "posts": "s.posts",
                    "last_batch_id": F.lit(batch_id).cast("long"),
                })
                .execute()
            )
            stats = posts.agg(F.count("*").alias("n"), F.max("created_at").alias("max_t")).first()
            late_stats = late.agg(
                F.count("*").alias("n"), F.min("created_at").alias("lo"), F.max("created_at").alias("hi")
            ).first()
        finally:
            posts.unpersist()
        max_event_time = max((t for t in (previous_max, stats["max_t"]) if t is not None), default=None)
        metric = self.spark.createDataFrame(
            [(int(batch_id), watermark, max_event_time, int(stats["n"]), int(stats["n"] - late_stats["n"]),
              int(late_stats["n"]), late_stats["lo"], late_stats["hi"])],
            LATE_EVENTS_SCHEMA,
        )
        # Idempotent append: Delta skips a (txnAppId, txnVersion) it has already committed.
        self.lake.append(LATE_EVENTS, metric, (TXN_APP_ID, int(batch_id)))
        self.last = (int(batch_id), max_event_time)
        if self.progress:
            logger.info(f"[gold-stream] batch {batch_id}: {stats['n']} posts, {late_stats['n']} late "
                        f"(watermark {watermark})")


def silver_inserts(settings: Settings, spark: SparkSession) -> DataFrame:
    """Streaming DataFrame of silver/posts' inserts and physical deletes (change data feed): the batch
    function keeps the inserts that add a post (`gold.windowed.new_posts`)."""
    lake = Lake(settings, spark)
    if not lake.exists(SILVER_POSTS):
        raise GoldInputMissing(f"no silver posts table at {lake.location(SILVER_POSTS)}: "
                               "run `tootlake silver` first")
    lake.ensure_change_feed(SILVER_POSTS, log=lambda line: logger.info(f"[gold-stream] {line}"))
    return (
        lake.read_stream(SILVER_POSTS, change_feed=True)
        .where(F.col("_change_type").isin("insert", "delete"))
    )


def start_gold_stream(
    settings: Settings, spark: SparkSession, trigger: str = AVAILABLE_NOW, progress: bool = True
) -> StreamingQuery:
    """Start the 1-minute counts stream (`available-now`: process what silver has, then stop)."""
    checkpoint = settings.checkpoint_uri(CHECKPOINT)
    sink = MinuteCounter(settings, spark, progress=progress)
    if not storage.is_folder(settings, f"{checkpoint}/offsets"):
        sink.reset()  # a fresh checkpoint restarts batch ids at 0: rebuild from the silver snapshot
    sink.ensure_tables()
    writer = (
        silver_inserts(settings, spark).writeStream.queryName("gold_posts_per_minute")
        .option("checkpointLocation", checkpoint).foreachBatch(sink)
    )
    return apply_trigger(writer, trigger).start()


def run_gold_stream(
    settings: Settings, spark: SparkSession, trigger: str = AVAILABLE_NOW, progress: bool = True
) -> dict[str, int]:
    """Run the stream until done (available-now) or a signal; returns windows and total late events."""
    query = start_gold_stream(settings, spark, trigger=trigger, progress=progress)
    run_query(query, "gold-stream", log=logger.info if progress else (lambda _line: None))
    lake = Lake(settings, spark)
    windows = lake.read(POSTS_PER_MINUTE).count()
    late = lake.read(LATE_EVENTS).agg(
        F.coalesce(F.sum("late_events"), F.lit(0))).first()[0]
    return {"posts_per_minute": windows, "late_events": int(late)}
