"""The continuous pipeline as ONE Spark application: bronze, silver, the gold stream and sync as streaming
queries of one SparkSession (one JVM, one set of Python workers) instead of a JVM per stage.

Each query keeps its own checkpoint (the same folders as `spark-submit pipelines/jobs/<layer>.py`, so the
two ways of running are interchangeable) and runs in its own FAIR scheduler pool, so a long silver batch
does not hold bronze or sync back. A query that fails is restarted inside the application after a back-off
(RUN_BACKOFF_BASE_S * 2**n, capped at RUN_BACKOFF_MAX_S; n resets once it has run RUN_HEALTHY_AFTER_S); one
that fails RUN_APP_MAX_QUERY_FAILURES times in a row, or a dead SparkContext, ends the application with
exit 1 and `tootlake run`'s supervisor restarts the whole JVM. A query whose input table does not exist yet
waits for it. Per-query state goes to `<state>/live.json` (the supervisor folds it into `run.json`, which
`tootlake status` and the drill read). SIGTERM / Ctrl-C stops every query between micro-batches.

Entry point: `python -m tootlake.pipelines.jobs.live --trigger "2 seconds"` (what `tootlake run` starts).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tootlake.pipelines.jobs.streaming import (
    LIVE_STATE_FILE,
    QueryReport,
    collect_progress,
    interval,
    parse_trigger,
    restart_backoff,
)
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.ops.processes import write_state_file
from tootlake.pipelines.settings import Settings

logger = logging.getLogger(__name__)
SCHEDULER_POOL = "spark.scheduler.pool"


@dataclass
class LiveQuery:
    """One query the application hosts. `start` builds and starts it (called again on each restart);
    `ready` says whether its input exists; `explain` turns a failure into the clearest error it knows of
    (the rule or database message instead of the JVM's stack trace)."""

    name: str
    start: Callable[[], Any]
    ready: Callable[[], bool] = lambda: True
    on_progress: Callable[[dict], None] | None = None
    explain: Callable[[BaseException], BaseException] = lambda error: error
    log_progress: bool = True


@dataclass
class QueryState:
    name: str
    state: str = "waiting"  # waiting (for its input table)|running|backoff|stopped
    restarts: int = 0
    started_at: str | None = None
    next_start_in_s: float | None = None
    last_error: str | None = None
    last_batch_id: int | None = None
    failures_in_a_row: int = field(default=0, repr=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LiveApp:
    """Runs `queries` in the current SparkSession until stopped; see the module docstring for the policy."""

    def __init__(self, settings: Settings, queries: list[LiveQuery], spark: Any = None,
                 state_file: Path | None = None, log: Callable[[str], None] = logger.info,
                 clock: Callable[[], float] = time.monotonic,
                 maintenance: Callable[[], Any] | None = None) -> None:
        from tootlake.pipelines.ops.maintain import Schedule

        self.settings, self.queries, self.spark, self.log, self.clock = settings, queries, spark, log, clock
        # `tootlake maintain` every MAINTAIN_EVERY_S, in a thread of its own beside the queries
        self.maintenance = maintenance
        self.maintenance_schedule = Schedule(settings.maintain_every_s)
        self.maintenance_thread: threading.Thread | None = None
        self.state_file = state_file
        self.states = {q.name: QueryState(q.name) for q in queries}
        self.running: dict[str, Any] = {}
        self.reports = {q.name: QueryReport() for q in queries}
        self.seen: dict[str, set[int]] = {q.name: set() for q in queries}
        self.started_mono: dict[str, float] = {}
        self.retry_at: dict[str, float] = {}
        self.stop_requested = False
        self.exit_code = 0
        self._last_state_write = 0.0

    # -- one query --
    def _start(self, query: LiveQuery) -> None:
        st = self.states[query.name]
        if self.spark is not None:  # inherited by the query's thread: its jobs run in the query's pool
            self.spark.sparkContext.setLocalProperty(SCHEDULER_POOL, query.name)
        try:
            self.running[query.name] = query.start()
        except Exception as exc:  # noqa: BLE001 - a query that cannot start is retried like one that failed
            self._failed(query, query.explain(exc), ran_s=0.0)
            return
        self.started_mono[query.name] = self.clock()
        self.seen[query.name].clear()  # a restarted query's progress is its own
        st.state, st.started_at, st.next_start_in_s = "running", _now(), None
        self.log(f"[live] {query.name}: started")

    def _failed(self, query: LiveQuery, error: BaseException, ran_s: float) -> None:
        st = self.states[query.name]
        st.failures_in_a_row, delay = restart_backoff(self.settings, st.failures_in_a_row, ran_s)
        st.last_error = f"{type(error).__name__}: {str(error).strip()[:500]}"
        if st.failures_in_a_row >= self.settings.run_app_max_query_failures:
            self.log(f"[live] {query.name}: failed {st.failures_in_a_row} times in a row ({st.last_error}); "
                     "ending the application so that it restarts with a fresh JVM")
            self.exit_code = 1
            self.stop_requested = True
            return
        st.state = "backoff"
        self.retry_at[query.name] = self.clock() + delay
        self.log(f"[live] {query.name}: FAILED after {ran_s:.0f} s: {st.last_error}; "
                 f"restart in {delay:.0f} s")

    def _collect(self, query: LiveQuery, handle: Any) -> None:
        log = self.log if query.log_progress else (lambda _line: None)
        collect_progress(handle, self.reports[query.name], self.seen[query.name], query.name, log,
                         query.on_progress)
        if self.seen[query.name]:
            self.states[query.name].last_batch_id = max(self.seen[query.name])

    def tick(self) -> None:
        """One look at every query: log progress, restart the failed ones that are due, start waiters."""
        for query in self.queries:
            st = self.states[query.name]
            handle = self.running.get(query.name)
            if handle is not None:
                self._collect(query, handle)
                if not handle.isActive:
                    self.running.pop(query.name)
                    error = handle.exception()
                    ran_s = self.clock() - self.started_mono.get(query.name, self.clock())
                    self._failed(query, query.explain(error) if error is not None else RuntimeError(
                        "the query stopped without an error"), ran_s)
            elif self.stop_requested:
                continue
            elif st.state == "waiting":
                if query.ready():
                    self._start(query)
            elif st.state == "backoff":
                due = self.retry_at[query.name]
                st.next_start_in_s = round(max(0.0, due - self.clock()), 1)
                if self.clock() >= due:
                    st.restarts += 1
                    self._start(query)

    def maybe_maintain(self) -> None:
        """Start the lake maintenance when it is due and the previous run has ended."""
        if self.maintenance is None or (self.maintenance_thread and self.maintenance_thread.is_alive()):
            return
        if not self.maintenance_schedule.due(self.clock()):
            return
        maintenance = self.maintenance

        def run() -> None:
            if self.spark is not None:
                self.spark.sparkContext.setLocalProperty(SCHEDULER_POOL, "maintain")
            try:
                maintenance()
            except Exception as exc:  # noqa: BLE001 - the queries go on; the next run tries again
                self.log(f"[live] maintenance failed: {type(exc).__name__}: {exc}")

        self.log("[live] maintenance: compaction, retention, VACUUM (`tootlake maintain`)")
        self.maintenance_thread = threading.Thread(target=run, name="maintain", daemon=True)
        self.maintenance_thread.start()

    def context_alive(self) -> bool:
        if self.spark is None:
            return True
        try:
            return not self.spark.sparkContext._jsc.sc().isStopped()
        except Exception:  # noqa: BLE001 - the JVM is gone
            return False

    def write_state(self, force: bool = False) -> None:
        if self.state_file is None or (not force and self.clock() - self._last_state_write < 1.0):
            return
        self._last_state_write = self.clock()
        state = {"pid": os.getpid(), "updated_at": _now(),
                 "queries": {name: {k: v for k, v in asdict(st).items() if k != "failures_in_a_row"}
                             for name, st in self.states.items()}}
        write_state_file(self.state_file, state)

    def stop_all(self) -> None:
        self.stop_requested = True
        for name, handle in list(self.running.items()):
            self.log(f"[live] {name}: stopping")
            try:
                handle.stop()  # between micro-batches; the checkpoint stays consistent
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                self.log(f"[live] {name}: stop failed: {type(exc).__name__}: {exc}")
            query = next(q for q in self.queries if q.name == name)
            self._collect(query, handle)
            self.running.pop(name)
        for st in self.states.values():
            st.state = "stopped"
        self.write_state(force=True)

    def run(self, poll_s: float = 1.0) -> int:
        """Until SIGTERM/SIGINT, a query failing too often, or a dead SparkContext; 0 after a clean stop."""

        def on_signal(signum: int, _frame: Any) -> None:
            self.log(f"[live] {signal.Signals(signum).name}: stopping every query after its current batch")
            self.stop_requested = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for query in self.queries:
                if not query.ready():
                    self.log(f"[live] {query.name}: waiting for its input table")
            while not self.stop_requested:
                self.tick()
                self.write_state()
                self.maybe_maintain()
                if not self.context_alive():
                    self.log("[live] the SparkContext stopped: ending the application")
                    self.exit_code = 1
                    break
                time.sleep(poll_s)
            self.stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code


def live_queries(settings: Settings, spark: Any, trigger: str, gold_trigger: str) -> list[LiveQuery]:
    """bronze -> silver -> gold stream -> sync (PostgreSQL), each restartable from its checkpoint."""
    from tootlake.pipelines.jobs.bronze import BRONZE_TABLE, record_lost_offsets, start_bronze_query
    from tootlake.pipelines.jobs.gold_stream import start_gold_stream
    from tootlake.pipelines.jobs.silver import silver_writer, start_silver_query
    from tootlake.pipelines.jobs.sync import SILVER_TABLE, SyncStream
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.quality.guard import new_run_id

    lake = Lake(settings, spark)
    writer = silver_writer(settings, spark)  # models loaded once for the application's lifetime
    sync: dict[str, SyncStream] = {}

    def start_sync():
        if "stream" in sync:
            sync.pop("stream").close()
        sync["stream"] = SyncStream(settings, spark, "postgres")
        return sync["stream"].start(trigger)

    def explain_sync(error: BaseException) -> BaseException:
        return sync["stream"].clear_error(error) if "stream" in sync else error

    def explain_silver(error: BaseException) -> BaseException:
        cause, writer.dq_error = writer.dq_error, None  # a fail rule's message, then forget it
        return cause or error

    has_silver = lambda: lake.exists(SILVER_TABLE)  # noqa: E731
    lost = record_lost_offsets(settings, new_run_id("bronze"), logger.info) if settings.dq_enabled else None
    return [
        LiveQuery("bronze", lambda: start_bronze_query(spark, settings, trigger=trigger), on_progress=lost),
        LiveQuery("silver", lambda: start_silver_query(spark, settings, writer, trigger),
                  ready=lambda: lake.exists(BRONZE_TABLE), explain=explain_silver, log_progress=False),
        LiveQuery("gold", lambda: start_gold_stream(settings, spark, trigger=gold_trigger), ready=has_silver),
        LiveQuery("sync", start_sync, ready=has_silver, explain=explain_sync),
    ]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="live", description=__doc__)
    parser.description = ("Bronze, silver, the gold stream and sync as streaming queries of one Spark "
                          "application, until Ctrl-C / SIGTERM (what `tootlake run` starts).")
    parser.add_argument("--trigger", type=parse_trigger, default=None,
                        help="interval of bronze, silver and sync batches (default RUN_TRIGGER_S seconds)")
    parser.add_argument("--gold-trigger", type=parse_trigger, default=None,
                        help="interval of the gold stream's batches (default GOLD_STREAM_TRIGGER_S seconds)")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-live", extra_conf={"spark.scheduler.mode": "FAIR"})
    trigger = args.trigger or interval(settings.run_trigger_s)
    gold_trigger = args.gold_trigger or interval(settings.gold_stream_trigger_s)
    queries = live_queries(settings, spark, trigger, gold_trigger)
    state_file = settings.path(settings.state_dir) / LIVE_STATE_FILE
    names = ", ".join(q.name for q in queries)
    logger.info(f"[live] one Spark application, {len(queries)} queries ({names}), trigger {trigger}")
    from tootlake.pipelines.ops.maintain import maintain

    return LiveApp(settings, queries, spark, state_file, maintenance=lambda: maintain(spark, settings)).run()


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from tootlake.pipelines.storage import exit_process

    exit_process(main())
