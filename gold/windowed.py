"""1-minute event-time windows for the streaming post counts (the stateful part lives in pipelines).

Event time is silver's `created_at`. A micro-batch's watermark is the maximum event time seen in all
*earlier* batches minus the allowed delay (Spark's own rule). A row is *late* when its window has already
closed, i.e. its window end <= watermark: it is not added to the window but counted as a late event.
"""

from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType, TimestampType

from tootlake.catalog.table import Table
from tootlake.catalog.vocab import GOLD_POSTS_PER_MINUTE
from tootlake.gold.base import live_posts

WINDOW = "1 minute"


def with_minute_window(silver_posts: DataFrame) -> DataFrame:
    """One row per live post with its tumbling 1-minute window [window_start, window_end)."""
    start = F.date_trunc("minute", "created_at")
    return (
        live_posts(silver_posts)
        .withColumn("window_start", start)
        .withColumn("window_end", start + F.expr(f"INTERVAL {WINDOW}"))
    )


def posts_per_minute(silver_posts: DataFrame) -> DataFrame:
    """One row per 1-minute event-time window with at least one live post: posts in that window."""
    return with_minute_window(silver_posts).groupBy("window_start", "window_end").agg(
        F.count("*").alias("posts")
    )


def watermark_for(previous_max_event_time: datetime | None, delay: timedelta) -> datetime | None:
    """The watermark of the next batch: max event time seen so far minus the delay (None before any data)."""
    return None if previous_max_event_time is None else previous_max_event_time - delay


def split_late(windowed_posts: DataFrame, watermark: datetime | None) -> tuple[DataFrame, DataFrame]:
    """(on-time rows, late rows) of `with_minute_window` output: late = window end <= watermark."""
    if watermark is None:
        return windowed_posts, windowed_posts.limit(0)
    late = F.col("window_end") <= F.lit(watermark).cast("timestamp")
    return windowed_posts.where(~late), windowed_posts.where(late)


def new_posts(changes: DataFrame) -> DataFrame:
    """Posts a change-data-feed batch of silver/posts really adds: one row per `insert`, except an insert
    beside a `delete` of the same post in the same commit (a file rewrite such as `restore`: the post was
    there before, counting it again would count it twice). A frame without change columns is all new."""
    if "_change_type" not in changes.columns:
        return changes
    rewritten = changes.where(F.col("_change_type") == "delete").select("post_id", "_commit_version")
    return (changes.where(F.col("_change_type") == "insert")
            .join(rewritten, ["post_id", "_commit_version"], "left_anti")
            .drop("_change_type", "_commit_version", "_commit_timestamp"))


# --- the streaming tables (written by pipelines/jobs/gold_stream.py) -----------------------------------
POSTS_PER_MINUTE_SCHEMA = StructType([
    StructField("window_start", TimestampType(), False),
    StructField("window_end", TimestampType(), False),
    StructField("posts", LongType(), False),
    StructField("last_batch_id", LongType(), False),  # the batch that last added to the window
])

# One row per micro-batch: the late_events metric and the watermark history.
LATE_EVENTS_SCHEMA = StructType([
    StructField("batch_id", LongType(), False),
    StructField("watermark", TimestampType(), True),  # null for the first batch
    StructField("max_event_time", TimestampType(), True),  # cumulative, after this batch
    StructField("input_rows", LongType(), False),  # live posts in the batch
    StructField("on_time_rows", LongType(), False),
    StructField("late_events", LongType(), False),
    StructField("min_late_event_time", TimestampType(), True),
    StructField("max_late_event_time", TimestampType(), True),
])

POSTS_PER_MINUTE = Table(
    GOLD_POSTS_PER_MINUTE, "one row per 1-minute event-time window with >= 1 live post",
    ("window_start", "window_end"), tuple(POSTS_PER_MINUTE_SCHEMA.fieldNames()), POSTS_PER_MINUTE_SCHEMA,
)
LATE_EVENTS = Table(
    "gold.late_events", "one row per micro-batch of the minute counts: watermark, late rows counted",
    ("batch_id",), tuple(LATE_EVENTS_SCHEMA.fieldNames()), LATE_EVENTS_SCHEMA,
)
