"""`tootlake services up|down|status`: the embedded Kafka broker, PostgreSQL cluster and (lake on s3a://)
object store."""

from __future__ import annotations

import argparse
import sys
import time

from tootlake.pipelines.ops import services
from tootlake.pipelines.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "services",
        help="start, stop or show the embedded Kafka broker and PostgreSQL cluster",
        description="The embedded Kafka broker (KRaft) and private PostgreSQL 15 cluster, on 127.0.0.1. "
        "With the lake or checkpoints on s3a:// and no S3_ENDPOINT, also an S3-compatible store (s3proxy). "
        "When KAFKA_BOOTSTRAP_SERVERS / POSTGRES_DSN / S3_ENDPOINT is set, that service is external: "
        "`up` only checks it.",
    )
    sub = parser.add_subparsers(dest="services_command", metavar="ACTION", required=True)
    for name, help_text in (("up", "start the services (idempotent) and wait until they answer"),
                            ("down", "stop the embedded services"),
                            ("status", "show each service: up/down, address, pid (exit 3 if one is down)")):
        action = sub.add_parser(name, help=help_text, description=help_text)
        action.add_argument("--only", choices=["kafka", "postgres", "s3"], help="act on one service only")
        action.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    # The services module's progress lines are log records (stderr, see pipelines/logs.py).
    settings = load_settings()
    kafka = args.only in (None, "kafka")
    postgres = args.only in (None, "postgres")
    s3 = args.only in (None, "s3")
    try:
        if args.services_command == "up":
            t0 = time.monotonic()
            for status in services.ensure_services(settings, kafka=kafka, postgres=postgres, s3=s3):
                print(status.line())
            print(f"services up ({time.monotonic() - t0:.1f} s)")
            return 0
        if args.services_command == "down":
            stopped = services.stop_services(settings, kafka=kafka, postgres=postgres, s3=s3)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            return 0
        statuses = [s for s in services.services_status(settings)
                    if (s.name == "kafka" and kafka) or (s.name == "postgres" and postgres)
                    or (s.name == "s3" and s3)]
        for status in statuses:
            print(status.line())
        return 0 if all(s.running for s in statuses) else 3
    except services.ServiceError as exc:
        print(f"tootlake services: {exc}", file=sys.stderr)
        return 1
