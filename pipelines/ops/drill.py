"""Reliability drill: faults during `tootlake run`, then check every produced post is in PostgreSQL once.

Sequence (each step printed with a `tootlake status` screen at the interesting moments):
1. services up, sync tables created in the drill's own database, the expected post keys computed with a
   dry run of the same replay (filters applied exactly as the producer applies them);
2. `tootlake run --no-services --rate R` as a child process (producer replaying the bundled posts, all but
   the last few, which the drill sends itself after each fault so that every recovery has fresh posts);
3. SIGKILL the producer early (it restarts and resumes from its last confirmed delivery: the records of
   its last second may reach Kafka twice, which silver dedupes), then, once every Spark stage has
   committed a batch, SIGKILL the Spark application hosting bronze, silver, gold and sync (its whole
   process group: driver, JVM, Python workers), or each stage's own JVM when RUN_ONE_APP is false;
4. stop the Kafka broker for `outage_s`, start it; stop PostgreSQL for `outage_s`, start it;
5. wait until the producer is done and PostgreSQL holds every expected post, SIGTERM `tootlake run`;
6. count: produced / bronze / silver / quarantined / RAWPOSTS / PROCESSEDPOSTS, then row for row: every
   produced post in PostgreSQL once with the text it was produced with (missing, unexpected, mismatched,
   duplicated: a post twice in silver, under two keys, or not once in PROCESSEDPOSTS).

Recovery time of a killed stage = kill -> the stage's first new checkpoint commit after its restart. For an
outage = service back -> first commit of the stage that depends on it (bronze for Kafka, sync for PostgreSQL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import BRONZE_POSTS_RAW, SILVER_POSTS, SILVER_POSTS_QUARANTINE
from tootlake.pipelines.ops import services
from tootlake.pipelines.ops.processes import tree_rss, wait_until
from tootlake.pipelines.ops.supervisor import (
    APP_STAGE,
    STAGE_CHECKPOINTS,
    child_env,
    read_state,
    state_path,
)
from tootlake.pipelines.settings import Settings
from tootlake.pipelines.source.mastodon import SourceEvent

Log = Callable[[str], None]
SPARK_STAGES = ("bronze", "silver", "gold", "sync")


@dataclass
class DrillReport:
    produced_events: int = 0
    expected_posts: int = 0
    bronze_rows: int = 0
    bronze_keys: int = 0
    silver_posts: int = 0
    quarantined: int = 0
    rawposts: int = 0
    rawposts_distinct: int = 0
    processedposts: int = 0
    processedposts_distinct: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # in PostgreSQL with other text than produced
    duplicated: list[str] = field(default_factory=list)  # one produced post in several rows (silver or PG)
    recovery_s: dict[str, float | None] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    peak_rss_run_bytes: int = 0
    peak_rss_total_bytes: int = 0
    shutdown_s: float | None = None
    run_exit: int | None = None
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        rec = ", ".join(
            f"{k} {'not observed' if v is None else f'{v:.0f} s'}" for k, v in self.recovery_s.items()
        )
        shutdown = "-" if self.shutdown_s is None else f"{self.shutdown_s:.1f}"
        lines = [
            f"produced {self.produced_events} events "
            f"({self.expected_posts} distinct posts expected in PostgreSQL)",
            f"bronze {self.bronze_rows} rows ({self.bronze_keys} distinct keys; a killed producer resends "
            "what was not confirmed)",
            f"silver {self.silver_posts} posts, {self.quarantined} quarantined",
            f"synced RAWPOSTS {self.rawposts} rows / {self.rawposts_distinct} distinct, PROCESSEDPOSTS "
            f"{self.processedposts} rows / {self.processedposts_distinct} distinct; "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, mismatched "
            f"{len(self.mismatched)}, duplicated {len(self.duplicated)}",
            f"recovery: {rec}",
            f"restarts: {', '.join(f'{k} {v}' for k, v in self.restarts.items())}",
            f"peak RSS: tootlake run tree {self.peak_rss_run_bytes / 2**30:.2f} GiB, "
            f"with Kafka + PostgreSQL {self.peak_rss_total_bytes / 2**30:.2f} GiB",
            f"shutdown on SIGTERM {shutdown} s (exit {self.run_exit}); drill {self.elapsed_s:.0f} s",
            "PASSED" if self.passed else "FAILED: " + "; ".join(self.problems),
        ]
        return "\n".join(lines)


def replay_events(settings: Settings) -> list[SourceEvent]:
    """The replay's events that pass the producer's filters, in the order the producer sends them."""
    from tootlake.bronze.filters import drop_reason
    from tootlake.pipelines.source.mastodon import replay_source
    from tootlake.pipelines.source.producer import filter_config

    filters = filter_config(settings)
    return [
        event
        for event in replay_source(settings, rate=0.0)
        if event.status is None or drop_reason(event.status, filters) is None
    ]


def expected_keys(events: list[SourceEvent]) -> set[str]:
    """Post keys whose last event is not a delete: the posts PostgreSQL must hold."""
    last = {event.key: event.kind for event in events}
    return {key for key, kind in last.items() if kind != "delete"}


def compare_arrival(expected: set[str], contents: dict[str, str], silver_ids: list[str],
                    arrived: list[tuple[str, str | None, str | None, str | None]], processed: list[str],
                    quarantined: set[str]) -> dict[str, list[str]]:
    """Row for row, what arrived against what was produced. `arrived`: RAWPOSTS (post_id, instance,
    status_id, post_content); `processed`: PROCESSEDPOSTS.raw_post_id. A post is duplicated when it is in
    silver more than once (Delta has no primary key), under two keys in RAWPOSTS (same instance and status
    id), or not exactly once in PROCESSEDPOSTS; mismatched when its text is not what was produced."""
    pg = {row[0] for row in arrived}
    by_status = Counter((instance, status_id) for _, instance, status_id, _ in arrived)
    per_processed = Counter(processed)
    duplicated = ({key for key, n in Counter(silver_ids).items() if n > 1}
                  | {key for key, instance, status_id, _ in arrived if by_status[(instance, status_id)] > 1}
                  | {key for key in pg if per_processed[key] != 1})
    return {
        "missing": sorted(expected - pg - quarantined),
        "unexpected": sorted(pg - expected),
        "mismatched": sorted(key for key, _, _, text in arrived if key in contents and text != contents[key]),
        "duplicated": sorted(duplicated),
    }


def _version_at(status: dict) -> datetime | None:
    for name in ("edited_at", "created_at"):
        value = status.get(name)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
    return None


def quarantined_keys(settings: Settings) -> set[str]:
    """The keys in silver/posts_quarantine (none while the table is missing or being written: a poller
    asks again on its next poll)."""
    from tootlake.pipelines.lake import Lake

    table = Lake(settings).arrow_if_readable(SILVER_POSTS_QUARANTINE, columns=["key"])
    return set() if table is None else {key for key in table.column("key").to_pylist() if key}


def expected_contents(events: list[SourceEvent]) -> dict[str, str]:
    """Post key -> the plain text PostgreSQL must hold for it: its latest version (the last edit wins,
    as in silver), through the same text rules (html_to_text, then the sync's text policy)."""
    from tootlake.bronze.text import html_to_text
    from tootlake.pipelines.databases.records import clean_text

    latest: dict[str, tuple[datetime | None, dict]] = {}
    for event in events:
        if event.kind == "delete" or event.status is None:
            continue
        version = _version_at(event.status)
        current = latest.get(event.key)
        if current is None or current[0] is None or version is None or version >= current[0]:
            latest[event.key] = (version, event.status)
    keys = expected_keys(events)
    return {key: clean_text(html_to_text(status.get("content")))
            for key, (_, status) in latest.items() if key in keys}


class Drill:
    def __init__(
        self,
        settings: Settings,
        log: Log = print,
        rate: float = 5.0,
        outage_s: float = 30.0,
        stage_timeout_s: float = 240.0,
        hold: int = 30,
    ) -> None:
        self.settings = settings
        self.log = log
        self.rate = rate
        self.hold = hold
        self.held: list[SourceEvent] = []
        self.outage_s = outage_s
        self.stage_timeout_s = stage_timeout_s
        self.report = DrillReport()
        self.restarts_before_kill: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None

    # -- observation --
    def _commits(self, stage: str) -> list[tuple[int, float]]:
        folder = self.settings.checkpoint_path(STAGE_CHECKPOINTS[stage]) / "commits"
        if not folder.is_dir():
            return []
        out = []
        for path in folder.iterdir():
            if path.name.isdigit():
                with contextlib.suppress(OSError):
                    out.append((int(path.name), path.stat().st_mtime))
        return sorted(out)

    def _first_commit_after(self, stage: str, after: float) -> float | None:
        times = [t for _n, t in self._commits(stage) if t > after]
        return min(times) if times else None

    def _stage_state(self, stage: str) -> dict[str, Any]:
        state = read_state(self.settings) or {}
        return state.get("stages", {}).get(stage, {})

    def _sample_rss(self) -> None:
        if self.proc is None:
            return
        run_rss = tree_rss([self.proc.pid])
        service_pids = [s.pid for s in services.services_status(self.settings) if s.pid]
        total = run_rss + (tree_rss(service_pids) if service_pids else 0)
        self.report.peak_rss_run_bytes = max(self.report.peak_rss_run_bytes, run_rss)
        self.report.peak_rss_total_bytes = max(self.report.peak_rss_total_bytes, total)

    def _wait(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        def check() -> Any:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"`tootlake run` exited ({self.proc.returncode}) while waiting for {what}")
            return predicate()

        value = wait_until(check, timeout, every=1.0, between=self._sample_rss)
        if not value:
            self.log(f"[drill] gave up waiting for {what} after {timeout:.0f} s")
            return None
        return value

    def show_status(self, title: str) -> None:
        from tootlake.pipelines.ops.status import collect_status, format_status

        self.log(f"\n[drill] --- tootlake status: {title} ---")
        self.log(format_status(collect_status(self.settings)))

    # -- faults --
    def kill_stage(self, stage: str) -> float:
        pid = self._wait(
            f"{stage} running",
            lambda: (
                self._stage_state(stage).get("state") == "running" and self._stage_state(stage).get("pid")
            ),
            self.stage_timeout_s,
        )
        if not pid:
            raise RuntimeError(f"stage {stage} never ran")
        self.restarts_before_kill[stage] = int(self._stage_state(stage).get("restarts", 0))
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.log(f"[drill] SIGKILL {stage} (process group {pid})")
        return at

    def wait_commit(self, stage: str, after: float, label: str) -> None:
        got = self._wait(
            f"{stage} to commit after {label}",
            lambda: self._first_commit_after(stage, after),
            self.stage_timeout_s,
        )
        self.report.recovery_s[label] = None if got is None else round(got - after, 1)
        if got is not None:
            self.log(f"[drill] {label}: {stage} committed a batch {got - after:.0f} s later")

    def _kafka_end_total(self) -> int:
        from tootlake.pipelines.ops.status import _kafka

        ends = _kafka(self.settings).get("end_offsets") or {}
        return sum(ends.values())

    # -- the drill --
    def run(self) -> DrillReport:
        started = time.monotonic()
        s = self.settings
        self.log(f"[drill] topic {s.kafka_topic}, database {s.postgres_db}, lake {s.location(s.lake_dir)}")
        for status in services.ensure_services(s):
            self.log(f"[drill] {status.line()}")
        from tootlake.pipelines.databases.dbinit import init_postgres

        init_postgres(s.postgres_conninfo(), log=lambda _line: None)
        events = replay_events(s)
        expected = expected_keys(events)
        # The producer sends all but the last few events; the drill sends those itself, a chunk after each
        # fault, so every recovery has fresh posts to show whatever the producer's pace.
        hold = min(self.hold, len(events) // 4)
        self.held = events[len(events) - hold :]
        self.report.produced_events, self.report.expected_posts = len(events), len(expected)
        self.log(
            f"[drill] the replay has {len(events)} events ({len(expected)} posts expected in PostgreSQL); "
            f"the producer sends {len(events) - hold} at {self.rate}/s, the drill {hold} after the faults"
        )
        previous = read_state(s)
        if previous and previous["alive"]:
            raise RuntimeError(f"`tootlake run` already runs on these settings (pid {previous['pid']})")
        state_path(s).unlink(missing_ok=True)  # never read a previous run's stage pids
        out_path = s.path(s.log_dir) / "drill-run.log"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tootlake.pipelines.cli", "run", "--no-services"]
        command += ["--rate", str(self.rate), "--max", str(len(events) - hold)]
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(s),
                cwd=str(s.tootlake_home),
            )
        self.log(f"[drill] `tootlake run` pid {self.proc.pid}, output in {out_path}")
        try:
            self._faults(expected)
        finally:
            self._stop_run()
            # a failed step must not leave the services down for the next test
            services.ensure_services(s)
        self._count(expected, expected_contents(events))
        state = read_state(s) or {}
        self.report.restarts = {k: v.get("restarts", 0) for k, v in state.get("stages", {}).items()}
        for stage in ("producer", *self.kill_targets()):
            if self.report.restarts.get(stage, 0) <= self.restarts_before_kill.get(stage, 10**6):
                self.report.problems.append(f"{stage} was not restarted after its SIGKILL")
        if self.report.run_exit != 0:
            self.report.problems.append(f"`tootlake run` exited {self.report.run_exit} on SIGTERM")
        self.report.elapsed_s = time.monotonic() - started
        self.log("\n[drill] " + self.report.summary().replace("\n", "\n[drill] "))
        return self.report

    def _outage(self, service: str, stop: Callable[[Settings], Any], start: Callable[[Settings], Any],
                parts_left: int, stage: str) -> None:
        """Stop `service` for outage_s (status shown half-way), start it, inject the next part of the
        replay and wait until `stage` commits again."""
        self.log(f"[drill] stopping {service} for {self.outage_s:.0f} s")
        stop(self.settings)
        time.sleep(self.outage_s / 2)
        self.show_status(f"{service} down")
        time.sleep(self.outage_s / 2)
        start(self.settings)
        back = time.time()
        self.log(f"[drill] {service} is back")
        self._inject(parts_left=parts_left)
        self.wait_commit(stage, back, f"{service} outage")

    def _inject(self, parts_left: int) -> None:
        """Send the next share of the held-back events (fresh posts for the stages to show recovery)."""
        from tootlake.pipelines.source.producer import produce_events

        take = len(self.held) if parts_left <= 1 else len(self.held) // parts_left
        chunk, self.held = self.held[:take], self.held[take:]
        if chunk:
            report = produce_events(self.settings, chunk)
            self.log(f"[drill] sent {report.delivered} fresh events myself")

    def _faults(self, expected: set[str]) -> None:
        # 1. the producer, early: it restarts and resumes (its last unconfirmed second reaches Kafka twice)
        self._wait("the producer to send posts", lambda: self._kafka_end_total() >= 30, self.stage_timeout_s)
        before = self._kafka_end_total()
        at = self.kill_stage("producer")
        got = self._wait(
            "the restarted producer to send",
            lambda: (
                self._stage_state("producer").get("restarts", 0) > self.restarts_before_kill["producer"]
                and self._kafka_end_total() > before
                and time.time()
            ),
            self.stage_timeout_s,
        )
        self.report.recovery_s["kill producer"] = None if not got else round(got - at, 1)

        # 2. each Spark stage as soon as it has committed its first batch (the kills overlap: shorter drill)
        self._kill_spark_stages()

        # 3. the broker, then 4. PostgreSQL
        self._outage("Kafka", services.stop_kafka, services.start_kafka, parts_left=2, stage="bronze")
        self._outage("PostgreSQL", services.stop_postgres, services.start_postgres, parts_left=1,
                     stage="sync")

        # 5. drain
        self._wait(
            "the producer to finish",
            lambda: self._stage_state("producer").get("state") == "done",
            3 * self.stage_timeout_s,
        )
        self._wait(
            "every expected post in PostgreSQL",
            lambda: self._pg_keys() >= expected - self._quarantined_keys(),
            2 * self.stage_timeout_s,
        )
        self.show_status("drained")

    def kill_targets(self) -> dict[str, tuple[str, ...]]:
        """What the drill SIGKILLs -> the Spark stages whose recovery it then waits for: the one application
        hosting all four queries (RUN_ONE_APP), or each stage's own JVM."""
        if self.settings.run_one_app:
            return {APP_STAGE: SPARK_STAGES}
        return {stage: (stage,) for stage in SPARK_STAGES}

    def _kill_spark_stages(self) -> None:
        targets = self.kill_targets()
        pending, kills, recovered = list(targets), {}, set()
        waits = [(target, stage) for target, stages in targets.items() for stage in stages]
        deadline = time.monotonic() + 4 * self.stage_timeout_s
        while len(recovered) < len(waits) and time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"`tootlake run` exited ({self.proc.returncode}) during the stage kills")
            for target in list(pending):
                if (all(self._commits(stage) for stage in targets[target])
                        and self._stage_state(target).get("state") == "running"):
                    kills[target] = self.kill_stage(target)
                    pending.remove(target)
                    if not pending:
                        self.show_status("just after the last stage kill")
                        self._inject(parts_left=3)
            for target, stage in waits:
                at = kills.get(target)
                got = None if at is None or stage in recovered else self._first_commit_after(stage, at)
                if got is not None:
                    recovered.add(stage)
                    self.report.recovery_s[f"kill {stage}"] = round(got - at, 1)
                    self.log(f"[drill] kill {target}: {stage} committed a batch {got - at:.0f} s after the "
                             "SIGKILL")
            self._sample_rss()
            time.sleep(1.0)
        for stage in SPARK_STAGES:
            self.report.recovery_s.setdefault(f"kill {stage}", None)
        if pending:
            raise RuntimeError(f"stage(s) {', '.join(pending)} never committed a first batch")

    def _stop_run(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.report.run_exit = None if self.proc is None else self.proc.returncode
            return
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.report.run_exit = self.proc.wait(self.settings.run_stop_timeout_s + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.report.run_exit = self.proc.wait()
        self.report.shutdown_s = time.monotonic() - started
        self.log(
            f"[drill] `tootlake run` stopped in {self.report.shutdown_s:.1f} s (exit {self.report.run_exit})"
        )

    # -- counts --
    def _pg_keys(self) -> set[str]:
        import psycopg2

        try:
            with contextlib.closing(
                psycopg2.connect(self.settings.postgres_conninfo(), connect_timeout=3)
            ) as c:
                cur = c.cursor()
                cur.execute("select post_id from rawposts")
                return {row[0] for row in cur.fetchall()}
        except psycopg2.Error:
            return set()

    def _quarantined_keys(self) -> set[str]:
        return quarantined_keys(self.settings)

    def _count(self, expected: set[str], contents: dict[str, str] | None = None) -> None:
        import psycopg2
        import pyarrow.compute as pc

        from tootlake.pipelines.lake import Lake

        r, s = self.report, self.settings
        lake = Lake(s)
        bronze = lake.arrow(BRONZE_POSTS_RAW, columns=["key"])
        r.bronze_rows, r.bronze_keys = bronze.num_rows, len(pc.unique(bronze.column("key")))
        silver = lake.arrow(SILVER_POSTS, columns=["post_id", "is_deleted"])
        r.silver_posts = silver.num_rows - int(pc.sum(silver.column("is_deleted")).as_py() or 0)
        quarantined = self._quarantined_keys()
        r.quarantined = len(quarantined)
        with contextlib.closing(psycopg2.connect(s.postgres_conninfo(), connect_timeout=5)) as conn:
            cur = conn.cursor()
            cur.execute("select count(*), count(distinct post_id) from rawposts")
            r.rawposts, r.rawposts_distinct = cur.fetchone()
            cur.execute("select count(*), count(distinct raw_post_id) from processedposts")
            r.processedposts, r.processedposts_distinct = cur.fetchone()
            cur.execute("select post_id, instance, status_id, post_content from rawposts")
            arrived = cur.fetchall()
            cur.execute("select raw_post_id from processedposts")
            processed = [row[0] for row in cur.fetchall()]
        found = compare_arrival(expected, contents or {}, silver.column("post_id").to_pylist(), arrived,
                                processed, quarantined)
        r.missing, r.unexpected, r.mismatched, r.duplicated = (
            found["missing"], found["unexpected"], found["mismatched"], found["duplicated"])
        if r.missing:
            r.problems.append(
                f"{len(r.missing)} produced post(s) missing from RAWPOSTS, e.g. {r.missing[:3]}"
            )
        if r.unexpected:
            r.problems.append(f"{len(r.unexpected)} post(s) in RAWPOSTS that were not produced")
        if r.duplicated:
            r.problems.append(f"{len(r.duplicated)} produced post(s) arrived more than once, e.g. "
                              f"{r.duplicated[:3]}")
        if r.mismatched:
            r.problems.append(f"{len(r.mismatched)} post(s) in RAWPOSTS differ from what was produced, e.g. "
                              f"{r.mismatched[:3]}")
        if r.processedposts != r.rawposts:
            r.problems.append(f"PROCESSEDPOSTS has {r.processedposts} rows, RAWPOSTS {r.rawposts}")


def drill_settings(settings: Settings, scratch: Path, name: str) -> Settings:
    """The drill's own topic, database, lake and checkpoints (services and ports stay as configured)."""
    return settings.model_copy(
        update={
            "kafka_topic": f"drill-{name}",
            "postgres_db": f"drill_{name}",
            "lake_dir": scratch / "lake",
            "checkpoint_dir": scratch / "checkpoints",
            "gold_stream_trigger_s": min(settings.gold_stream_trigger_s, 10),
            "producer_report_every_s": 5.0,
            # its own producer PID file: `producer run` refuses to start next to another producer
            "producer_pid_file": scratch / "producer.pid",
            "producer_log_file": scratch / "producer.log",
        }
    )


def report_json(report: DrillReport) -> str:
    lists = ("missing", "unexpected", "mismatched", "duplicated")
    data = {k: v for k, v in vars(report).items() if k not in lists}
    data.update({name: len(getattr(report, name)) for name in lists}, passed=report.passed)
    return json.dumps(data, indent=1)
