"""Sync job: stream silver/posts' change data feed into PostgreSQL and/or Oracle, then copy gold.

Source: the Delta change data feed of `silver/posts` (enabled here if needed). A new checkpoint starts
with the table's current snapshot, then follows every commit. Each micro-batch is staged
(records.stage_rows: one row per post, latest wins) and written to every target in its own transaction
(`foreachBatch`). If a target fails after its retries, the batch raises, the query stops, and the
checkpoint does not advance: the next run replays the batch, which is harmless (newer-wins upserts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tootlake.pipelines.settings import Settings
from tootlake.pipelines.streaming import AVAILABLE_NOW, apply_trigger, run_query
from tootlake.pipelines.sync.postgres import BatchCounts, PostgresTarget
from tootlake.pipelines.sync.records import SILVER_COLUMNS, stage_rows
from tootlake.pipelines.sync.retry import RetryPolicy, SyncError

SILVER_TABLE = "silver.posts"
TARGETS = ("postgres", "oracle", "all")


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.sync_retry_attempts, settings.sync_retry_base_s, settings.sync_retry_max_s)


def make_targets(settings: Settings, target: str, log: Callable[[str], None] = print) -> list[Any]:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    targets: list[Any] = []
    if target in ("postgres", "all"):
        targets.append(PostgresTarget(settings.postgres_conninfo(), retry=retry_policy(settings), log=log))
    if target in ("oracle", "all"):
        from tootlake.pipelines.sync.oracle import OracleTarget, connect_from_settings

        if settings.oracle_dsn is None or not settings.oracle_user:
            raise SyncError("Oracle is not configured: set ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (and "
                            "ORACLE_WALLET_DIR for a wallet) in .env, or use --target postgres")

        targets.append(
            OracleTarget(lambda: connect_from_settings(settings), retry=retry_policy(settings), log=log)
        )
    return targets


def ensure_change_feed(spark: SparkSession, path: str, log: Callable[[str], None] = print) -> None:
    """Turn on delta.enableChangeDataFeed on silver/posts if it is off (idempotent; retried on a race)."""
    from delta.tables import DeltaTable

    properties = DeltaTable.forPath(spark, path).detail().select("properties").first()[0] or {}
    if str(properties.get("delta.enableChangeDataFeed", "false")).lower() == "true":
        return
    for attempt in range(5):
        try:
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
            log(f"[sync] enabled the change data feed on {path}")
            return
        except Exception as exc:  # a concurrent silver commit: try again
            if "Concurrent" not in str(exc) or attempt == 4:
                raise
            time.sleep(1 + attempt)


def silver_rows(batch: DataFrame) -> list[dict]:
    """A change-feed micro-batch -> silver rows (pre-images dropped; a physical delete is a tombstone)."""
    rows = batch.where(F.col("_change_type") != "update_preimage")
    columns = [
        (F.col("is_deleted") | (F.col("_change_type") == "delete")).alias("is_deleted")
        if name == "is_deleted" else F.col(name)
        for name in SILVER_COLUMNS
    ]
    return rows.select(*columns).toArrow().to_pylist()


def run_sync(
    settings: Settings,
    spark: SparkSession,
    target: str = "postgres",
    trigger: str = AVAILABLE_NOW,
    max_files_per_trigger: int | None = None,
    copy_gold: bool = True,
    before_batch: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    dq: Any = "auto",
) -> dict:
    """Sync silver/posts to `target` (postgres|oracle|all), then copy gold to PostgreSQL; returns counts.

    `dq`: a tootlake.pipelines.dq.Guard, "auto" (one when DQ_ENABLED) or None: each change batch's rules
    are counted before staging; `drop` rows go to the quarantine, a `fail` rule stops before any write.

    `trigger`: 'available-now' (sync what is there and return) or an interval (run until SIGTERM/Ctrl-C).
    Raises SyncError when a target stays unreachable; nothing of the failed batch is committed.
    """
    silver_path = str(settings.table_path(SILVER_TABLE))
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, silver_path):
        raise SyncError(f"no Delta table at {silver_path}: run `tootlake silver` first")
    ensure_change_feed(spark, silver_path, log)
    targets = make_targets(settings, target, log)
    totals = {t.name: BatchCounts() for t in targets}
    failure: list[BaseException] = []
    if dq == "auto":
        from tootlake.pipelines.dq import Guard

        dq = Guard(settings, "sync") if settings.dq_enabled else None

    def write(batch: DataFrame, batch_id: int) -> None:
        if before_batch is not None:
            before_batch(batch_id)
        if dq is not None:
            from tootlake.pipelines.dq import check_sync_batch

            try:
                batch = check_sync_batch(dq, batch, batch_id)
            except BaseException as exc:
                failure.append(exc)
                raise
        staged = stage_rows(silver_rows(batch))
        for t in targets:
            try:
                counts = t.write_batch(staged)
            except BaseException as exc:
                failure.append(exc)
                raise
            totals[t.name].add(counts)
            if staged:
                log(f"[sync] {t.name} batch {batch_id}: {counts.staged} posts staged, "
                    f"{counts.raw_upserted} raw / {counts.processed_upserted} processed upserted, "
                    f"{counts.raw_deleted} deleted")

    reader = spark.readStream.format("delta").option("readChangeFeed", "true")
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", str(max_files_per_trigger))
    writer = (
        reader.load(silver_path)
        .writeStream.queryName(f"sync_{target}")
        .foreachBatch(write)
        .option("checkpointLocation", str(settings.checkpoint_path(f"sync-{target}")))
    )
    query = apply_trigger(writer, trigger).start()
    try:
        try:
            report = run_query(query, f"sync-{target}", log=log)
        except Exception:  # StreamingQueryException from awaitTermination, or run_query's RuntimeError
            if failure:  # the clear message, not the JVM's stack trace
                cause = failure[-1]
                raise (cause if isinstance(cause, SyncError) else SyncError(
                    f"sync to {target} failed: {type(cause).__name__}: {cause}")) from cause
            raise
        result: dict[str, Any] = {
            "target": target,
            "batches": report.batches,
            "rows_read": report.rows,
            "elapsed_s": round(report.elapsed_s, 2),
        }
        for t in targets:
            result[t.name] = {**vars(totals[t.name]), **t.table_counts()}
        if copy_gold and target in ("postgres", "all"):
            from tootlake.pipelines.sync.gold import copy_gold as copy_gold_tables

            pg = next(t for t in targets if t.name == "postgres")
            gold_dir = settings.table_path("gold.posts").parent
            result["gold_tables"] = copy_gold_tables(spark, pg.connect(), gold_dir, log)
        return result
    finally:
        for t in targets:
            t.close()
