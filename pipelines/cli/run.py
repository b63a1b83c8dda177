"""`tootlake run [--once]`: the whole pipeline, supervised (logic in pipelines/ops/supervisor.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("tootlake.run")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run the whole pipeline continuously, supervised (or --once for schedules)",
        description="Start the services (unless external), then producer (replay by default), bronze, "
                    "silver, gold stream and sync as one process each, one log per stage in <LOG_DIR>/run/. "
                    "A stage that crashes restarts from its checkpoint after a back-off. Ctrl-C / SIGTERM "
                    "stops every stage cleanly (SIGKILL after RUN_STOP_TIMEOUT_S). `tootlake status` shows "
                    "how it is going. --once: bronze, silver, gold, gold stream, sync with available-now "
                    "triggers, one after another; exit 1 when a stage failed (for cron / systemd timers).",
    )
    parser.add_argument("--once", action="store_true",
                        help="process what is there, stage after stage, then exit (no producer)")
    parser.add_argument("--no-producer", action="store_true",
                        help="continuous mode without the producer (Kafka is fed by something else)")
    parser.add_argument("--no-services", action="store_true",
                        help="do not start the embedded Kafka / PostgreSQL (running already, or external)")
    parser.add_argument("--source", choices=["live", "replay"],
                        help="producer source (default: PRODUCER_SOURCE, i.e. replay)")
    parser.add_argument("--file", dest="files", action="extend", nargs="+", type=Path, metavar="F",
                        help="producer replay file(s) (default: REPLAY_FILES, else ../shared/data)")
    parser.add_argument("--rate", type=float, metavar="R", help="producer: replay at most R posts/s")
    parser.add_argument("--max", dest="max_events", type=int, metavar="N", help="producer: stop after N")
    parser.set_defaults(func=_run)

    drill = subparsers.add_parser(
        "drill", help="reliability drill: SIGKILL each stage, stop Kafka and PostgreSQL, check exactly-once",
        description="Runs `tootlake run` with a replay producer on the configured services, but with its "
                    "own topic, database, lake and checkpoints (under var/drill/NAME). Kills each stage once "
                    "with SIGKILL, stops the broker and PostgreSQL for --outage-s each, then checks that "
                    "every produced post is in PostgreSQL exactly once. Prints counts, recovery times and "
                    "`tootlake status` screens. Takes several minutes; exit 0 when it passed.",
    )
    drill.add_argument("--rate", type=float, default=5.0, help="producer posts/s (default 5)")
    drill.add_argument("--outage-s", type=float, default=30.0, help="Kafka and PostgreSQL down time (30)")
    drill.add_argument("--json", action="store_true", help="also print the report as JSON")
    drill.set_defaults(func=_drill)


def producer_args(args: argparse.Namespace) -> tuple[str, ...]:
    out: list[str] = []
    if args.source:
        out += ["--source", args.source]
    if args.files:
        out += ["--file", *(str(Path(f).resolve()) for f in args.files)]
    if args.rate is not None:
        out += ["--rate", str(args.rate)]
    if args.max_events is not None:
        out += ["--max", str(args.max_events)]
    return tuple(out)


def _run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.ops.supervisor import (
        Supervisor,
        continuous_stages,
        read_state,
        run_once,
        stage_log_dir,
    )
    from tootlake.pipelines.settings import load_settings

    settings = load_settings()
    current = read_state(settings)
    if current and current["alive"]:
        log.error(f"[run] `tootlake run` is already running here (pid {current['pid']}); stop it first "
                  "(SIGTERM / Ctrl-C), or see `tootlake status`")
        return 1
    if not args.no_services:
        try:
            for status in services.ensure_services(settings):
                log.info(f"[run] {status.line()}")
        except services.ServiceError as exc:
            log.error(f"[run] {exc}")
            return 1
    _init_postgres(settings)
    if args.once:
        return run_once(settings)
    stages = continuous_stages(settings, producer=not args.no_producer, producer_args=producer_args(args))
    log.info(f"[run] {len(stages)} stages, logs in {stage_log_dir(settings)}; Ctrl-C stops them "
             "(`tootlake status` in another shell shows progress)")
    return Supervisor(settings, stages).run()


def _drill(args: argparse.Namespace) -> int:
    import time

    from tootlake.pipelines.ops.drill import Drill, drill_settings, report_json
    from tootlake.pipelines.settings import load_settings

    base = load_settings()
    name = time.strftime("%Y%m%d%H%M%S")
    settings = drill_settings(base, base.path(Path("var/drill")) / name, name)
    report = Drill(settings, log=lambda line: print(line, flush=True), rate=args.rate,
                   outage_s=args.outage_s).run()
    if args.json:
        print(report_json(report))
    return 0 if report.passed else 1


def _init_postgres(settings) -> None:
    """Create the sync tables when missing; a database that is down is left to the sync stage (it retries)."""
    import psycopg2

    from tootlake.pipelines.databases.dbinit import init_postgres

    try:
        init_postgres(settings.postgres_conninfo(), log=lambda _line: None)
    except psycopg2.Error as exc:
        log.warning(f"[run] PostgreSQL not ready ({str(exc).strip().splitlines()[0]}); sync will retry")
