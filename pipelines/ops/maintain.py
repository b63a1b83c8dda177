"""`tootlake maintain`: keep a lake fed by 1-second micro-batches small and fast to read.

Per table of the lake (or the ones asked for):
1. compaction (Delta OPTIMIZE, bin-packing into files of about MAINTAIN_TARGET_FILE_MB; `dataChange=false`,
   so streams and change-feed readers downstream see no new rows);
2. log retention: the table properties `delta.logRetentionDuration` (MAINTAIN_LOG_RETENTION_DAYS) and
   `delta.deletedFileRetentionDuration` (MAINTAIN_VACUUM_RETAIN_HOURS) are set when they differ; Delta drops
   expired log files when it writes its next checkpoint;
3. VACUUM: data files no version of the last MAINTAIN_VACUUM_RETAIN_HOURS needs are deleted (that is the
   time-travel window: older versions can no longer be read);
4. silver/posts only: tombstones of posts silver never saw (a `delete` event for a status that never
   arrived: the public stream sends many) are removed once older than MAINTAIN_TOMBSTONE_DAYS (0 = keep).
   A status arriving after that would come back as a live post, so keep the age above how late statuses
   can arrive.

It reports files per table and their median size before and after, and writes `<state>/maintain.json`
(`tootlake status` shows when it last ran). `tootlake run` runs it every MAINTAIN_EVERY_S seconds inside
its Spark application (0 = never).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import SILVER_POSTS
from tootlake.pipelines.ops.processes import read_state_file, write_state_file
from tootlake.pipelines.settings import Settings

logger = logging.getLogger(__name__)
MAINTAIN_STATE_FILE = "maintain.json"


@dataclass(frozen=True)
class FileStats:
    """The data files of a table's current version."""

    files: int
    total_bytes: int
    median_bytes: int


def file_stats(settings: Settings, name: str) -> FileStats:
    """From the Delta log with delta-rs (no JVM)."""
    from tootlake.pipelines.lake import Lake

    sizes = Lake(settings).table(name).get_add_actions(flatten=True).column("size_bytes").to_pylist()
    return FileStats(len(sizes), int(sum(sizes)), int(statistics.median(sizes)) if sizes else 0)


def never_seen_tombstones(cutoff: datetime) -> str:
    """Rows of silver/posts that are tombstones of posts silver never had: a delete without a status
    (no creation time), deleted before `cutoff` (UTC)."""
    stamp = cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"is_deleted AND created_at IS NULL AND deleted_at < TIMESTAMP '{stamp}'"


def table_properties(settings: Settings) -> dict[str, str]:
    return {
        "delta.logRetentionDuration": f"interval {settings.maintain_log_retention_days} days",
        "delta.deletedFileRetentionDuration": f"interval {settings.maintain_vacuum_retain_hours} hours",
    }


def maintain_table(spark: Any, settings: Settings, name: str, now: datetime | None = None,
                   vacuum: bool = True) -> dict[str, Any]:
    """Compaction, retention properties, VACUUM (and the tombstone expiry on silver/posts) of one table."""
    from delta.tables import DeltaTable

    from tootlake.pipelines.lake import Lake

    lake = Lake(settings, spark)
    started = time.monotonic()
    before = file_stats(settings, name)
    table = DeltaTable.forPath(spark, lake.location(name))
    expired = 0
    if name == SILVER_POSTS and settings.maintain_tombstone_days > 0:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.maintain_tombstone_days)
        condition = never_seen_tombstones(cutoff)
        expired = lake.read(name).where(condition).count()
        if expired:
            table.delete(condition)
    spark.conf.set("spark.databricks.delta.optimize.maxFileSize",
                   str(settings.maintain_target_file_mb * 2**20))
    compaction = table.optimize().executeCompaction().first()
    metrics = compaction["metrics"].asDict() if compaction is not None else {}
    wanted = table_properties(settings)
    current = lake.detail(name)["properties"] or {}
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changed:
        settings_sql = ", ".join(f"'{k}' = '{v}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{lake.location(name)}` SET TBLPROPERTIES ({settings_sql})")
    if vacuum:
        # Delta refuses a retention under its 7-day default unless told; the setting is the user's choice.
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled",
                       "false" if settings.maintain_vacuum_retain_hours < 168 else "true")
        table.vacuum(float(settings.maintain_vacuum_retain_hours))
    after = file_stats(settings, name)
    return {
        "table": name,
        "files_before": before.files, "median_bytes_before": before.median_bytes,
        "files_after": after.files, "median_bytes_after": after.median_bytes,
        "files_compacted": int(metrics.get("numFilesRemoved") or 0),
        "files_written": int(metrics.get("numFilesAdded") or 0),
        "tombstones_expired": expired,
        "properties_set": sorted(changed),
        "seconds": round(time.monotonic() - started, 2),
    }


def maintain(spark: Any, settings: Settings, tables: list[str] | None = None, vacuum: bool = True,
             log: Callable[[str], None] = logger.info) -> list[dict[str, Any]]:
    """Every table of the lake (or `tables`); one table's failure is logged and the others go on."""
    from tootlake.pipelines.lake import list_tables

    names = tables or list(list_tables(settings))
    results = []
    for name in names:
        try:
            result = maintain_table(spark, settings, name, vacuum=vacuum)
        except Exception as exc:  # noqa: BLE001 - e.g. a concurrent writer won: the next run retries
            log(f"[maintain] {name}: FAILED: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
            results.append({"table": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        log(f"[maintain] {name}: {result['files_before']} -> {result['files_after']} files "
            f"(median {_mib(result['median_bytes_before'])} -> {_mib(result['median_bytes_after'])}), "
            f"{result['tombstones_expired']} tombstones expired, {result['seconds']} s")
        results.append(result)
    write_state(settings, results)
    return results


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def state_path(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / MAINTAIN_STATE_FILE


def write_state(settings: Settings, results: list[dict[str, Any]]) -> None:
    write_state_file(state_path(settings),
                     {"at": datetime.now(UTC).isoformat(timespec="seconds"), "tables": results})


def read_state(settings: Settings) -> dict[str, Any] | None:
    return read_state_file(state_path(settings))


@dataclass
class Schedule:
    """When `tootlake run`'s application maintains the lake next (MAINTAIN_EVERY_S; 0 = never)."""

    every_s: float
    next_at: float = 0.0

    def due(self, now: float) -> bool:
        if self.every_s <= 0:
            return False
        if self.next_at == 0.0:
            self.next_at = now + self.every_s  # not at start: the queries come first
            return False
        if now >= self.next_at:
            self.next_at = now + self.every_s
            return True
        return False
