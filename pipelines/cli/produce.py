"""`tootlake produce …` (one run) and `tootlake producer start|stop|status|run` (daemon control)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tootlake.pipelines.ops import processes
from tootlake.pipelines.settings import Settings, load_settings

log = logging.getLogger("tootlake.producer")
STOP_TIMEOUT_S = 30.0


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=["live", "replay"],
                        help="live Mastodon (MASTODON_INSTANCE) or replay files (default: PRODUCER_SOURCE)")
    parser.add_argument("--file", dest="files", action="extend", nargs="+", type=Path, metavar="F",
                        help="replay file(s): JSONL statuses (REST API or Mastodon.py form) or .sse "
                        "recordings (default: REPLAY_FILES, else the real statuses in ../shared/data)")
    parser.add_argument("--max", dest="max_events", type=int, metavar="N",
                        help="stop after N records (a replay: N of its records in all, resumed runs too)")
    parser.add_argument("--rate", type=float, metavar="R",
                        help="replay at most R posts/s (default: REPLAY_RATE; 0 = as fast as possible)")
    parser.add_argument("--instance", help="replay: instance host the files were read from "
                        "(default: inferred from local accounts, else MASTODON_INSTANCE)")
    parser.add_argument("--timeline", choices=["public", "local", "hashtag", "trending", "poll"],
                        help="live: what to read (default: MASTODON_TIMELINE)")
    parser.add_argument("--hashtag",
                        help="live: the hashtag for --timeline hashtag (default: MASTODON_HASHTAG)")
    parser.add_argument("--from-start", action="store_true",
                        help="replay: start from the first record, not where the last replay of the same "
                        "files into the same topic stopped (kept in STATE_DIR/producer/)")
    parser.add_argument("--dead-letter", type=Path, metavar="F",
                        help="JSONL file for records that cannot be sent, e.g. over the broker's message "
                        "size (default: STATE_DIR/producer/dead-letter.jsonl)")
    parser.add_argument("--dry-run", action="store_true",
                        help="build and count the records, print one line each (key, event, size); "
                        "write nothing to Kafka (nor the replay position, nor dead letters)")


def register(subparsers: argparse._SubParsersAction) -> None:
    produce = subparsers.add_parser(
        "produce", help="send Mastodon posts (live or replayed) to the Kafka topic",
        description="Read Mastodon events (live, or replayed from files), apply the FILTER_* settings and "
        "send one JSON envelope per event to KAFKA_TOPIC, keyed by post key (<instance host>/<status id>). "
        "A replay resumes where the last one of the same files into the same topic stopped (--from-start: "
        "from the top); --max counts that replay's records in all. A record that cannot be sent is "
        "counted, logged by key and written to the dead-letter file; the rest flows on. "
        "Prints a throughput line every PRODUCER_REPORT_EVERY_S seconds and a final count.",
    )
    _add_source_args(produce)
    produce.set_defaults(func=_handle_produce)

    producer = subparsers.add_parser(
        "producer", help="run the producer as a background daemon: start|stop|status|run",
        description="Daemon control. `start` runs `producer run` in the background (PID in "
        "PRODUCER_PID_FILE, output in PRODUCER_LOG_FILE); `stop` sends SIGTERM (the producer flushes and "
        "exits) and waits; `status` exits 0 when running, 3 when not; `run` is the same in the foreground.",
    )
    sub = producer.add_subparsers(dest="producer_command", metavar="ACTION", required=True)
    for name, help_text in (("start", "start the producer in the background"),
                            ("run", "run the producer in the foreground (SIGTERM/Ctrl-C flush and exit)")):
        action = sub.add_parser(name, help=help_text, description=help_text)
        _add_source_args(action)
        action.set_defaults(func=_handle_producer)
    sub.add_parser("stop", help="stop the background producer (SIGTERM, then wait)").set_defaults(
        func=_handle_producer)
    sub.add_parser("status", help="is the background producer running? (exit 3 if not)").set_defaults(
        func=_handle_producer)


# ---------------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------------
def build_source(settings: Settings, args: argparse.Namespace) -> Any:
    from tootlake.pipelines.source.mastodon import LiveSource, replay_source

    source = args.source or settings.producer_source
    if source == "live":
        return LiveSource(settings, mode=args.timeline, hashtag=args.hashtag)
    files = [Path(f).resolve() for f in args.files] if args.files else None  # relative to the shell's cwd
    src = replay_source(settings, files=files, rate=args.rate, instance=args.instance)
    missing = [str(f) for f in src.files if not f.is_file()]
    if missing:
        raise SystemExit(f"tootlake produce: replay file(s) not found: {', '.join(missing)} "
                         "(pass --file or set REPLAY_FILES)")
    return src


def replay_progress_for(settings: Settings, source: Any, args: argparse.Namespace) -> Any:
    """The replay's saved position (None for a live source or a dry run); reset with --from-start."""
    from tootlake.pipelines.source.mastodon import ReplaySource
    from tootlake.pipelines.source.producer import replay_progress

    if not isinstance(source, ReplaySource) or args.dry_run:
        return None
    progress = replay_progress(settings, source.files)
    if getattr(args, "from_start", False) and progress.position:
        log.info("--from-start: replaying from the first record (was at event %d)", progress.position)
        progress.reset()
        progress.save()
    return progress


def run_producer(settings: Settings, args: argparse.Namespace, pid_file: Path | None = None) -> int:
    """Produce until the source ends, --max is reached, or SIGTERM/SIGINT (which flush, then exit 0).
    A replay resumes from its saved position (see `tootlake.pipelines.source.producer.ReplayProgress`)."""
    from tootlake.pipelines.source.producer import dead_letter_path, produce_events

    source = build_source(settings, args)
    progress = replay_progress_for(settings, source, args)
    dead_letter = getattr(args, "dead_letter", None)
    dead_letter = Path(dead_letter).resolve() if dead_letter else dead_letter_path(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping, flushing what is queued", signal.Signals(signum).name)
        stop.set()
        source.close()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        echo = print if args.dry_run else None
        report = produce_events(settings, source, dry_run=args.dry_run, max_events=args.max_events,
                                stop=stop, echo=echo, progress=progress, dead_letter=dead_letter)
    except RuntimeError as exc:  # Kafka unreachable and the like: say what to do, no traceback
        print(f"tootlake produce: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pid_file is not None and processes.read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)
    print(("stopped by signal; " if stop.is_set() else "") + report.summary(), flush=True)
    if report.dead_lettered and not args.dry_run:
        print(f"{report.dead_lettered} record(s) could not be sent: see {dead_letter}", flush=True)
    return 0 if report.failed == 0 else 1


def _handle_produce(args: argparse.Namespace) -> int:
    return run_producer(load_settings(), args)


# ---------------------------------------------------------------------------------------------------
# daemon control
# ---------------------------------------------------------------------------------------------------
def _is_producer_run(args: list[str]) -> bool:
    return "producer" in args and "run" in args


def _is_our_producer(pid: int) -> bool:
    """Alive, not a zombie, and really a `producer run` (a recycled PID is not ours)."""
    return processes.is_running(pid, _is_producer_run)


def producer_pid(settings: Settings) -> int | None:
    """The running daemon's PID, or None (a stale PID file is removed)."""
    pid_file = settings.path(settings.producer_pid_file)
    pid = processes.read_pid(pid_file)
    if pid is None:
        return None
    if _is_our_producer(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    log.info("removed stale PID file %s (pid %d is gone)", pid_file, pid)
    return None


def _passthrough(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag, value in (("--source", args.source), ("--max", args.max_events), ("--rate", args.rate),
                        ("--instance", args.instance), ("--timeline", args.timeline),
                        ("--hashtag", args.hashtag)):
        if value is not None:
            out += [flag, str(value)]
    if args.files:
        out += ["--file", *[str(Path(f).resolve()) for f in args.files]]
    if getattr(args, "dead_letter", None):
        out += ["--dead-letter", str(Path(args.dead_letter).resolve())]
    if getattr(args, "from_start", False):
        out.append("--from-start")
    if args.dry_run:
        out.append("--dry-run")
    return out


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_daemon(settings: Settings, args: argparse.Namespace) -> int:
    pid_file, log_file = settings.path(settings.producer_pid_file), settings.path(settings.producer_log_file)
    running = producer_pid(settings)
    if running:
        print(f"producer already running (pid {running}); log: {log_file}")
        return 0
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tootlake.pipelines.cli", "producer", "run", *_passthrough(args)]
    with log_file.open("ab") as out:
        # A new session: the daemon survives the shell that started it and gets no terminal signals.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=settings.tootlake_home, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    time.sleep(1.5)  # catch an immediate failure (bad settings, Kafka down) here rather than later
    if proc.poll() is not None:
        pid_file.unlink(missing_ok=True)
        print(f"producer exited at once (code {proc.returncode}); last lines of {log_file}:\n"
              f"{_tail(log_file)}", file=sys.stderr)
        return 1
    print(f"producer started (pid {proc.pid}); log: {log_file}; stop with `tootlake producer stop`")
    return 0


def stop_daemon(settings: Settings, timeout_s: float = STOP_TIMEOUT_S) -> int:
    pid_file = settings.path(settings.producer_pid_file)
    pid = producer_pid(settings)
    if pid is None:
        print("producer not running")
        return 0
    if not processes.terminate(pid, _is_producer_run, timeout_s):
        print(f"producer (pid {pid}) did not stop within {timeout_s:.0f} s: killed", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 1
    pid_file.unlink(missing_ok=True)
    print(f"producer stopped (pid {pid})")
    return 0


def status_daemon(settings: Settings) -> int:
    log_file = settings.path(settings.producer_log_file)
    pid = producer_pid(settings)
    if pid is None:
        print("producer not running")
        return 3
    last = [line for line in _tail(log_file, 50).splitlines() if "msg/s" in line][-1:]
    print(f"producer running (pid {pid}); log: {log_file}" + (f"\n  {last[0]}" if last else ""))
    return 0


def _handle_producer(args: argparse.Namespace) -> int:
    settings = load_settings()
    command = args.producer_command
    if command == "start":
        return start_daemon(settings, args)
    if command == "stop":
        return stop_daemon(settings)
    if command == "status":
        return status_daemon(settings)
    # run (foreground, or the daemon's own process)
    pid_file = settings.path(settings.producer_pid_file)
    other = producer_pid(settings)
    if other is not None and other != os.getpid():
        print(f"a producer is already running (pid {other}); stop it with `tootlake producer stop`",
              file=sys.stderr)
        return 1
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    return run_producer(settings, args, pid_file=pid_file)
