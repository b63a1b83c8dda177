"""The README demo: real bundled Mastodon posts through every layer, printing what each step did."""

from __future__ import annotations

import time
from collections.abc import Callable

from tootlake.pipelines.settings import Settings

Log = Callable[[str], None]


def _step(log: Log, number: int, title: str) -> float:
    log(f"\n== {number}. {title}")
    return time.monotonic()


def _done(log: Log, started: float) -> None:
    log(f"   ({time.monotonic() - started:.1f} s)")


def run_demo(settings: Settings, log: Log = print, max_posts: int | None = None) -> int:
    from tootlake.pipelines import services
    from tootlake.pipelines.bronze_job import BRONZE_TABLE, run_bronze
    from tootlake.pipelines.mastodon_source import replay_source
    from tootlake.pipelines.producer import produce_events

    started = _step(log, 1, "services: Kafka broker and PostgreSQL on loopback")
    for status in services.ensure_services(settings):
        log(f"   {status.line()}")
    _done(log, started)

    started = _step(log, 2, "producer: replay the bundled real Mastodon statuses into Kafka")
    source = replay_source(settings)
    for path in source.files:
        log(f"   reading {path}")
    report = produce_events(settings, source, max_events=max_posts)
    log(f"   {report.summary()}")
    log(f"   topic {settings.kafka_topic} on {settings.bootstrap_servers}")
    _done(log, started)

    started = _step(log, 3, "bronze: Kafka -> Delta bronze/posts_raw (available-now)")
    from tootlake.pipelines.spark import build_spark

    spark = build_spark(settings, "tootlake-demo")
    bronze_report = run_bronze(spark, settings, log=lambda line: log(f"   {line}"))
    bronze_path = settings.table_path(BRONZE_TABLE)
    total = spark.read.format("delta").load(str(bronze_path)).count()
    log(f"   this run: {bronze_report.rows} new rows; table total {total} rows at {bronze_path}")
    _done(log, started)

    log("\nDone. Tables live under " + str(settings.path(settings.lake_dir)))
    log("Services keep running; stop them with `tootlake services down`.")
    return 0
