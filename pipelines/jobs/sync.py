"""Sync job: stream silver/posts' change data feed into PostgreSQL and/or Oracle, then copy gold.

Source: the Delta change data feed of `silver/posts` (enabled here if needed). A new checkpoint starts
with the table's current snapshot, then follows every commit. Each micro-batch is staged
(records.stage_rows: one row per post, latest wins) and written to every target in its own transaction
(`foreachBatch`). If a target fails after its retries, the batch raises, the query stops, and the
checkpoint does not advance: the next run replays the batch, which is harmless (newer-wins upserts).

Entry point: `spark-submit pipelines/jobs/sync.py` or `tootlake sync`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tootlake.pipelines.databases.postgres import BatchCounts, PostgresTarget
from tootlake.pipelines.databases.records import SILVER_COLUMNS, stage_rows_checked
from tootlake.pipelines.databases.retry import RetryPolicy, SyncError
from tootlake.pipelines.jobs.streaming import AVAILABLE_NOW, apply_trigger, parse_trigger, run_query
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.settings import FROM_SETTINGS, FromSettings, Settings
from tootlake.pipelines.spark import BatchFrames
from tootlake.silver.posts import POSTS

if TYPE_CHECKING:
    from tootlake.pipelines.quality.guard import Guard

logger = logging.getLogger(__name__)

SILVER_TABLE = POSTS.name
TARGETS = ("postgres", "oracle", "all")
SYNC_REJECTED = "sync_rejected"  # quarantine rule of a silver row no target could take


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.sync_retry_attempts, settings.sync_retry_base_s, settings.sync_retry_max_s)


def make_targets(settings: Settings, target: str, log: Callable[[str], None] = logger.info) -> list[Any]:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    targets: list[Any] = []
    if target in ("postgres", "all"):
        targets.append(PostgresTarget(settings.postgres_conninfo(), retry=retry_policy(settings), log=log))
    if target in ("oracle", "all"):
        from tootlake.pipelines.databases.oracle import OracleTarget, connect_from_settings

        if settings.oracle_dsn is None or not settings.oracle_user:
            raise SyncError("Oracle is not configured: set ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (and "
                            "ORACLE_WALLET_DIR for a wallet) in .env, or use --target postgres")

        targets.append(
            OracleTarget(lambda: connect_from_settings(settings), retry=retry_policy(settings), log=log)
        )
    return targets


# Timestamps Python's datetime (years 1..9999) and both databases can hold; silver's rules keep others
# out, this keeps a row written by any other writer from crashing the batch's conversion to Python.
_TS_COLUMNS = ("created_at", "edited_at", "ingested_at", "deleted_at", "updated_at")
_LINEAGE = ["bronze_partition", "bronze_offset", "_commit_version", "_change_type"]


def silver_rows(batch: DataFrame, table_id: str | None = None) -> tuple[list[dict], list[tuple[dict, str]]]:
    """A change-feed micro-batch -> (silver rows, rows rejected with a reason). Pre-images are dropped;
    a physical delete is a tombstone; each row carries `_commit_version`, `_change_type`, `_table_id`."""
    from tootlake.silver.timestamps import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, spark_literal

    rows = batch.where(F.col("_change_type") != "update_preimage")
    columns = [
        (F.col("is_deleted") | (F.col("_change_type") == "delete")).alias("is_deleted")
        if name == "is_deleted" else F.col(name)
        for name in SILVER_COLUMNS
    ]
    bad_ts = [F.when(~F.col(c).between(spark_literal(EARLIEST_TIMESTAMP), spark_literal(LATEST_TIMESTAMP)),
                     F.lit(c)) for c in _TS_COLUMNS]
    rows = rows.select(*columns, *_LINEAGE, F.lit(table_id).alias("_table_id"),
                       F.coalesce(*bad_ts).alias("_bad_timestamp"))
    # out-of-range timestamps become text before Python sees them
    rejected = rows.where(F.col("_bad_timestamp").isNotNull()).select(
        *[F.col(c).cast("string").alias(c) if c in _TS_COLUMNS else F.col(c) for c in rows.columns])
    good = rows.where(F.col("_bad_timestamp").isNull()).drop("_bad_timestamp").toArrow().to_pylist()
    bad = [(r, f"{r['_bad_timestamp']} is outside years 1-9999") for r in rejected.toArrow().to_pylist()]
    return good, bad


def quarantine_sync_rows(spark: SparkSession, settings: Settings, rejected: list[tuple[dict, str]],
                         rule: str, txn: tuple[str, int]) -> None:
    """Rows the sync could not write -> silver/posts_quarantine (key = post_id, value = the silver row as
    JSON, the rule and reason) through silver's one quarantine writer; a replayed batch is skipped by its
    Delta txn id."""
    import datetime as dt
    import json

    from tootlake.pipelines.jobs.silver import append_quarantine
    from tootlake.silver.schema import QUARANTINE_SCHEMA

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    data = [
        (row.get("post_id"), json.dumps(row, default=str, ensure_ascii=False), [rule], reason[:1000],
         row.get("bronze_partition"), row.get("bronze_offset"), now)
        for row, reason in rejected
    ]
    append_quarantine(Lake(settings, spark), spark.createDataFrame(data, QUARANTINE_SCHEMA), txn)


def write_isolated(target: Any, staged: list[tuple], log: Callable[[str], None]) -> tuple[Any, list]:
    """Write a batch to a target; when it fails on something record-level (a value the database refuses
    that no check foresaw), bisect it: every other row is written, the poison is returned with its error.
    Connection loss is retried inside write_batch and then raised, never isolated."""
    from tootlake.pipelines.databases.postgres import BatchCounts
    from tootlake.pipelines.jobs.isolation import bisect, error_text, is_record_level

    try:
        return target.write_batch(staged), []
    except Exception as exc:
        if not is_record_level(exc):
            raise
        log(f"[sync] {target.name}: a batch of {len(staged)} rows failed on a record-level error; "
            f"isolating it: {error_text(exc)}")
        counts = BatchCounts()
        poisoned = bisect(staged, lambda part: counts.add(target.write_batch(list(part))), failed_with=exc)
        counts.staged = len(staged)
        return counts, [(row, error_text(err)) for row, err in poisoned]




class SyncStream:
    """The sync's streaming query: silver/posts' change feed -> every target, one transaction per target
    and micro-batch (`__call__` is the foreachBatch function). `run_sync` runs it to the end; `tootlake run`
    hosts it beside the other queries of one Spark application (`pipelines/jobs/live.py`)."""

    def __init__(self, settings: Settings, spark: SparkSession, target: str = "postgres",
                 before_batch: Callable[[int], None] | None = None, log: Callable[[str], None] = logger.info,
                 dq: Guard | FromSettings | None = FROM_SETTINGS) -> None:
        from tootlake.pipelines.jobs.silver import txn_app_id

        self.settings, self.spark, self.target, self.log = settings, spark, target, log
        self.before_batch = before_batch
        self.lake = Lake(settings, spark)
        if not self.lake.exists(SILVER_TABLE):
            raise SyncError(f"no Delta table at {self.lake.location(SILVER_TABLE)}: "
                            "run `tootlake silver` first")
        self.lake.ensure_change_feed(SILVER_TABLE, log=lambda line: log(f"[sync] {line}"))
        self.table_id = self.lake.table_id(SILVER_TABLE)
        self.targets = make_targets(settings, target, log)
        self.totals = {t.name: BatchCounts() for t in self.targets}
        self.failure: list[BaseException] = []
        self.rejected_total = 0
        self.checkpoint = settings.checkpoint_uri(f"sync-{target}")
        self.txn_id = txn_app_id(self.checkpoint, settings)
        if dq is FROM_SETTINGS:
            from tootlake.pipelines.quality.guard import Guard

            dq = Guard(settings, "sync", stream_id=self.txn_id) if settings.dq_enabled else None
        self.dq = dq

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.before_batch is not None:
            self.before_batch(batch_id)
        rejected: list[tuple[dict, str]] = []
        with BatchFrames(batch.sparkSession) as frames:
            if self.dq is not None:
                from tootlake.pipelines.quality.guard import check_sync_batch

                try:
                    batch = check_sync_batch(self.dq, batch, batch_id, frames)
                except BaseException as exc:
                    self.failure.append(exc)
                    raise
            else:  # read once, whatever the number of chunks (pre-images: silver_rows drops them anyway)
                batch = frames.keep(batch.where(F.col("_change_type") != "update_preimage"))
            # The driver holds at most SYNC_CHUNK_ROWS rows: a batch of whole large files goes in chunks,
            # each with every version of its posts (newer-wins needs a post's rows together).
            chunks = -(-batch.count() // self.settings.sync_chunk_rows) or 1
            for chunk in range(chunks):
                part = batch if chunks == 1 else batch.where(
                    F.pmod(F.xxhash64("post_id"), F.lit(chunks)) == chunk)
                label = f" chunk {chunk + 1}/{chunks}" if chunks > 1 else ""
                rejected += self._write_chunk(part, batch_id, label)
        if rejected:
            quarantine_sync_rows(self.spark, self.settings, rejected, SYNC_REJECTED, (self.txn_id, batch_id))
            self.rejected_total += len(rejected)
            self.log(f"[sync] batch {batch_id}: {len(rejected)} row(s) rejected into silver/posts_quarantine "
                     f"(rule {SYNC_REJECTED})")

    def _write_chunk(self, batch: DataFrame, batch_id: int, label: str) -> list[tuple[dict, str]]:
        """Stage and write one chunk of a batch to every target; returns the rows it rejected."""
        rows, rejected = silver_rows(batch, self.table_id)
        staged, unstageable = stage_rows_checked(rows)
        rejected += unstageable
        by_key = {row["post_id"]: row for row in rows}
        for t in self.targets:
            try:
                counts, poisoned = write_isolated(t, staged, self.log)
            except BaseException as exc:
                self.failure.append(exc)
                raise
            rejected += [(by_key.get(row[0], {"post_id": row[0]}), f"{t.name}: {reason}")
                         for row, reason in poisoned]
            self.totals[t.name].add(counts)
            if staged:
                self.log(f"[sync] {t.name} batch {batch_id}{label}: {counts.staged} posts staged, "
                         f"{counts.raw_upserted} raw / {counts.processed_upserted} processed upserted, "
                         f"{counts.raw_deleted} deleted")
        return rejected

    def start(self, trigger: str = AVAILABLE_NOW, max_files_per_trigger: int | None = None):
        writer = (
            self.lake.read_stream(SILVER_TABLE, change_feed=True, max_files_per_trigger=max_files_per_trigger,
                                  max_mb_per_trigger=self.settings.sync_max_batch_mb or None)
            .writeStream.queryName(f"sync_{self.target}")
            .foreachBatch(self)
            .option("checkpointLocation", self.checkpoint)
        )
        return apply_trigger(writer, trigger).start()

    def clear_error(self, error: BaseException) -> BaseException:
        """The clear message of what stopped the query (a SyncError), not the JVM's stack trace."""
        if not self.failure:
            return error
        cause = self.failure[-1]
        return cause if isinstance(cause, SyncError) else SyncError(
            f"sync to {self.target} failed: {type(cause).__name__}: {cause}")

    def close(self) -> None:
        for t in self.targets:
            t.close()


def run_sync(
    settings: Settings,
    spark: SparkSession,
    target: str = "postgres",
    trigger: str = AVAILABLE_NOW,
    max_files_per_trigger: int | None = None,
    copy_gold: bool = True,
    before_batch: Callable[[int], None] | None = None,
    log: Callable[[str], None] = logger.info,
    dq: Guard | FromSettings | None = FROM_SETTINGS,
) -> dict:
    """Sync silver/posts to `target` (postgres|oracle|all), then copy gold to PostgreSQL; returns counts.

    `dq`: a quality.guard.Guard, FROM_SETTINGS (a Guard when DQ_ENABLED, else none) or None (no rules):
    each change batch's rules are counted before staging; `drop` rows go to the quarantine, a `fail` rule
    stops before any write.

    `trigger`: 'available-now' (sync what is there and return) or an interval (run until SIGTERM/Ctrl-C).
    Raises SyncError when a target stays unreachable; nothing of the failed batch is committed.
    """
    stream = SyncStream(settings, spark, target, before_batch, log, dq)
    query = stream.start(trigger, max_files_per_trigger)
    try:
        try:
            report = run_query(query, f"sync-{target}", log=log)
        except Exception as exc:  # StreamingQueryException from awaitTermination, or run_query's RuntimeError
            if not stream.failure:
                raise
            raise stream.clear_error(exc) from stream.failure[-1]
        result: dict[str, Any] = {
            "target": target,
            "batches": report.batches,
            "rows_read": report.rows,
            "rejected": stream.rejected_total,
            "elapsed_s": round(report.elapsed_s, 2),
        }
        for t in stream.targets:
            result[t.name] = {**vars(stream.totals[t.name]), **t.table_counts()}
        if copy_gold and target in ("postgres", "all"):
            from tootlake.pipelines.databases.gold import copy_gold as copy_gold_tables

            pg = next(t for t in stream.targets if t.name == "postgres")
            result["gold_tables"] = copy_gold_tables(pg.connect(), settings, log)
        return result
    finally:
        stream.close()

def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="sync", description=__doc__)
    parser.description = (
        "Upsert silver/posts into RAWPOSTS and PROCESSEDPOSTS (newer wins, deletes followed) in PostgreSQL "
        "and/or Oracle, then copy the gold tables to PostgreSQL. Run `tootlake db init` once before."
    )
    parser.add_argument("--target", choices=["postgres", "oracle", "all"], default="postgres",
                        help="where to sync (default: postgres); each choice keeps its own checkpoint")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: sync what is there, then exit) or an interval "
                             "such as '5 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-files-per-trigger", type=int, default=None,
                        help="cap on silver files per micro-batch (smaller transactions)")
    parser.add_argument("--no-gold", action="store_true", help="skip copying the gold tables to PostgreSQL")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.databases.retry import SyncError
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, f"tootlake-sync-{args.target}")
    try:
        result = run_sync(settings, spark, args.target, args.trigger, args.max_files_per_trigger,
                          copy_gold=not args.no_gold)
    except SyncError as exc:
        logger.error(f"[sync] FAILED: {exc}")
        return 1
    print(f"[sync] done: {json.dumps(result, default=str)}")
    from tootlake.pipelines.quality.gx import after_job_run

    after_job_run(settings, "silver")  # what sync published came from silver: its suites, once per run
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from tootlake.pipelines.storage import exit_process

    exit_process(main())
