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
    from tootlake.pipelines.jobs.bronze import BRONZE_TABLE, run_bronze
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.source.mastodon import replay_source
    from tootlake.pipelines.source.producer import produce_events

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
    from tootlake.pipelines.lake import Lake

    bronze_path = settings.table_uri(BRONZE_TABLE)
    total = Lake(settings, spark).read(BRONZE_TABLE).count()
    log(f"   this run: {bronze_report.rows} new rows; table total {total} rows at {bronze_path}")
    _done(log, started)

    started = _step(log, 4, "silver: parse, quarantine, UTC, latest edit wins, threat + sentiment scores")
    from tootlake.pipelines.jobs.silver import format_summary as format_silver
    from tootlake.pipelines.jobs.silver import run_silver, silver_summary

    silver_report = run_silver(settings, spark)
    log(f"   this run: {silver_report['bronze_rows']} bronze rows read, {silver_report['inserted']} posts "
        f"inserted, {silver_report['updated']} updated, {silver_report['quarantined']} quarantined, "
        f"{silver_report['scored']} scored")
    log(f"   models: {silver_report['threat_model_version']}, {silver_report['sentiment_model_version']}")
    log(format_silver(silver_summary(spark, settings)))
    _done(log, started)

    started = _step(log, 5, "gold: aggregates from silver/posts")
    from tootlake.pipelines.jobs.gold import format_summary as format_gold
    from tootlake.pipelines.jobs.gold import gold_summary, run_gold

    for table, rows in run_gold(settings, spark, progress=False).items():
        log(f"   gold.{table:<24} {rows:>6} rows")
    log(format_gold(gold_summary(settings, spark)))
    _done(log, started)

    started = _step(log, 6, "sync: silver -> PostgreSQL RAWPOSTS / PROCESSEDPOSTS, gold -> schema gold")
    from tootlake.pipelines.databases.dbinit import init_postgres
    from tootlake.pipelines.jobs.sync import run_sync

    init_postgres(settings.postgres_conninfo(), log=lambda _line: None)
    sync_report = run_sync(settings, spark, target="postgres", log=lambda _line: None)
    postgres = sync_report.get("postgres", {})
    counts = ", ".join(f"{k} {v}" for k, v in postgres.items() if isinstance(v, int))
    log(f"   {counts}")
    log(f"   gold tables copied: {len(sync_report.get('gold_tables') or {})}")
    if settings.uses_embedded_postgres:
        log(f"   look: PGPASSFILE={settings.postgres_passfile} psql -h 127.0.0.1 -p {settings.postgres_port} "
            f"-U {settings.postgres_user} "
            f"{settings.postgres_db} -c 'SELECT threat_level, count(*) FROM processedposts GROUP BY 1'")
    _done(log, started)

    started = _step(log, 7, "data quality: rules per batch (dq.metrics), Great Expectations, report")
    from tootlake.pipelines.quality.gx import after_job_run
    from tootlake.pipelines.quality.report import summary_lines, write_report

    for layer in ("bronze", "silver", "gold"):
        after_job_run(settings, layer, log=lambda line: log(f"   {line}"))
    for line in summary_lines(settings):
        log(f" {line}")
    log(f"   report: {write_report(settings)}  (`tootlake dq report` rewrites it)")
    _done(log, started)

    log("\nDone. Tables live under " + settings.location(settings.lake_dir))
    log("Services keep running; stop them with `tootlake services down`.")
    return 0
