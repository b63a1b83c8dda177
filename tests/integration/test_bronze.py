"""Bronze against the real broker and real Spark + Delta: exact counts, and exactly once across SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tootlake.bronze.filters import FilterConfig
from tootlake.pipelines.jobs.bronze import BRONZE_TABLE, run_bronze
from tootlake.pipelines.source.mastodon import replay_source
from tootlake.pipelines.source.producer import produce_events

pytestmark = pytest.mark.integration

NO_FILTERS = FilterConfig(exclude_reblogs=False)


def _isolated(settings, tmp_path: Path, topic: str):
    """Settings with their own topic, lake and checkpoints, on the test broker."""
    return settings.model_copy(update={
        "kafka_topic": topic,
        "lake_dir": tmp_path / "lake",
        "checkpoint_dir": tmp_path / "checkpoints",
    })


def _produce_timeline(settings, shared_data: Path) -> list[str]:
    timeline = shared_data / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
    events = list(replay_source(settings, [timeline]))
    report = produce_events(settings, events, filters=NO_FILTERS)
    assert report.failed == 0
    assert report.delivered == len(events) > 900
    return [event.key for event in events]


def test_replay_lands_in_bronze_exactly_once(
    spark, settings, kafka_bootstrap, shared_data, unique_name, tmp_path
):
    settings = _isolated(settings, tmp_path, unique_name)
    keys = _produce_timeline(settings, shared_data)

    report = run_bronze(spark, settings)
    bronze = spark.read.format("delta").load(str(settings.table_path(BRONZE_TABLE)))

    assert report.rows == len(keys)
    assert bronze.count() == len(keys)
    assert sorted(row.key for row in bronze.select("key").collect()) == sorted(keys)
    assert {row.partition for row in bronze.select("partition").distinct().collect()} == {0, 1, 2}
    assert bronze.where("value IS NULL OR ingest_date IS NULL").count() == 0

    # A second available-now run finds nothing new.
    assert run_bronze(spark, settings).rows == 0
    assert spark.read.format("delta").load(str(settings.table_path(BRONZE_TABLE))).count() == len(keys)


def test_sigkill_mid_stream_then_restart_has_no_loss_and_no_duplicate(
    spark, settings, kafka_bootstrap, shared_data, unique_name, tmp_path
):
    settings = _isolated(settings, tmp_path, unique_name)
    keys = _produce_timeline(settings, shared_data)
    table = settings.table_path(BRONZE_TABLE)

    env = {
        **os.environ,
        "TOOTLAKE_HOME": str(settings.tootlake_home),
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "KAFKA_TOPIC": settings.kafka_topic,
        "LAKE_DIR": str(settings.lake_dir),
        "CHECKPOINT_DIR": str(settings.checkpoint_dir),
        "SPARK_MASTER": "local[1]",
        "SPARK_DRIVER_MEMORY": "1g",
    }
    job = subprocess.Popen(
        [sys.executable, "-m", "tootlake.pipelines.jobs.bronze", "--trigger", "1 second",
         "--max-offsets-per-trigger", "60"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        # Kill once at least two batches are committed, long before the ~16 batches are done.
        deadline = time.monotonic() + 300
        while not (table / "_delta_log" / "00000000000000000001.json").exists():
            assert job.poll() is None, "bronze job exited before it was killed"
            assert time.monotonic() < deadline, "bronze job committed nothing in 300 s"
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)

    partial = spark.read.format("delta").load(str(table)).count()
    assert 0 < partial < len(keys), "the kill should land mid-stream"

    run_bronze(spark, settings)  # restart from the same checkpoint
    bronze = spark.read.format("delta").load(str(table))
    assert bronze.count() == len(keys)
    assert bronze.select("partition", "offset").distinct().count() == len(keys)
    assert sorted(row.key for row in bronze.select("key").collect()) == sorted(keys)


def test_offsets_deleted_before_bronze_read_them_are_a_visible_dq_failure(
    spark, settings, kafka_bootstrap, unique_name, tmp_path
):
    import datetime as dt

    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from deltalake import DeltaTable

    from tootlake.pipelines.jobs.bronze import LOST_OFFSETS_RULE
    from tootlake.pipelines.ops.status import collect_status, format_status
    from tootlake.pipelines.quality.guard import METRICS_TABLE
    from tootlake.pipelines.source.mastodon import SourceEvent

    settings = _isolated(settings, tmp_path, unique_name)
    now = dt.datetime.now(dt.UTC)

    def events(start: int, n: int) -> list[SourceEvent]:
        return [SourceEvent("status", {"id": str(i), "created_at": "2024-01-01T00:00:00Z", "content": "x",
                                       "account": {"id": "1"}}, None, "loss.example", now)
                for i in range(start, start + n)]

    assert produce_events(settings, events(0, 30), filters=NO_FILTERS).delivered == 30
    assert run_bronze(spark, settings).rows == 30
    read_up_to = {r.partition: r.next for r in spark.read.format("delta").load(
        str(settings.table_path(BRONZE_TABLE))).groupBy("partition").agg({"offset": "max"})
        .selectExpr("partition", "`max(offset)` + 1 AS next").collect()}
    assert produce_events(settings, events(30, 60), filters=NO_FILTERS).delivered == 60
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": unique_name})
    cut, expected_lost = [], 0
    for partition in range(3):
        _, high = consumer.get_watermark_offsets(TopicPartition(settings.kafka_topic, partition), timeout=10)
        start = read_up_to.get(partition, 0)
        lost = min(5, high - start)
        expected_lost += lost
        cut.append(TopicPartition(settings.kafka_topic, partition, start + lost))
    consumer.close()
    # the broker deletes up to 5 unread records of each partition, as retention would
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for tp in cut:
        if tp.offset > 0:
            for future in admin.delete_records([tp], request_timeout=30, operation_timeout=30).values():
                future.result(timeout=60)
    assert expected_lost > 0

    lines: list[str] = []
    report = run_bronze(spark, settings, log=lines.append)
    assert report.rows == 60 - expected_lost  # the stream went on with what was left
    assert any(line.startswith("[bronze] ERROR:") for line in lines)
    metrics = DeltaTable(str(settings.table_path(METRICS_TABLE))).to_pyarrow_table().to_pylist()
    lost_rows = [m for m in metrics if m["rule"] == LOST_OFFSETS_RULE]
    assert sum(m["rows_failed"] for m in lost_rows) == expected_lost
    assert all(m["severity"] == "fail" for m in lost_rows)
    status = collect_status(settings)
    assert status["dq"]["kafka_offsets_lost"]["records"] == expected_lost
    assert f"DATA LOSS: {expected_lost} Kafka record(s)" in format_status(status)
