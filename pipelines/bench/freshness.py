"""`tootlake bench freshness --rate R --minutes M`: end-to-end freshness of `tootlake run`, per post.

The benchmark starts the real continuous mode, `tootlake run --no-services --no-producer`, as a child process
on its own topic, PostgreSQL database, lake and checkpoints (`drill_settings`; the gold stream keeps the
configured trigger), and is itself the producer: fresh posts (the bundled statuses of
mastodon-public-timeline-2023 passing the producer's filters, each with a new status id, uri, url and
created_at = now; envelope and key from `tootlake.bronze.records`) at R posts/s, with the producer's own
confluent-kafka settings. Latency of a post = the moment its row is first seen - its Kafka timestamp
(CreateTime, set by librdkafka when the record is produced, taken from the delivery report):
- PROCESSEDPOSTS: a probe thread reads the rows added since its last look (`processed_id >` the highest
  seen: the sync is the only writer) every 0.25 s; seen = the probe's clock after the query returned;
- silver/posts: a probe thread looks for a new Delta commit every second and reads its change feed with
  delta-rs (`load_cdf`, post_id only); seen = the commit file's modification time (when it became visible).

Sequence: services up, database and topic created, `tootlake run` started, then a warm-up (--warmup posts,
the clock is not running) until they are in PROCESSEDPOSTS and silver and every Spark stage has committed a
batch; then M minutes at R posts/s (a progress line every 30 s: sent, in silver, in PROCESSEDPOSTS, backlog,
RSS); then a drain (until every post arrived, at most --drain-timeout-s); then --idle-s with no posts (idle
CPU); then SIGTERM to `tootlake run`, and the database, topic and scratch folder are removed (--keep keeps
them). Peak RSS = the `tootlake run` process tree (supervisor, drivers, JVMs, Python workers) + the Kafka and
PostgreSQL server trees, sampled every 2 s from the start; the benchmark's own process (producer + probes)
is reported apart. CPU = CPU seconds of those trees (utime+stime of each live process plus what it reaped)
/ wall time. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import SILVER_POSTS
from tootlake.pipelines.settings import Settings
from tootlake.pipelines.source.producer import send_when_queued

TEMPLATE_FILE = Path("mastodon-public-timeline-2023") / "statuses.dev.jsonl"
SPARK_STAGES = ("bronze", "silver", "gold", "sync")
PG_POLL_S = 0.25
SILVER_POLL_S = 1.0
SAMPLE_S = 2.0
Log = Callable[[str], None]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="tootlake bench freshness")
    parser.description = (
        "End-to-end freshness of `tootlake run` (own topic, lake, checkpoints and database): feeds fresh "
        "posts at R posts/s for M minutes after a warm-up, and measures per post the time from its Kafka "
        "timestamp to its row in PROCESSEDPOSTS (and in silver/posts); prints p50/p95/max, backlog every "
        "30 s, peak RSS of the whole stack and CPU (while fed and idle). Last line: one JSON object.")
    parser.add_argument("--rate", type=float, default=5.0, metavar="R", help="posts per second (default 5)")
    parser.add_argument("--minutes", type=float, default=10.0, metavar="M",
                        help="how long to feed posts after the warm-up (default 10)")
    parser.add_argument("--warmup", type=int, default=20, metavar="N",
                        help="posts sent before the clock starts; they must arrive first (default 20)")
    parser.add_argument("--ready-timeout-s", type=float, default=900.0,
                        help="give up when the warm-up has not arrived after this long (default 900)")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0,
                        help="after the last post, wait at most this long for the rest (default 600)")
    parser.add_argument("--idle-s", type=float, default=30.0,
                        help="idle period measured after the drain, once no stage has committed a batch "
                             "for GOLD_STREAM_TRIGGER_S + 5 s, no posts (default 30)")
    parser.add_argument("--every-s", type=float, default=30.0,
                        help="backlog / progress interval (default 30)")
    parser.add_argument("--file", type=Path, help="statuses to build the posts from (default: the bundled "
                                                  "mastodon-public-timeline-2023/statuses.dev.jsonl)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (lake, checkpoints, run log), the database and topic")
    return parser


# --- pure parts ----------------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latencies(sent_at: Mapping[str, float], seen_at: Mapping[str, float]) -> list[float]:
    """Seen - sent per post of `sent_at` that was seen (seconds)."""
    return [seen_at[key] - sent for key, sent in sent_at.items() if key in seen_at]


def latency_stats(sent_at: Mapping[str, float], seen_at: Mapping[str, float]) -> dict[str, Any]:
    values = latencies(sent_at, seen_at)
    stats: dict[str, Any] = {"sent": len(sent_at), "arrived": len(values)}
    for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
        value = percentile(values, q)
        stats[f"{name}_s"] = None if value is None else round(value, 2)
    return stats


def backlog_series(sent_at: Iterable[float], arrived_at: Iterable[float], start: float, end: float,
                   every_s: float = 30.0) -> list[dict[str, float | int]]:
    """At start + every_s, start + 2 every_s, ... (and `end`): posts sent by then, arrived by then, and
    backlog = sent - arrived. `t` is seconds since `start`."""
    sent, arrived = sorted(sent_at), sorted(arrived_at)
    ticks = []
    t = start + every_s
    while t <= end + 1e-9:
        ticks.append(t)
        t += every_s
    if not ticks or end - ticks[-1] > 1e-6:
        ticks.append(end)
    series = []
    for tick in ticks:
        n_sent, n_arrived = bisect.bisect_right(sent, tick), bisect.bisect_right(arrived, tick)
        series.append({"t": round(tick - start, 1), "sent": n_sent, "arrived": n_arrived,
                       "backlog": n_sent - n_arrived})
    return series


def cores(cpu_s: float, wall_s: float) -> float | None:
    return None if wall_s <= 0 else round(cpu_s / wall_s, 3)


def fresh_status(template: Mapping[str, Any], status_id: str, created_at: datetime) -> dict[str, Any]:
    """A copy of `template` as a new post: new id (also in uri / url), created now, never edited."""
    status = copy.deepcopy(dict(template))
    old = str(template.get("id", ""))
    for name in ("uri", "url"):
        value = status.get(name)
        if isinstance(value, str) and old and value.endswith(old):
            status[name] = value[: -len(old)] + status_id
    status["id"] = status_id
    stamp = created_at.astimezone(UTC).isoformat(timespec="milliseconds")
    status["created_at"] = stamp.replace("+00:00", "Z")
    status["edited_at"] = None
    return status


def summary(figures: Mapping[str, Any]) -> list[str]:
    """The human-readable result lines (the JSON line is printed after them)."""

    def lat(stats: Mapping[str, Any]) -> str:
        if not stats["arrived"]:
            return f"{stats['arrived']}/{stats['sent']} arrived"
        return (f"{stats['arrived']}/{stats['sent']} arrived; latency p50 {stats['p50_s']:.1f} s, "
                f"p95 {stats['p95_s']:.1f} s, max {stats['max_s']:.1f} s")

    def gib(value: int | None) -> str:
        return "-" if value is None else f"{value / 2**30:.2f} GiB"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} cores ({value * 100:.0f} % of one core)"

    backlog = ", ".join(f"{p['t']:.0f}s {p['backlog']}" for p in figures["backlog"])
    lines = [
        f"rate {figures['rate']:g} posts/s for {figures['minutes']:g} min after a warm-up of "
        f"{figures['warmup_posts']} posts ({figures['ready_s']:.0f} s until they were in PROCESSEDPOSTS and "
        "silver and every stage had committed a batch; the clock started then)",
        f"Kafka timestamp -> PROCESSEDPOSTS: {lat(figures['processedposts'])}",
        f"Kafka timestamp -> silver/posts:   {lat(figures['silver'])}",
        f"backlog (sent - in PROCESSEDPOSTS), s after the clock started: {backlog}",
        f"peak RSS: stack {gib(figures['peak_rss_stack_bytes'])} (tootlake run tree "
        f"{gib(figures['peak_rss_run_bytes'])}, Kafka {gib(figures['peak_rss_kafka_bytes'])}, PostgreSQL "
        f"{gib(figures['peak_rss_postgres_bytes'])}); this benchmark's process (producer + probes) "
        f"{gib(figures['peak_rss_bench_bytes'])}",
        f"CPU of the stack: {pct(figures['cpu_cores_fed'])} while fed ({figures['fed_s']:.0f} s), "
        f"{pct(figures['cpu_cores_idle'])} idle ({figures['idle_s']:.0f} s, no posts, after the drain); "
        f"this benchmark's process {pct(figures['cpu_cores_bench_fed'])} while fed",
        f"stage restarts: {', '.join(f'{k} {v}' for k, v in figures['restarts'].items()) or '-'}; "
        f"`tootlake run` stopped on SIGTERM in {figures['shutdown_s']} s (exit {figures['run_exit']})",
    ]
    if figures["quarantined"]:
        lines.append(f"{figures['quarantined']} of the posts were quarantined by silver "
                     "(never in PostgreSQL)")
    missing = figures["processedposts"]["sent"] - figures["processedposts"]["arrived"]
    if missing:
        lines.append(f"{missing} post(s) not in PROCESSEDPOSTS after the drain: the percentiles are over the "
                     "posts that arrived")
    return lines


# --- the benchmark -------------------------------------------------------------------------------------
def load_templates(settings: Settings, path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(instance, status) of the statuses that pass the producer's filters and encode."""
    from tootlake.bronze.filters import drop_reason
    from tootlake.bronze.records import build_envelope, encode_record
    from tootlake.pipelines.source.mastodon import replay_source
    from tootlake.pipelines.source.producer import filter_config

    filters = filter_config(settings)
    out = []
    for event in replay_source(settings, files=[path], rate=0.0):
        if event.kind != "status" or event.status is None or drop_reason(event.status, filters) is not None:
            continue
        try:
            encode_record(build_envelope("status", event.instance, event.fetched_at, event.status))
        except (UnicodeEncodeError, ValueError, TypeError):
            continue
        out.append((event.instance, event.status))
    if not out:
        raise RuntimeError(f"no usable status in {path}")
    return out


class Freshness:
    def __init__(self, settings: Settings, args: argparse.Namespace, scratch: Path, log: Log = print) -> None:
        self.settings = settings
        self.args = args
        self.scratch = scratch
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.stop = threading.Event()
        self.sent_at: dict[str, float] = {}  # key -> Kafka timestamp (s)
        self.pg_seen: dict[str, float] = {}
        self.silver_seen: dict[str, float] = {}
        self.timestamp_types: set[int] = set()
        self.delivery_errors: list[str] = []
        self.warmup_keys: list[str] = []
        self.measured_keys: list[str] = []
        self.peak = {"run": 0, "kafka": 0, "postgres": 0, "stack": 0, "bench": 0}
        self.meters: list = []  # CPU meters (fed, idle) the sampler thread samples every SAMPLE_S
        self.service_pids: dict[str, int] = {}
        self.probe_errors: dict[str, str] = {}
        self._next_id = (int(time.time() * 1000) << 16)
        self._templates: list[tuple[str, dict[str, Any]]] = []
        self._template_i = 0
        self.producer: Any = None
        self.phase = "warm-up"
        self.figures_stop: dict[str, Any] = {"shutdown_s": None, "run_exit": None}

    # -- feeding --
    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(str(err))
            return
        ts_type, ts_ms = msg.timestamp()
        self.timestamp_types.add(ts_type)
        self.sent_at[msg.key().decode()] = ts_ms / 1000.0

    def _send_one(self) -> str:
        from tootlake.bronze.records import build_envelope, encode_record

        instance, template = self._templates[self._template_i % len(self._templates)]
        self._template_i += 1
        self._next_id += 1
        now = datetime.now(UTC)
        status = fresh_status(template, str(self._next_id), now)
        key, value = encode_record(build_envelope("status", instance, now, status))
        send_when_queued(self.producer, self.settings.kafka_topic, key, value, self._on_delivery, poll_s=0.1)
        self.producer.poll(0)
        return key.decode()

    def _send(self, count: int | None, seconds: float | None, keys: list[str]) -> None:
        """At `args.rate` posts/s, `count` posts or for `seconds` (paced on the clock, no drift)."""
        started, i = time.monotonic(), 0
        while not self.stop.is_set():
            if count is not None and i >= count:
                break
            due = started + i / self.args.rate
            if seconds is not None and due >= started + seconds:
                break
            wait = due - time.monotonic()
            if wait > 0:
                self.producer.poll(min(wait, 0.05))
                continue
            keys.append(self._send_one())
            i += 1
            self._check_run()
        self.producer.flush(30)

    # -- probes --
    def _probe_pg(self) -> None:
        import psycopg2

        conn, last_id = None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.settings.postgres_conninfo(), connect_timeout=3)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT processed_id, raw_post_id FROM processedposts "
                                "WHERE processed_id > %s ORDER BY processed_id", (last_id,))
                    rows = cur.fetchall()
                now = time.time()
                for processed_id, key in rows:
                    last_id = max(last_id, processed_id)
                    self.pg_seen.setdefault(key, now)
            except psycopg2.Error as exc:
                self.probe_errors["processedposts"] = str(exc).strip().splitlines()[0]
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            self.stop.wait(PG_POLL_S)
        with contextlib.suppress(Exception):
            conn.close()

    def _probe_silver(self) -> None:
        import pyarrow as pa

        from tootlake.pipelines.lake import Lake

        lake = Lake(self.settings)
        path = lake.path(SILVER_POSTS)
        version = 0  # next version to read
        while not self.stop.is_set():
            commit = path / "_delta_log" / f"{version:020d}.json"
            if not commit.exists():
                self.stop.wait(SILVER_POLL_S)
                continue
            try:
                seen = commit.stat().st_mtime
                table = lake.table(SILVER_POSTS)
                try:
                    changes = pa.table(table.load_cdf(starting_version=version, ending_version=version,
                                                      columns=["post_id", "_change_type"]))
                    pairs = zip(changes.column("post_id").to_pylist(),
                                changes.column("_change_type").to_pylist(), strict=True)
                    keys = [key for key, change in pairs if change in ("insert", "update_postimage")]
                except Exception:  # no change feed for this version: the whole snapshot, post_id only
                    table.load_as_version(version)
                    keys = table.to_pyarrow_table(columns=["post_id"]).column("post_id").to_pylist()
                for key in keys:
                    if key is not None:
                        self.silver_seen.setdefault(str(key), seen)
                version += 1
            except Exception as exc:  # being written right now: again on the next poll
                self.probe_errors["silver"] = f"{type(exc).__name__}: {exc}"[:300]
                self.stop.wait(SILVER_POLL_S)

    # -- observation --
    def _service_pids(self) -> dict[str, int]:
        from tootlake.pipelines.ops import services

        return {status.name: status.pid for status in services.services_status(self.settings) if status.pid}

    def _sample(self) -> None:
        from tootlake.pipelines.ops.processes import rss_bytes, tree_rss

        run = tree_rss([self.proc.pid]) if self.proc is not None and self.proc.poll() is None else 0
        kafka = tree_rss([self.service_pids["kafka"]]) if "kafka" in self.service_pids else 0
        postgres = tree_rss([self.service_pids["postgres"]]) if "postgres" in self.service_pids else 0
        for name, value in (("run", run), ("kafka", kafka), ("postgres", postgres),
                            ("stack", run + kafka + postgres), ("bench", rss_bytes(os.getpid()))):
            self.peak[name] = max(self.peak[name], value)
        for meter in list(self.meters):
            meter.sample(self.stack_pids())

    def _sampler(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self._sample()
            self.stop.wait(SAMPLE_S)

    def stack_pids(self) -> list[int]:
        return list(self.service_pids.values()) + ([self.proc.pid] if self.proc is not None else [])

    def cpu_meter(self):
        """A per-process CPU meter of the whole stack, sampled by the sampler thread from now on."""
        from tootlake.pipelines.ops.processes import CpuMeter

        meter = CpuMeter(self.stack_pids())
        self.meters.append(meter)
        return meter

    def stack_cpu_seconds(self, meter) -> float:
        """The CPU seconds the stack spent since `meter` was made; stops sampling it."""
        meter.sample(self.stack_pids())
        self.meters.remove(meter)
        return meter.seconds()

    def _check_run(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"`tootlake run` exited ({self.proc.returncode}); "
                               f"see {self.scratch / 'run.log'}")

    def _stage_states(self) -> dict[str, dict[str, Any]]:
        from tootlake.pipelines.ops.supervisor import read_state

        return (read_state(self.settings) or {}).get("stages", {})

    def _commits(self, stage: str) -> int:
        from tootlake.pipelines.ops.supervisor import STAGE_CHECKPOINTS

        folder = self.settings.checkpoint_path(STAGE_CHECKPOINTS[stage]) / "commits"
        with contextlib.suppress(OSError):
            return sum(1 for p in folder.iterdir() if p.name.isdigit())
        return 0

    def _settle(self, quiet_s: float, limit_s: float) -> float:
        """Wait until no Spark stage committed a batch for `quiet_s` (at most `limit_s`); seconds waited."""
        started = last_change = time.time()
        commits = {st: self._commits(st) for st in SPARK_STAGES}
        while time.time() - last_change < quiet_s and time.time() - started < limit_s:
            time.sleep(1.0)
            self._check_run()
            now = {st: self._commits(st) for st in SPARK_STAGES}
            if now != commits:
                commits, last_change = now, time.time()
        return time.time() - started

    def _arrived(self, keys: list[str], seen: Mapping[str, float]) -> int:
        return sum(1 for key in keys if key in seen)

    def _progress(self, phase: str, clock_start: float) -> None:
        keys = self.measured_keys
        sent = len(keys)
        pg, silver = self._arrived(keys, self.pg_seen), self._arrived(keys, self.silver_seen)
        self.log(f"[freshness] {phase} {time.time() - clock_start:5.0f} s: sent {sent}, in silver {silver}, "
                 f"in PROCESSEDPOSTS {pg}, backlog {sent - pg}; RSS stack {self.peak_now()}")

    def peak_now(self) -> str:
        return f"peak {self.peak['stack'] / 2**30:.2f} GiB"

    # -- the run --
    def run(self) -> dict[str, Any]:
        from confluent_kafka import Producer

        from tootlake.pipelines.databases.dbinit import init_postgres
        from tootlake.pipelines.ops import services
        from tootlake.pipelines.ops.supervisor import child_env, read_state, state_path
        from tootlake.pipelines.source.producer import ensure_topic, producer_config

        s, args = self.settings, self.args
        self.log(f"[freshness] topic {s.kafka_topic}, database {s.postgres_db}, scratch {self.scratch}")
        for status in services.ensure_services(s):
            self.log(f"[freshness] {status.line()}")
        self.service_pids = self._service_pids()
        init_postgres(s.postgres_conninfo(), log=lambda _line: None)
        ensure_topic(s)
        path = args.file or s.path(s.shared_data_dir) / TEMPLATE_FILE
        self._templates = load_templates(s, path)
        self.log(f"[freshness] {len(self._templates)} statuses of {path} as templates (new ids, created now)")
        previous = read_state(s)
        if previous and previous["alive"]:
            raise RuntimeError(f"`tootlake run` already runs on these settings (pid {previous['pid']}): its "
                               "state file would be shared; stop it first")
        state_path(s).unlink(missing_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        out_path = self.scratch / "run.log"
        self.env = child_env(s)
        command = [sys.executable, "-m", "tootlake.pipelines.cli", "run", "--no-services", "--no-producer"]
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=str(s.tootlake_home))
        self.log(f"[freshness] `tootlake run --no-producer` pid {self.proc.pid}, output in {out_path}, stage "
                 f"logs in {s.path(s.log_dir) / 'run'}")
        self.producer = Producer(producer_config(s))
        threads = [threading.Thread(target=target, daemon=True, name=name)
                   for name, target in (("pg", self._probe_pg), ("silver", self._probe_silver),
                                        ("sampler", self._sampler))]
        for thread in threads:
            thread.start()
        started = time.time()
        try:
            return self._measure(started)
        finally:
            self.stop.set()
            shutdown_s, exit_code = self._stop_run()
            self.figures_stop = {"shutdown_s": shutdown_s, "run_exit": exit_code}
            for thread in threads:
                thread.join(10)

    def _measure(self, started: float) -> dict[str, Any]:
        args = self.args
        # 1. warm-up: every stage up and through its first batches
        self._send(args.warmup, None, self.warmup_keys)
        self.log(f"[freshness] warm-up: {len(self.warmup_keys)} posts sent; waiting until they are in "
                 "PROCESSEDPOSTS and silver and every Spark stage has committed a batch (clock not running)")
        last_line = time.time()
        while True:
            self._check_run()
            ready_stages = [st for st in SPARK_STAGES if self._commits(st)]
            pg, silver = self._arrived(self.warmup_keys, self.pg_seen), self._arrived(self.warmup_keys,
                                                                                      self.silver_seen)
            if pg == silver == len(self.warmup_keys) and len(ready_stages) == len(SPARK_STAGES):
                break
            if time.time() - started > args.ready_timeout_s:
                raise RuntimeError(f"not ready after {args.ready_timeout_s:.0f} s: warm-up {pg} in "
                                   f"PROCESSEDPOSTS, {silver} in silver; "
                                   f"stages with a commit: {ready_stages}")
            if time.time() - last_line >= 15:
                last_line = time.time()
                states = self._stage_states()
                self.log(f"[freshness] waiting {time.time() - started:4.0f} s: " + ", ".join(
                    f"{st} {states.get(st, {}).get('state', '?')} ({self._commits(st)} commits)"
                    for st in SPARK_STAGES) + f"; warm-up in silver {silver}, in PROCESSEDPOSTS {pg}"
                    f"/{len(self.warmup_keys)}; RSS stack {self.peak_now()}")
            time.sleep(0.5)
        ready_s = time.time() - started
        self.log(f"[freshness] ready after {ready_s:.0f} s; clock starts: {args.rate:g} posts/s for "
                 f"{args.minutes:g} min")

        # 2. fed
        clock_start = time.time()
        fed_cpu, bench0 = self.cpu_meter(), time.process_time()
        reporter_stop = threading.Event()

        def reporter() -> None:
            phase_start = clock_start
            while not reporter_stop.wait(max(0.0, phase_start + args.every_s - time.time())):
                phase_start += args.every_s
                self._progress(self.phase, clock_start)

        self.phase = "fed"
        report_thread = threading.Thread(target=reporter, daemon=True)
        report_thread.start()
        try:
            self._send(None, args.minutes * 60, self.measured_keys)
            fed_end = time.time()
            fed_cpu_s, bench1 = self.stack_cpu_seconds(fed_cpu), time.process_time()
            if self.delivery_errors:
                self.log(f"[freshness] {len(self.delivery_errors)} records not delivered, e.g. "
                         f"{self.delivery_errors[:3]}")

            # 3. drain
            self.phase = "drain"
            self.log(f"[freshness] sent {len(self.measured_keys)} posts; waiting for the rest (at most "
                     f"{args.drain_timeout_s:.0f} s)")
            quarantined: set[str] = set()
            drain_deadline = time.time() + args.drain_timeout_s
            last_q = 0.0
            while time.time() < drain_deadline:
                self._check_run()
                if time.time() - last_q > 30:
                    last_q = time.time()
                    quarantined = _quarantined(self.settings) & set(self.measured_keys)
                wanted = [k for k in self.measured_keys if k not in quarantined]
                if (self._arrived(wanted, self.pg_seen) == len(wanted)
                        and self._arrived(wanted, self.silver_seen) == len(wanted)):
                    break
                time.sleep(0.5)
            drain_end = time.time()

            # 4. idle: once every stage has finished its last batch (the gold stream's next trigger
            # still has the drained posts to count: that is the tail of the work, not idling)
            self.phase = "idle"
            settled_s = self._settle(quiet_s=self.settings.gold_stream_trigger_s + 5.0, limit_s=300.0)
            self.log(f"[freshness] drained in {drain_end - fed_end:.0f} s, every stage quiet "
                     f"{settled_s:.0f} s later; idle for {args.idle_s:.0f} s (no posts): CPU")
            idle_cpu, idle_t0 = self.cpu_meter(), time.time()
            time.sleep(args.idle_s)
            self._check_run()
            idle_cpu_s, idle_t1 = self.stack_cpu_seconds(idle_cpu), time.time()
        finally:
            reporter_stop.set()
        quarantined = _quarantined(self.settings) & set(self.measured_keys)
        restarts = {name: st.get("restarts", 0) for name, st in self._stage_states().items()}

        sent = {k: self.sent_at[k] for k in self.measured_keys if k in self.sent_at}
        fed_s = fed_end - clock_start
        return {
            "rate": args.rate,
            "minutes": args.minutes,
            "warmup_posts": len(self.warmup_keys),
            "ready_s": round(ready_s, 1),
            "produced": len(self.measured_keys),
            "delivered": len(sent),
            "delivery_errors": len(self.delivery_errors),
            "kafka_timestamp_types": sorted(self.timestamp_types),  # 1 = CreateTime
            "processedposts": latency_stats(sent, self.pg_seen),
            "silver": latency_stats(sent, self.silver_seen),
            "quarantined": len(quarantined),
            "backlog_every_s": args.every_s,
            "backlog": backlog_series(sent.values(), [self.pg_seen[k] for k in sent if k in self.pg_seen],
                                      clock_start, drain_end, args.every_s),
            "backlog_silver": backlog_series(sent.values(),
                                             [self.silver_seen[k] for k in sent if k in self.silver_seen],
                                             clock_start, drain_end, args.every_s),
            "backlog_at_end_of_feed": sum(1 for t in sent.values() if t <= fed_end)
            - sum(1 for k in sent if self.pg_seen.get(k, math.inf) <= fed_end),
            "fed_s": round(fed_s, 1),
            "drain_s": round(drain_end - fed_end, 1),
            "idle_s": round(idle_t1 - idle_t0, 1),
            "peak_rss_stack_bytes": self.peak["stack"],
            "peak_rss_run_bytes": self.peak["run"],
            "peak_rss_kafka_bytes": self.peak["kafka"] if "kafka" in self.service_pids else None,
            "peak_rss_postgres_bytes": self.peak["postgres"] if "postgres" in self.service_pids else None,
            "peak_rss_bench_bytes": self.peak["bench"],
            "cpu_cores_fed": cores(fed_cpu_s, fed_s),
            "cpu_cores_idle": cores(idle_cpu_s, idle_t1 - idle_t0),
            "cpu_cores_bench_fed": cores(bench1 - bench0, fed_s),
            "restarts": restarts,
            "probe_errors": dict(self.probe_errors),
        }

    def _stop_run(self) -> tuple[float | None, int | None]:
        if self.producer is not None:
            self.producer.flush(10)
        if self.proc is None:
            return None, None
        if self.proc.poll() is not None:
            return None, self.proc.returncode
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(self.settings.run_stop_timeout_s + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        from tootlake.pipelines.ops.supervisor import remove_secrets_file

        remove_secrets_file(self.env)
        seconds = round(time.monotonic() - started, 1)
        self.log(f"[freshness] `tootlake run` stopped in {seconds} s (exit {code})")
        return seconds, code


def _quarantined(settings: Settings) -> set[str]:
    from tootlake.pipelines.ops.drill import quarantined_keys

    return quarantined_keys(settings)


def cleanup(settings: Settings, scratch: Path, log: Log = print) -> None:
    """Drop the database and the topic, remove the scratch folder."""
    import psycopg2
    from confluent_kafka.admin import AdminClient

    admin = settings.model_copy(update={"postgres_db": "postgres"})
    try:
        with contextlib.closing(psycopg2.connect(admin.postgres_conninfo(), connect_timeout=10)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{settings.postgres_db}" WITH (FORCE)')
    except psycopg2.Error as exc:
        log(f"[freshness] could not drop database {settings.postgres_db}: {str(exc).strip()}")
    with contextlib.suppress(Exception):
        client = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        for future in client.delete_topics([settings.kafka_topic], operation_timeout=30).values():
            future.result(timeout=30)
    shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.ops.drill import drill_settings
    from tootlake.pipelines.settings import load_settings

    if args.rate <= 0 or args.minutes <= 0:
        print("[freshness] --rate and --minutes must be positive", file=sys.stderr)
        return 2
    base = load_settings()
    name = "freshness" + time.strftime("%Y%m%d%H%M%S")
    scratch = base.path(Path("var/bench")) / name
    # own topic, database, lake, checkpoints; the gold stream keeps its configured trigger (the drill's is
    # shorter), so the pipeline runs as `tootlake run` does
    settings = drill_settings(base, scratch, name).model_copy(
        update={"gold_stream_trigger_s": base.gold_stream_trigger_s})
    bench = Freshness(settings, args, scratch, log=lambda line: print(line, flush=True))
    try:
        figures = bench.run()
    except (Exception, KeyboardInterrupt) as exc:
        print(f"[freshness] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if not args.keep:
            cleanup(settings, scratch)
        return 1
    figures.update(bench.figures_stop)
    for line in summary(figures):
        print(f"[freshness] {line}", flush=True)
    if args.keep:
        print(f"[freshness] kept {scratch}, database {settings.postgres_db}, topic {settings.kafka_topic}")
    else:
        cleanup(settings, scratch)
    print(json.dumps(figures), flush=True)
    pg = figures["processedposts"]
    return 0 if pg["arrived"] + figures["quarantined"] >= pg["sent"] and pg["sent"] else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
