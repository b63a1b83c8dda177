"""bronze/posts_raw: one row per Kafka record of the raw-posts topic, append-only."""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.rules import row, unique
from tootlake.catalog.table import Table, has_rows, not_null, unique_together
from tootlake.catalog.vocab import BRONZE_POSTS_RAW

POSTS_RAW_COLUMNS = [
    "key",  # the post key (status uri), UTF-8
    "value",  # the JSON envelope, verbatim UTF-8
    "topic",
    "partition",
    "offset",
    "kafka_timestamp",
    "ingested_at",
    "ingest_date",  # partition column
]


def posts_raw(kafka_records: DataFrame, ingested_at: Column) -> DataFrame:
    """One row per Kafka record: key and value as text plus the record's Kafka coordinates.

    `kafka_records` has the Kafka source schema (key/value binary, topic, partition, offset,
    timestamp); `ingested_at` is passed in (e.g. `F.current_timestamp()`) so the transform holds no clock.
    """
    return kafka_records.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        F.col("topic"),
        F.col("partition").cast("int").alias("partition"),
        F.col("offset").cast("long").alias("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        ingested_at.alias("ingested_at"),
    ).withColumn("ingest_date", F.to_date("ingested_at"))


POSTS_RAW = Table(
    BRONZE_POSTS_RAW,
    grain="one row per Kafka record of the raw-posts topic (append-only, exactly once)",
    key=("partition", "offset"),
    columns=tuple(POSTS_RAW_COLUMNS),
    partition_by=("ingest_date",),
    rules={
        "kafka->bronze": (
            row("value_present", "value IS NOT NULL", "warn", "the Kafka record has a value"),
            row("key_present", "key IS NOT NULL AND trim(key) <> ''", "warn", "the Kafka record has a key"),
            unique("position_unique", ("topic", "partition", "offset"), "fail"),
        ),
    },
    suite=(
        has_rows(),
        *not_null("topic", "partition", "offset", "value", "ingested_at"),
        unique_together("topic", "partition", "offset"),
    ),
)
