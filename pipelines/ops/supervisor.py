"""`tootlake run`: the whole pipeline as supervised processes, one per stage, one log per stage.

Each stage is one of the existing entry points (`tootlake producer run`, `pipelines/jobs/<layer>.py`) in its
own process, so each Spark stage is its own JVM whose driver memory is RUN_DRIVER_MEMORY. The supervisor:
- writes each stage's stdout+stderr to `<log>/run/<stage>.log` (appended across restarts);
- restarts a stage that exits non-zero or is killed, after a back-off (RUN_BACKOFF_BASE_S * 2**n, capped
  at RUN_BACKOFF_MAX_S; n resets once a stage has run RUN_HEALTHY_AFTER_S), and counts restarts. Streaming
  stages resume from their checkpoints, so a restart neither loses nor duplicates rows;
- on SIGTERM / Ctrl-C sends SIGTERM to every stage (they stop between micro-batches), waits up to
  RUN_STOP_TIMEOUT_S, then SIGKILLs what is left (the stage's whole process group: its JVM too);
- keeps a small JSON state file (`<state>/run.json`) that `tootlake status` reads: per-stage state, pid,
  restarts, last exit, and the peak RSS of the process tree;
- hands the stages its settings as environment variables, except the secrets (passwords, tokens, DSNs):
  those go into a file only this user can read, `<state>/secrets/<pid>-<random>.json`, whose path the
  stages get in TOOTLAKE_SECRETS_FILE (`load_settings()` reads it); removed when the supervisor ends.

`--once` runs the batch form instead: bronze, silver, gold, gold stream and sync with available-now
triggers, one after another, and exits non-zero when any stage failed (for cron / systemd timers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_settings import NoDecode

from tootlake.catalog.vocab import BRONZE_POSTS_RAW, GOLD_POSTS_PER_MINUTE, SILVER_POSTS
from tootlake.pipelines.jobs.streaming import interval, restart_backoff
from tootlake.pipelines.ops.processes import (
    is_running,
    read_state_file,
    tree_rss,
    wait_until,
    write_state_file,
)
from tootlake.pipelines.settings import SECRETS_FILE_ENV, Settings, is_object_store, write_secrets_file

Log = Callable[[str], None]
logger = logging.getLogger(__name__)
STATE_FILE = "run.json"
APP_STAGE = "pipeline"  # the one Spark application hosting the Spark stages as queries (RUN_ONE_APP)

# Which checkpoint folder and Delta table show a stage's progress (used by `tootlake status` too).
STAGE_CHECKPOINTS = {
    "bronze": "bronze",
    "silver": "silver",
    "gold": "gold_posts_per_minute",
    "sync": "sync-postgres",
}
# The table each stage writes (declared in bronze/posts_raw.py, silver/posts.py, gold/windowed.py; written
# out here so the supervisor does not import the declarations' pyspark / pandas: a test checks they match).
STAGE_TABLES = {
    "bronze": BRONZE_POSTS_RAW,
    "silver": SILVER_POSTS,
    "gold": GOLD_POSTS_PER_MINUTE,
}


@dataclass(frozen=True)
class Stage:
    """One supervised process. `finite`: exiting 0 means done (a replay producer), not a crash.
    `needs`: paths that must exist before the first start (the upstream table), so a fresh lake does not
    make the downstream stages crash-loop while bronze writes its first batch."""

    name: str
    argv: tuple[str, ...]
    finite: bool = False
    needs: tuple[Path | TableReady, ...] = ()


class TableReady:
    """A stage's `needs` entry for a table on object storage: `exists()` once the table has a commit."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings, self.name = settings, name

    def exists(self) -> bool:
        from tootlake.pipelines.lake import Lake

        try:
            return Lake(self.settings).exists(self.name)
        except OSError:  # the store does not answer yet: not ready
            return False

    def __str__(self) -> str:
        return self.settings.table_uri(self.name)


def _table_ready(settings: Settings, name: str) -> Path | TableReady:
    """What a stage waits for: the table's `_delta_log` folder (local lake) or its first commit (s3a)."""
    if is_object_store(settings.lake_dir):
        return TableReady(settings, name)
    return settings.table_path(name) / "_delta_log"


def _job(module: str, *args: str, python: str = sys.executable) -> tuple[str, ...]:
    return (python, "-m", f"tootlake.pipelines.jobs.{module}", *args)


def continuous_stages(settings: Settings, producer: bool = True, producer_args: tuple[str, ...] = (),
                      python: str = sys.executable) -> list[Stage]:
    """producer (replay by default) -> bronze -> silver -> gold stream -> sync, all continuous: as the
    queries of one Spark application (`pipeline`, RUN_ONE_APP, the default) or a JVM per stage."""
    trigger = interval(settings.run_trigger_s)
    gold_trigger = interval(settings.gold_stream_trigger_s)
    stages = []
    if producer:
        stages.append(Stage("producer", (python, "-m", "tootlake.pipelines.cli", "producer", "run",
                                         *producer_args), finite=True))
    if settings.run_one_app:  # the application waits for each query's input table itself
        return [*stages, Stage(APP_STAGE, _job("live", "--trigger", trigger, "--gold-trigger", gold_trigger,
                                                python=python))]
    bronze_log = (_table_ready(settings, STAGE_TABLES["bronze"]),)
    silver_log = (_table_ready(settings, STAGE_TABLES["silver"]),)
    stages += [
        Stage("bronze", _job("bronze", "--trigger", trigger, python=python)),
        Stage("silver", _job("silver", "--trigger", trigger, python=python), needs=bronze_log),
        Stage("gold", _job("gold", "--stream", "--trigger", gold_trigger, python=python), needs=silver_log),
        Stage("sync", _job("sync", "--trigger", trigger, "--no-gold", python=python), needs=silver_log),
    ]
    return stages


def once_stages(python: str = sys.executable) -> list[Stage]:
    """What is there, once, in dependency order (each with an available-now trigger)."""
    return [
        Stage("bronze", _job("bronze", python=python)),
        Stage("silver", _job("silver", python=python)),
        Stage("gold", _job("gold", "--no-summary", python=python)),
        Stage("gold-stream", _job("gold", "--stream", python=python)),
        Stage("sync", _job("sync", python=python)),
    ]


# --- settings -> child environment ---------------------------------------------------------------------
def settings_env(settings: Settings) -> dict[str, str]:
    """The settings that are not secrets as environment variables, so every stage sees exactly the
    supervisor's settings (also when they came from keyword overrides, as in the drill). The secrets go
    through a file instead: see `child_env`."""
    env: dict[str, str] = {}
    secret = set(type(settings).secret_names())
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None or name in secret:
            continue
        if isinstance(value, (list, dict)):
            # CSV for the comma-separated settings (NoDecode), JSON (pydantic-settings' default) otherwise
            csv = isinstance(value, list) and any(m is NoDecode or isinstance(m, NoDecode)
                                                  for m in info.metadata)
            value = ",".join(str(item) for item in value) if csv else json.dumps(value, default=str)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    return env


def child_env(settings: Settings, continuous: bool = False) -> dict[str, str]:
    """The environment of a stage: ours without any secret, plus `settings_env`, plus TOOTLAKE_SECRETS_FILE
    naming a new 0600 file with the secret settings (see `write_secrets_file`; whoever runs the stages
    removes it with `remove_secrets_file` when they are done)."""
    drop = {name.upper() for name in type(settings).secret_names()} | {SECRETS_FILE_ENV}
    env = {name: value for name, value in os.environ.items() if name.upper() not in drop}
    env.update(settings_env(settings))
    secrets_file = write_secrets_file(settings)
    if secrets_file is not None:
        env[SECRETS_FILE_ENV] = str(secrets_file)
    env["SPARK_DRIVER_MEMORY"] = settings.run_driver_memory  # one JVM per stage: bound each
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the stage log as they happen
    if continuous:
        # The jobs run the Great Expectations suites once, when their query ends: under `run` that is at
        # shutdown (slow, and racing RUN_STOP_TIMEOUT_S). The per-batch rules still run; schedule
        # `tootlake dq check` for the suites.
        env["DQ_GX_ENABLED"] = "false"
    return env


def remove_secrets_file(env: dict[str, str]) -> None:
    """Delete the secrets file `child_env` wrote for `env`, if any."""
    if SECRETS_FILE_ENV in env:
        Path(env[SECRETS_FILE_ENV]).unlink(missing_ok=True)


# --- the supervisor ------------------------------------------------------------------------------------
@dataclass
class StageState:
    name: str
    state: str = "pending"  # pending|waiting (for its input table)|running|backoff|done|stopped
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: str | None = None
    next_start_in_s: float | None = None
    log: str = ""
    failures_in_a_row: int = field(default=0, repr=False)


def app_query_states(app: dict[str, Any], settings: Settings) -> dict[str, dict[str, Any]]:
    """The application's queries as stages (what `status` and the drill read): each query's own state
    while the application that wrote `live.json` runs, else the application's state; pid and log are the
    application's, restarts count the application's restarts plus the query's own."""
    from tootlake.pipelines.jobs.streaming import LIVE_STATE_FILE

    live = read_state_file(settings.path(settings.state_dir) / LIVE_STATE_FILE) or {}
    queries = live.get("queries", {}) if live.get("pid") == app.get("pid") and app.get("pid") else {}
    running = app.get("state") == "running"
    out = {}
    for name in STAGE_CHECKPOINTS:
        query = queries.get(name, {})
        out[name] = {
            **app, "name": name, "app": APP_STAGE,
            "state": query.get("state", app.get("state")) if running else app.get("state"),
            "restarts": int(app.get("restarts") or 0) + int(query.get("restarts") or 0),
            "last_error": query.get("last_error"),
            "last_batch_id": query.get("last_batch_id"),
        }
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_path(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / STATE_FILE


def stage_log_dir(settings: Settings) -> Path:
    return settings.path(settings.log_dir) / "run"


def read_state(settings: Settings) -> dict[str, Any] | None:
    """The supervisor's state file, with `alive` telling whether that supervisor still runs."""
    state = read_state_file(state_path(settings))
    if state is None:
        return None
    pid = state.get("pid")
    state["alive"] = isinstance(pid, int) and is_running(pid, _is_supervisor)  # not a reused PID
    return state


def _is_supervisor(args: list[str]) -> bool:
    cmdline = "\0".join(args)
    return "tootlake" in cmdline and "\0run" in cmdline


def _is_entry_point(args: list[str]) -> bool:
    return "-m\0tootlake.pipelines." in "\0".join(args)


def _is_stage_process(pid: int) -> bool:
    """A stage we started: a process group leader running one of our entry points (not a reused PID)."""
    try:
        return os.getpgid(pid) == pid and is_running(pid, _is_entry_point)
    except OSError:
        return False


def stop_orphans(settings: Settings, log: Log = logger.info, timeout_s: float = 30.0) -> list[str]:
    """Stages left running by a supervisor that died (SIGKILL, OOM): stop them before starting new ones,
    so two writers never share a checkpoint. Returns the names of the stages stopped."""
    state = read_state(settings)
    if not state or state["alive"]:
        return []
    stopped = []
    for name, info in state.get("stages", {}).items():
        pid = info.get("pid")
        if isinstance(pid, int) and _is_stage_process(pid):
            log(f"[run] {name}: left running by a previous supervisor (pid {pid}): stopping it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            wait_until(lambda pid=pid: not _is_stage_process(pid), timeout_s)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
    return stopped


class Supervisor:
    """Runs `stages` until stopped; see the module docstring for the policy."""

    def __init__(self, settings: Settings, stages: list[Stage], log: Log = logger.info,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.log = log
        self.own_env = env is None  # then the secrets file is ours to remove at the end
        self.env = env if env is not None else child_env(settings, continuous=True)
        self.log_dir = stage_log_dir(settings)
        self.state_file = state_path(settings)
        self.states = {s.name: StageState(s.name, log=str(self.log_dir / f"{s.name}.log")) for s in stages}
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_mono: dict[str, float] = {}
        self.retry_at: dict[str, float] = {}
        self.stopping = False
        self.stop_signal: int | None = None  # set by SIGTERM/SIGINT or request_stop(): run() then stops
        self.started_at = _now()
        self.peak_rss = 0
        self._last_state_write = 0.0

    # -- processes --
    def _spawn(self, stage: Stage) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        st = self.states[stage.name]
        with open(st.log, "ab") as out:
            out.write(f"\n=== {_now()} start #{st.restarts + 1}: {' '.join(stage.argv[1:])}\n".encode())
            out.flush()
            # Own session: Ctrl-C in the terminal reaches only the supervisor, which stops stages in order;
            # the process group lets a kill take the stage's JVM and Python workers with it.
            proc = subprocess.Popen(stage.argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env,
                                    cwd=str(self.settings.tootlake_home), start_new_session=True)
        self.procs[stage.name] = proc
        self.started_mono[stage.name] = time.monotonic()
        st.state, st.pid, st.started_at, st.next_start_in_s = "running", proc.pid, _now(), None
        self.log(f"[run] {stage.name}: started (pid {proc.pid}), log {st.log}")

    @staticmethod
    def _kill_group(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _reap(self, stage: Stage, code: int) -> None:
        st = self.states[stage.name]
        proc = self.procs.pop(stage.name)
        self._kill_group(proc.pid, signal.SIGKILL)  # leftovers of a crashed stage (an orphaned JVM)
        st.last_exit, st.pid = code, None
        ran_s = time.monotonic() - self.started_mono.get(stage.name, time.monotonic())
        if self.stopping:
            st.state = "stopped"
            return
        if code == 0 and stage.finite:
            st.state = "done"
            self.log(f"[run] {stage.name}: finished")
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        st.failures_in_a_row, delay = restart_backoff(self.settings, st.failures_in_a_row, ran_s)
        st.state = "backoff"
        self.retry_at[stage.name] = time.monotonic() + delay
        self.log(f"[run] {stage.name}: {how} after {ran_s:.0f} s; restart in {delay:.0f} s "
                 f"(restarts so far {st.restarts}); see {st.log}")

    def _tick(self) -> None:
        now = time.monotonic()
        for stage in self.stages:
            st = self.states[stage.name]
            proc = self.procs.get(stage.name)
            if proc is not None:
                code = proc.poll()
                if code is not None:
                    self._reap(stage, code)
                    self.write_state(force=True)  # status sees a crash at once
            elif st.state == "waiting" and not self.stopping:
                if all(path.exists() for path in stage.needs):
                    self._spawn(stage)
                    self.write_state(force=True)
            elif st.state == "backoff" and not self.stopping:
                due = self.retry_at[stage.name]
                st.next_start_in_s = round(max(0.0, due - now), 1)
                if now >= due:
                    st.restarts += 1
                    self._spawn(stage)
                    self.write_state(force=True)

    def write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_state_write < 1.0:
            return
        self._last_state_write = now
        pids = [p.pid for p in self.procs.values()]
        current = tree_rss(pids) if pids else 0
        self.peak_rss = max(self.peak_rss, current)
        state = {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": _now(),
            "stopping": self.stopping,
            "rss_bytes": current,
            "peak_rss_bytes": self.peak_rss,
            "stages": {name: {k: v for k, v in asdict(st).items() if k != "failures_in_a_row"}
                       for name, st in self.states.items()},
        }
        if APP_STAGE in self.states:
            state["stages"].update(app_query_states(state["stages"][APP_STAGE], self.settings))
        write_state_file(self.state_file, state)

    def stop_all(self) -> None:
        self.stopping = True
        for name, proc in self.procs.items():
            self.log(f"[run] {name}: SIGTERM (pid {proc.pid})")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.run_stop_timeout_s
        while self.procs and time.monotonic() < deadline:
            self._tick()
            self.write_state()
            time.sleep(0.2)
        for name, proc in list(self.procs.items()):
            self.log(f"[run] {name}: still running after {self.settings.run_stop_timeout_s:.0f} s: SIGKILL")
            self._kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            self._tick()
        for st in self.states.values():
            if st.state in ("backoff", "pending", "waiting"):
                st.state = "stopped"
        self.write_state(force=True)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        self.stop_signal = signum

    def run(self, poll_s: float = 0.5) -> int:
        """Run until SIGTERM/SIGINT (or until every stage is done); returns 0 after a clean stop."""

        def on_signal(signum: int, _frame: Any) -> None:
            self.stop_signal = signum

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stop_orphans(self.settings, self.log, self.settings.run_stop_timeout_s)
            for stage in self.stages:
                missing = [str(path) for path in stage.needs if not path.exists()]
                if missing:
                    self.states[stage.name].state = "waiting"
                    self.log(f"[run] {stage.name}: waiting for {', '.join(missing)}")
                else:
                    self._spawn(stage)
            self.write_state(force=True)
            while self.stop_signal is None:
                self._tick()
                self.write_state()
                if all(st.state == "done" for st in self.states.values()):
                    break
                time.sleep(poll_s)
            if self.stop_signal is not None:
                self.log(f"[run] {signal.Signals(self.stop_signal).name}: stopping every stage")
            started = time.monotonic()
            self.stop_all()
            self.log(f"[run] stopped in {time.monotonic() - started:.1f} s; restarts: " + ", ".join(
                f"{st.name} {st.restarts}" for st in self.states.values())
                + f"; peak RSS of the stages {self.peak_rss / 2**30:.2f} GiB")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.own_env:
                remove_secrets_file(self.env)
        return 0


def run_once(settings: Settings, log: Log = logger.info, stages: list[Stage] | None = None,
             env: dict[str, str] | None = None) -> int:
    """Each stage once (available-now), in order; 1 when any stage failed (the others still run)."""
    stages = stages if stages is not None else once_stages()
    own_env = env is None
    env = env if env is not None else child_env(settings)
    log_dir = stage_log_dir(settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    current: dict[str, subprocess.Popen] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        for proc in current.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for stage in stages:
            path = log_dir / f"{stage.name}.log"
            started = time.monotonic()
            with open(path, "ab") as out:
                out.write(f"\n=== {_now()} once: {' '.join(stage.argv[1:])}\n".encode())
                out.flush()
                proc = subprocess.Popen(stage.argv, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=str(settings.tootlake_home))
                current[stage.name] = proc
                code = proc.wait()
                current.clear()
            status = "ok" if code == 0 else f"FAILED (exit {code}, see {path})"
            log(f"[run --once] {stage.name}: {status} in {time.monotonic() - started:.0f} s")
            if code != 0:
                failed.append(stage.name)
    except KeyboardInterrupt:
        for proc in current.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(settings.run_stop_timeout_s)
            if proc.poll() is None:
                proc.kill()
        log("[run --once] interrupted")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_env:
            remove_secrets_file(env)
    if failed:
        log(f"[run --once] failed stage(s): {', '.join(failed)}")
        return 1
    return 0
