"""`tootlake bench bronze`: producer rate, bronze ingest rate and two raw limits on one topic.

The raw limits: a plain confluent-kafka consumer reading the same records, and the same consumer writing
bronze's columns with delta-rs (`write_deltalake`, 10,000-record appends): the goal is bronze >= 0.5 x the
latter. Bronze's rate is given twice: over the micro-batches' own execution time (what the stream sustains)
and over wall-clock time including the query start (what one available-now run costs).
"""

from __future__ import annotations

import argparse
import time
import uuid

from tootlake.bronze.filters import FilterConfig


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--records", type=int, default=50_000,
                        help="Kafka records to produce (the bundled statuses, repeated)")
    parser.add_argument("--batches", type=int, default=5,
                        help="micro-batches to split them into; the first (JVM warm-up) is reported apart")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.jobs.bronze import BRONZE_TABLE, run_bronze
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.source.mastodon import replay_source
    from tootlake.pipelines.source.producer import produce_events
    from tootlake.pipelines.spark import build_spark

    base = load_settings()
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    bench_dir = base.path(base.state_dir).parent / "bench" / f"bronze-{run_id}"
    settings = base.model_copy(update={
        "kafka_topic": f"bench-bronze-{run_id}",
        "lake_dir": bench_dir / "lake",
        "checkpoint_dir": bench_dir / "checkpoints",
    })
    services.ensure_services(settings, kafka=True, postgres=False)

    statuses = list(replay_source(settings))
    events = [statuses[i % len(statuses)] for i in range(args.records)]
    print(f"producing {len(events)} records ({len(statuses)} bundled statuses, repeated) "
          f"to topic {settings.kafka_topic}")
    produced = produce_events(settings, events, filters=FilterConfig(exclude_reblogs=False))
    print(f"  {produced.summary()}")

    consumer_rate = _plain_consumer_rate(settings, produced.delivered)
    writer_rate = _plain_writer_rate(settings, produced.delivered, bench_dir / "delta-rs" / "posts_raw")

    spark = build_spark(settings, "tootlake-bench-bronze")
    started = time.monotonic()
    per_batch = max(1, -(-produced.delivered // max(1, args.batches)))
    report = run_bronze(spark, settings, max_offsets_per_trigger=per_batch, log=lambda _line: None)
    wall_s = time.monotonic() - started
    rows = Lake(settings, spark).read(BRONZE_TABLE).count()
    timed = [(int(p["numInputRows"]), p["durationMs"].get("triggerExecution", 0) / 1000)
             for p in report.progress]
    steady = timed[1:] or timed  # batch 0 pays for class loading, codegen and the Kafka consumer start
    steady_rows, batch_s = sum(r for r, _ in steady), sum(s for _, s in steady)
    bronze_rate = steady_rows / batch_s if batch_s else 0.0
    first_rows, first_s = timed[0] if timed else (0, 0.0)

    print("\nbench bronze (one run, same topic)")
    print(f"  producer              {produced.rate:10.0f} msg/s")
    print(f"  plain kafka consumer  {consumer_rate:10.0f} msg/s   (raw limit of reading)")
    print(f"  consumer + delta-rs   {writer_rate:10.0f} rows/s  (raw limit: the same columns, "
          f"{WRITER_BATCH} records per append)")
    print(f"  bronze ingest         {bronze_rate:10.0f} rows/s  ({steady_rows} rows in {len(steady)} "
          f"batches after the first, {batch_s:.1f} s)")
    print(f"  bronze first batch    {first_rows / first_s if first_s else 0:10.0f} rows/s  "
          f"({first_rows} rows, {first_s:.1f} s incl. warm-up)")
    print(f"  bronze incl. start    {rows / wall_s:10.0f} rows/s  ({wall_s:.1f} s wall clock)")
    print(f"  ratio bronze / plain consumer = {bronze_rate / consumer_rate:.2f}")
    print(f"  ratio bronze / consumer + delta-rs = {bronze_rate / writer_rate:.2f}  (goal >= 0.5)")
    print(f"  tables and checkpoints: {bench_dir}")
    return 0 if rows == produced.delivered else 1


WRITER_BATCH = 10_000


def _consumer(settings, group: str):
    """A confluent-kafka consumer of the whole topic, in a group of its own (reads from the start)."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"{group}-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([settings.kafka_topic])
    return consumer


def _plain_writer_rate(settings, expected: int, path) -> float:
    """Rows/s of a bare confluent-kafka consumer that writes bronze's columns with delta-rs
    (`write_deltalake`, WRITER_BATCH records per append, partitioned by ingest_date)."""
    from datetime import UTC, datetime

    import pyarrow as pa
    from deltalake import write_deltalake

    schema = pa.schema([("key", pa.string()), ("value", pa.string()), ("topic", pa.string()),
                        ("partition", pa.int32()), ("offset", pa.int64()),
                        ("kafka_timestamp", pa.timestamp("us", "UTC")),
                        ("ingested_at", pa.timestamp("us", "UTC")), ("ingest_date", pa.date32())])
    consumer = _consumer(settings, "bench-writer")
    pending: list = []
    written, first_at = 0, None

    def flush() -> None:
        nonlocal written
        now = datetime.now(UTC)
        columns = {
            "key": [m.key().decode("utf-8", "replace") if m.key() else None for m in pending],
            "value": [m.value().decode("utf-8", "replace") if m.value() else None for m in pending],
            "topic": [m.topic() for m in pending], "partition": [m.partition() for m in pending],
            "offset": [m.offset() for m in pending],
            "kafka_timestamp": [datetime.fromtimestamp(m.timestamp()[1] / 1000, UTC) for m in pending],
            "ingested_at": [now] * len(pending), "ingest_date": [now.date()] * len(pending),
        }
        write_deltalake(str(path), pa.table(columns, schema=schema), mode="append",
                        partition_by=["ingest_date"])
        written += len(pending)
        pending.clear()

    deadline = time.monotonic() + 300
    try:
        while written + len(pending) < expected and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=5000, timeout=1.0)
            if messages and first_at is None:
                first_at = time.monotonic()
            pending += [m for m in messages if m.error() is None]
            if len(pending) >= WRITER_BATCH:
                flush()
        if pending:
            flush()
    finally:
        consumer.close()
    elapsed = time.monotonic() - (first_at or time.monotonic())
    print(f"  consumer + delta-rs wrote {written} of {expected} records in {elapsed:.2f} s")
    return written / elapsed if elapsed else 0.0


def _plain_consumer_rate(settings, expected: int) -> float:
    """Messages/s of a bare confluent-kafka consumer reading the whole topic from the start."""
    consumer = _consumer(settings, "bench-plain")
    seen, first_at = 0, None
    deadline = time.monotonic() + 120
    try:
        while seen < expected and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=5000, timeout=1.0)
            if messages and first_at is None:
                first_at = time.monotonic()
            seen += sum(1 for m in messages if m.error() is None)
    finally:
        consumer.close()
    elapsed = time.monotonic() - (first_at or time.monotonic())
    print(f"  plain consumer read {seen} of {expected} records in {elapsed:.2f} s")
    return seen / elapsed if elapsed else 0.0
