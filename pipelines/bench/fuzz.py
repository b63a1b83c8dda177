"""`tootlake bench fuzz --records N`: the hostile-input campaign through the real broker, bronze, silver
and sync, on its own topic, lake, checkpoints and database.

Records (pipelines/bench/hostile.py: valid posts with odd text, edits, replays, deletes, and records that must
be quarantined) are written straight into the topic with a plain confluent-kafka producer (no project
code on the way in), then `tootlake run --once` processes them stage after stage, as cron would. The
check is row for row: every valid post in PostgreSQL once with the text it was sent with, every invalid
record in silver/posts_quarantine with a rule, no stage failing. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import SILVER_POSTS, SILVER_POSTS_QUARANTINE
from tootlake.pipelines.bench.hostile import HostileRecord, Verdict, hostile_records, judge, summary
from tootlake.pipelines.settings import Settings

TEMPLATE_FILE = Path("mastodon-public-timeline-2023") / "statuses.dev.jsonl"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="tootlake bench fuzz")
    parser.description = ("Hostile-input campaign: N valid and malformed records straight into a fresh "
                          "topic, then `tootlake run --once`; checks every valid post arrives once and "
                          "verbatim and every invalid one is quarantined. Last line: one JSON object.")
    parser.add_argument("--records", type=int, default=2_000, help="records to send (default 2000)")
    parser.add_argument("--seed", type=int, default=15, help="generator seed (default 15)")
    parser.add_argument("--invalid-share", type=float, default=0.4,
                        help="share of records that must be quarantined (default 0.4)")
    parser.add_argument("--keep", action="store_true", help="keep the campaign's lake and database")
    return parser


def load_templates(settings: Settings, limit: int = 500) -> list[dict[str, Any]]:
    path = settings.path(settings.shared_data_dir) / TEMPLATE_FILE
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(limit), handle, strict=False)]


def create_topic(settings: Settings, partitions: int = 3) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    futures = admin.create_topics([NewTopic(settings.kafka_topic, partitions, 1)])
    for future in futures.values():
        future.result(timeout=30)


def send_raw(settings: Settings, records: list[HostileRecord]) -> dict[int, tuple[int, int]]:
    """Write the records' bytes as they are; returns record order -> (partition, offset)."""
    from confluent_kafka import Producer

    positions: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True,
                         "linger.ms": 20, "message.max.bytes": 2_000_000})

    def delivered(order: int) -> Callable[[Any, Any], None]:
        def callback(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                positions[order] = (message.partition(), message.offset())
        return callback

    for record in records:
        while True:
            try:
                producer.produce(settings.kafka_topic, key=record.key, value=record.value,
                                 on_delivery=delivered(record.order))
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
    producer.flush(120)
    if errors or len(positions) != len(records):
        raise RuntimeError(f"the broker did not take every record: {len(positions)} of {len(records)} "
                           f"delivered, errors e.g. {errors[:3]}")
    return positions


def collect(settings: Settings) -> tuple[list[tuple], list[tuple], list[str]]:
    """RAWPOSTS rows, quarantine (partition, offset, rules) and silver post_ids, read without Spark."""
    import psycopg2

    from tootlake.pipelines.lake import Lake

    with contextlib.closing(psycopg2.connect(settings.postgres_conninfo(), connect_timeout=10)) as conn:
        cur = conn.cursor()
        cur.execute("select post_id, instance, status_id, post_content from rawposts")
        arrived = cur.fetchall()
    lake = Lake(settings)
    quarantined = []
    if lake.exists(SILVER_POSTS_QUARANTINE):
        table = lake.arrow(SILVER_POSTS_QUARANTINE, columns=["bronze_partition", "bronze_offset", "rules"])
        quarantined = [(r["bronze_partition"], r["bronze_offset"], r["rules"]) for r in table.to_pylist()]
    silver_ids = lake.arrow(SILVER_POSTS, columns=["post_id"]).column("post_id").to_pylist()
    return arrived, quarantined, silver_ids


def campaign(settings: Settings, records: list[HostileRecord],
             run_pipeline: Callable[[Settings], int], log: Callable[[str], None] = print
             ) -> tuple[Verdict, dict[str, Any]]:
    """Send, run, check. `run_pipeline(settings)` processes the topic and returns how many stages
    failed (a failed stage would crash-loop under `tootlake run`)."""
    from tootlake.pipelines.databases.dbinit import init_postgres

    create_topic(settings)
    init_postgres(settings.postgres_conninfo(), log=lambda _line: None)
    started = time.monotonic()
    positions = send_raw(settings, records)
    log(f"[fuzz] {len(records)} records in topic {settings.kafka_topic} "
        f"({time.monotonic() - started:.1f} s); running the pipeline")
    run_started = time.monotonic()
    restarts = run_pipeline(settings)
    seconds = time.monotonic() - run_started
    verdict = judge(records, positions, *collect(settings))
    return verdict, summary(verdict, restarts, seconds)


def run_once_pipeline(settings: Settings) -> int:
    """`tootlake run --once` (bronze, silver, gold, gold stream, sync as their own processes)."""
    from tootlake.pipelines.ops.supervisor import child_env, run_once

    failed: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        if "FAILED" in line:
            failed.append(line)

    run_once(settings, log=log, env=child_env(settings))
    return len(failed)


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.ops.drill import drill_settings
    from tootlake.pipelines.settings import load_settings

    base = load_settings()
    name = "fuzz" + time.strftime("%Y%m%d%H%M%S")
    scratch = base.path(Path("var/fuzz")) / name
    settings = drill_settings(base, scratch, name)
    for status in services.ensure_services(settings):
        print(f"[fuzz] {status.line()}", flush=True)
    records = hostile_records(args.records, load_templates(settings), args.seed, datetime.now(UTC),
                              args.invalid_share)
    verdict, figures = campaign(settings, records, run_once_pipeline)
    for name_, items in (("lost", verdict.lost), ("duplicated", verdict.duplicated),
                         ("mismatched", verdict.mismatched), ("unexpected", verdict.unexpected),
                         ("misjudged", verdict.misjudged), ("unquarantined", verdict.unquarantined)):
        if items:
            print(f"[fuzz] {name_}: {len(items)}, e.g. {items[:5]}", flush=True)
    print(f"[fuzz] {'PASSED' if verdict.ok() and not figures['stage_restarts'] else 'FAILED'}: "
          f"{figures['expected_posts'] - figures['lost']} of {figures['expected_posts']} expected posts "
          f"arrived ({figures['arrived']} rows with the deeply nested posts within parser limits), "
          f"{figures['quarantined']} records quarantined; lake in {scratch}", flush=True)
    if not args.keep:
        import shutil

        import psycopg2

        shutil.rmtree(scratch, ignore_errors=True)
        admin = settings.model_copy(update={"postgres_db": "postgres"})
        with contextlib.suppress(psycopg2.Error), contextlib.closing(
                psycopg2.connect(admin.postgres_conninfo())) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{settings.postgres_db}" WITH (FORCE)')
    print(json.dumps(figures), flush=True)
    return 0 if verdict.ok() and not figures["stage_restarts"] else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
