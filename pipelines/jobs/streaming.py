"""Shared plumbing for streaming jobs: triggers, progress lines and clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no pyspark import: the supervisor and `status` use this module's helpers
    from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

    from tootlake.pipelines.settings import Settings


logger = logging.getLogger(__name__)
AVAILABLE_NOW = "available-now"
LIVE_STATE_FILE = "live.json"  # per-query state of the one-application mode (pipelines/jobs/live.py)
_INTERVAL = re.compile(r"^\d+(\.\d+)?\s*(ms|milliseconds?|s|seconds?|m|minutes?)$")


def parse_trigger(value: str) -> str:
    """`available-now` or a processing interval such as `10 seconds`; argparse `type=`."""
    value = value.strip()
    if value == AVAILABLE_NOW or _INTERVAL.match(value):
        return value
    raise ValueError(f"trigger must be '{AVAILABLE_NOW}' or an interval like '10 seconds', got {value!r}")


def restart_backoff(settings: Settings, failures_in_a_row: int, ran_s: float) -> tuple[int, float]:
    """After a failure: (failures in a row counting this one, seconds to wait before the restart), i.e.
    RUN_BACKOFF_BASE_S * 2**(n-1) capped at RUN_BACKOFF_MAX_S; n starts over when the run that failed had
    lasted RUN_HEALTHY_AFTER_S. The supervisor's processes and the application's queries share it."""
    n = 1 if ran_s >= settings.run_healthy_after_s else failures_in_a_row + 1
    return n, min(settings.run_backoff_base_s * 2 ** (n - 1), settings.run_backoff_max_s)


def interval(seconds: float) -> str:
    """A processing-time trigger of `seconds` (fractions too), in the form Spark and parse_trigger take."""
    return f"{round(seconds * 1000)} milliseconds"


def apply_trigger(writer: DataStreamWriter, trigger: str) -> DataStreamWriter:
    if trigger == AVAILABLE_NOW:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=trigger)


@dataclass
class QueryReport:
    batches: int = 0
    rows: int = 0
    elapsed_s: float = 0.0
    stopped_by_signal: bool = False
    progress: list[dict] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s else 0.0


def run_query(
    query: StreamingQuery,
    label: str,
    log: Callable[[str], None] = logger.info,
    poll_s: float = 2.0,
    on_progress: Callable[[dict], None] | None = None,
) -> QueryReport:
    """Wait for `query` to finish (available-now) or for SIGTERM/SIGINT, logging a line per batch.

    On a signal the query is stopped between batches, so the checkpoint stays consistent and a restart
    resumes exactly where this run ended. `on_progress` is called once per new batch's progress.
    """
    stop = threading.Event()
    previous = {}
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    report = QueryReport()
    seen_batches: set[int] = set()
    started = time.monotonic()
    try:
        while query.isActive and not stop.is_set():
            query.awaitTermination(poll_s)
            collect_progress(query, report, seen_batches, label, log, on_progress)
        if stop.is_set():
            report.stopped_by_signal = True
            log(f"[{label}] stopping on signal after the current batch")
            query.stop()
        query.awaitTermination()
        collect_progress(query, report, seen_batches, label, log, on_progress)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report.elapsed_s = time.monotonic() - started
    exception = query.exception()
    if exception is not None:
        raise RuntimeError(f"[{label}] streaming query failed: {exception}")
    return report


def new_progress(query, seen: set[int]) -> list:
    """The query's progress updates of batches not in `seen`, oldest first. Usually one look at
    `lastProgress`: `recentProgress` (up to 100 updates, each built in the JVM and parsed here) only when
    batches were missed since the last look. The live application polls four queries every second, and
    `recentProgress` on each was ~20 % of its driver's Python time."""
    last = query.lastProgress
    if last is None or last.get("batchId") in seen:
        return []
    if seen and last.get("batchId") == max(seen) + 1:
        return [last]
    return [p for p in query.recentProgress if p.get("batchId") not in seen]


def collect_progress(query, report: QueryReport, seen: set[int], label: str, log: Callable[[str], None],
             on_progress: Callable[[dict], None] | None = None) -> None:
    for progress in new_progress(query, seen):
        batch_id = progress.get("batchId")
        if batch_id in seen:
            continue
        seen.add(batch_id)
        if on_progress is not None:
            on_progress(progress)
        rows = int(progress.get("numInputRows", 0))
        if rows == 0 and report.batches:
            continue
        report.batches += 1
        report.rows += rows
        report.progress.append(progress)
        rate = progress.get("processedRowsPerSecond") or 0.0
        log(f"[{label}] batch {batch_id}: {rows} rows ({rate:.0f} rows/s), {report.rows} rows so far")
