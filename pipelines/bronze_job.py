"""Bronze: Kafka topic -> Delta `bronze/posts_raw`, exactly once through the stream checkpoint.

The Delta sink records each micro-batch id in the table's transaction log, and the Kafka offsets of
each batch are written to the checkpoint before the batch runs, so a restart after a crash (even
SIGKILL) re-runs the unfinished batch with the same offsets and Delta skips a batch it already has.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tootlake.bronze.posts_raw import posts_raw
from tootlake.pipelines.settings import Settings
from tootlake.pipelines.streaming import QueryReport, apply_trigger, run_query

BRONZE_TABLE = "bronze.posts_raw"


def start_bronze_query(
    spark: SparkSession,
    settings: Settings,
    starting_offsets: str = "earliest",
    trigger: str = "available-now",
    max_offsets_per_trigger: int | None = None,
):
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", settings.kafka_topic)
        .option("startingOffsets", starting_offsets)
        # Offsets that expired from the broker before we read them are reported, not fatal.
        .option("failOnDataLoss", "false")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    rows = posts_raw(reader.load(), ingested_at=F.current_timestamp())
    writer = (
        rows.writeStream.format("delta")
        .queryName("bronze_posts_raw")
        .outputMode("append")
        .partitionBy("ingest_date")
        .option("checkpointLocation", str(settings.checkpoint_path("bronze")))
    )
    return apply_trigger(writer, trigger).start(str(settings.table_path(BRONZE_TABLE)))


def run_bronze(
    spark: SparkSession,
    settings: Settings,
    starting_offsets: str = "earliest",
    trigger: str = "available-now",
    max_offsets_per_trigger: int | None = None,
    log: Callable[[str], None] = print,
) -> QueryReport:
    query = start_bronze_query(spark, settings, starting_offsets, trigger, max_offsets_per_trigger)
    return run_query(query, "bronze", log=log)
