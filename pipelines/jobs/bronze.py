"""Bronze: Kafka topic -> Delta `bronze/posts_raw`, exactly once through the stream checkpoint.

The Delta sink records each micro-batch id in the table's transaction log, and the Kafka offsets of
each batch are written to the checkpoint before the batch runs, so a restart after a crash (even
SIGKILL) re-runs the unfinished batch with the same offsets and Delta skips a batch it already has.

Entry point: `spark-submit pipelines/jobs/bronze.py` or `tootlake bronze`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tootlake.bronze.posts_raw import POSTS_RAW, posts_raw
from tootlake.pipelines.jobs.streaming import (
    AVAILABLE_NOW,
    QueryReport,
    apply_trigger,
    parse_trigger,
    run_query,
)
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.settings import Settings

logger = logging.getLogger(__name__)

BRONZE_TABLE = POSTS_RAW.name
STATS_COLUMNS = "topic,partition,offset,kafka_timestamp,ingested_at"  # ingest_date: a partition column


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
        # Offsets that expired from the broker before we read them do not stop the stream: each batch's
        # loss is measured from its progress and recorded as a data-quality failure (lost_offsets).
        .option("failOnDataLoss", "false")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    rows = posts_raw(reader.load(), ingested_at=F.current_timestamp())
    lake = Lake(settings, spark)
    # Born with statistics on the Kafka coordinates only: min/max of the long key and value strings cost
    # write time and skip nothing (silver streams bronze whole; lookups go by partition and offset).
    lake.create(BRONZE_TABLE, rows.schema, partition_by=POSTS_RAW.partition_by,
                properties={"delta.dataSkippingStatsColumns": STATS_COLUMNS})
    writer = (
        lake.append_stream(rows, partition_by=POSTS_RAW.partition_by)
        .queryName("bronze_posts_raw")
        .option("checkpointLocation", settings.checkpoint_uri("bronze"))
    )
    return apply_trigger(writer, trigger).start(lake.location(BRONZE_TABLE))


LOST_OFFSETS_RULE = "kafka_offsets_lost"


def lost_offsets(progress: dict[str, Any]) -> tuple[int, int, str]:
    """(offsets the batch spans, records of that span it did not read, detail) from a streaming progress.

    The Kafka source plans a batch from the last offsets to the latest ones; when the broker already
    deleted part of that range (retention), the batch reads fewer records than it spans. Our producer is
    not transactional, so the topic holds no control records and every offset is one record. The first
    batch of a checkpoint has no start offsets: nothing can be measured for it.
    """
    span = lost = 0
    details = []
    for source in progress.get("sources") or []:
        start, end = (_offsets(source.get(k)) for k in ("startOffset", "endOffset"))
        if not start or not end:
            continue
        source_span = 0
        for topic, partitions in end.items():
            for partition, end_offset in partitions.items():
                begin = start.get(topic, {}).get(partition)
                if begin is not None and end_offset > begin:
                    source_span += end_offset - begin
                    details.append(f"{topic}/{partition} {begin}..{end_offset}")
        read = int(source.get("numInputRows") or 0)
        span += source_span
        lost += max(0, source_span - read)
    return span, lost, ", ".join(details)


def _offsets(value: Any) -> dict[str, dict[str, int]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    return {topic: {str(p): int(o) for p, o in parts.items()} for topic, parts in value.items()
            if isinstance(parts, dict)}


def record_lost_offsets(settings: Settings, run_id: str,
                        log: Callable[[str], None]) -> Callable[[dict], None]:
    """A progress callback: each batch with data appends its kafka_offsets_lost count to dq.metrics (a
    `fail` severity: records are gone), and a loss is printed as an ERROR line."""
    from tootlake.pipelines.quality.guard import append_metrics

    def on_progress(progress: dict[str, Any]) -> None:
        try:
            record(progress)
        except Exception as exc:  # noqa: BLE001 - a metrics write must not stop the stream; say so loudly
            log(f"[bronze] ERROR: could not record Kafka offset loss for batch {progress.get('batchId')}: "
                f"{type(exc).__name__}: {exc}")

    def record(progress: dict[str, Any]) -> None:
        span, lost, detail = lost_offsets(progress)
        if span == 0:
            return
        note = f"offsets {detail}" if lost else ""
        if lost:
            log(f"[bronze] ERROR: {lost} Kafka record(s) of batch {progress.get('batchId')} were deleted by "
                f"the broker before bronze read them ({detail}); see `tootlake status` / dq.metrics")
        append_metrics(settings, [{
            "run_id": run_id, "job": "bronze", "table": BRONZE_TABLE, "hop": "kafka->bronze",
            "rule": LOST_OFFSETS_RULE, "severity": "fail", "rows_checked": span, "rows_failed": lost,
            "batch_id": progress.get("batchId"), "checked_at": datetime.now(UTC), "note": note[:1000],
        }])

    return on_progress


def run_bronze(
    spark: SparkSession,
    settings: Settings,
    starting_offsets: str = "earliest",
    trigger: str = "available-now",
    max_offsets_per_trigger: int | None = None,
    log: Callable[[str], None] = logger.info,
) -> QueryReport:
    from tootlake.pipelines.quality.guard import new_run_id

    query = start_bronze_query(spark, settings, starting_offsets, trigger, max_offsets_per_trigger)
    on_progress = record_lost_offsets(settings, new_run_id("bronze"), log) if settings.dq_enabled else None
    return run_query(query, "bronze", log=log, on_progress=on_progress)

def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bronze", description=__doc__)
    parser.description = "Stream the Kafka topic into the Delta table bronze/posts_raw (exactly once)."
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], default="earliest",
                        help="where a NEW checkpoint starts reading; ignored once the checkpoint exists")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: read what is there, then exit) or an interval "
                             "such as '10 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None,
                        help="cap on Kafka records per micro-batch")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-bronze")
    report = run_bronze(spark, settings, args.starting_offsets, args.trigger, args.max_offsets_per_trigger)
    print(f"[bronze] done: {report.rows} rows in {report.batches} batches, {report.elapsed_s:.1f} s "
          f"-> {settings.table_uri(BRONZE_TABLE)}")
    from tootlake.pipelines.quality.gx import after_job_run

    after_job_run(settings, "bronze")  # GX suite once per run (bronze has no per-batch hook)
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from tootlake.pipelines.storage import exit_process

    exit_process(main())
