"""`tootlake bench scale [--sizes 10000,100000,1000000]`: does the cost of one batch grow with the lake?

For each size N, on its own lake, checkpoints, Kafka topic and PostgreSQL database:
1. **stage** N posts straight into silver/posts (`staged_posts`: the bundled real statuses repeated, with
   their languages, hashtags, texts and lengths; new Mastodon-style (time-ordered) ids; times spread over
   --days days; authors multiplied as the lake grows; ~5 % edited, ~2 % deleted). Their threat and
   sentiment scores are synthetic (a hash of the id): staging a million posts through the models would
   take hours, and the measured batch below is scored for real. Then the first sync of that lake to
   PostgreSQL (bounded batches, SYNC_MAX_BATCH_MB) and a full gold build, timed but not the point;
2. **one batch** of --batch records through Kafka (the real producer, then bronze): 90 % new posts (real
   statuses, fresh ids, created now), the rest edits and deletes of random staged posts, in equal shares;
3. **measure** the real silver job on that batch (parse, rules, scoring plan, threat + sentiment models,
   MERGE), the gold refresh after it (incremental; `--full-gold` times a full rebuild instead), and one
   sync run of its changes into PostgreSQL.

An untimed warm-up round on a small lake comes first (class loading and code generation would otherwise
land on the first size). Bronze holds only the measured batch: silver reads bronze from its checkpoint
onwards, so bronze's size does not enter the silver batch's cost. The last line is one JSON object with
the times per size and the ratios largest / smallest size (goal <= 1.5 each).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import SILVER_POSTS
from tootlake.silver.posts import CONTENT_COLUMNS, SCORE_COLUMNS
from tootlake.silver.schema import POSTS_SCHEMA

STAGE_INSTANCE = "mastodon.social"  # the bundled statuses' instance: post_id = "<instance>/<status id>"
EDITED_EVERY = 20  # 1 staged post in 20 carries an edit
DELETED_EVERY = 50  # 1 staged post in 50 is a tombstone
AUTHOR_COPIES = 50  # each real author becomes up to this many authors as the lake grows
ROWS_PER_STAGED_FILE = 200_000
GOAL_RATIO = 1.5


def snowflake_id(created_ms, sequence):
    """A Mastodon status id: milliseconds since the epoch << 16 | a 16-bit sequence (time-ordered)."""
    from pyspark.sql import functions as F

    return (F.shiftleft(created_ms.cast("long"), 16) + (sequence % 65536)).cast("string")


def staged_posts(spark, base_rows: list[dict[str, Any]], n: int, end: datetime, days: int):
    """N silver/posts rows from `base_rows` (silver rows of real statuses, POSTS_SCHEMA field names): row
    i copies base row i mod len(base_rows); created_at rises evenly over the `days` days before `end`;
    unique time-ordered ids; copy k of an author is another author (`acct~k`, k < AUTHOR_COPIES); every
    EDITED_EVERY-th post edited 10 minutes after it was created, every DELETED_EVERY-th a tombstone
    (content and scores null)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    width = len(base_rows)
    indexed = spark.createDataFrame(
        [(k, *(row[f.name] for f in POSTS_SCHEMA.fields)) for k, row in enumerate(base_rows)],
        StructType([StructField("base_index", LongType()), *POSTS_SCHEMA.fields]))
    span_ms = days * 86_400_000
    end_ms = int(end.timestamp() * 1000)
    i = F.col("i")
    created_ms = F.lit(end_ms - span_ms) + (i * F.lit(span_ms // max(n, 1)))
    status_id = snowflake_id(created_ms, i)
    copy = (i / F.lit(width)).cast("long") % AUTHOR_COPIES
    acct = F.when(copy == 0, F.col("account_acct")).otherwise(
        F.concat(F.col("account_acct"), F.lit("~"), copy.cast("string")))
    created_at = F.timestamp_millis(created_ms)
    edited = (i % EDITED_EVERY) == 1
    deleted = (i % DELETED_EVERY) == 3
    cleared = {c for c in (*CONTENT_COLUMNS, *SCORE_COLUMNS) if not c.endswith("model_version")}
    replaced = {
        "post_id": F.concat(F.lit(f"{STAGE_INSTANCE}/"), status_id),
        "instance": F.lit(STAGE_INSTANCE),
        "status_id": status_id,
        "url": F.concat(F.lit(f"https://{STAGE_INSTANCE}/@"), acct, F.lit("/"), status_id),
        "account_id": F.concat(F.col("account_id"), F.lit("-"), copy.cast("string")),
        "account_acct": acct,
        "created_at": created_at,
        "edited_at": F.when(edited, created_at + F.expr("INTERVAL 10 MINUTES")),
        "event_kind": F.when(deleted, "delete").when(edited, "status.update").otherwise("status"),
        "is_deleted": deleted,
        "deleted_at": F.when(deleted, created_at + F.expr("INTERVAL 1 HOUR")),
        "bronze_partition": F.lit(0),
        "bronze_offset": i,
        "ingested_at": created_at,
        "updated_at": created_at,
    }

    def column(name: str):
        value = replaced.get(name, F.col(name))
        if name in cleared:
            value = F.when(~deleted, value)
        return value.cast(POSTS_SCHEMA[name].dataType).alias(name)

    rows = F.broadcast(indexed)
    ids = spark.range(n).withColumnRenamed("id", "i").withColumn("base_index", F.col("i") % width)
    return ids.join(rows, "base_index").select(*[column(f.name) for f in POSTS_SCHEMA.fields])


def batch_events(templates: list[tuple[str, dict]], staged: list[dict], size: int, changes: float,
                 now: datetime, rng: random.Random) -> tuple[list, dict[str, int]]:
    """`size` SourceEvents: new posts (templates with fresh ids), then edits and deletes of `staged` rows
    (dicts with status_id and created_at, live posts), in equal shares of `changes` * size."""
    from tootlake.pipelines.bench.freshness import fresh_status
    from tootlake.pipelines.source.mastodon import delete_event, status_event

    n_changes = min(int(size * changes), len(staged))
    n_edits = n_changes // 2
    targets = rng.sample(staged, n_changes)
    events = []
    base_ms = int(now.timestamp() * 1000)
    for k in range(size - n_changes):
        instance, template = templates[k % len(templates)]
        status_id = str(((base_ms + k) << 16) + k % 65536)
        events.append(status_event("status", fresh_status(template, status_id, now), STAGE_INSTANCE, now,
                                   is_json=True))
    for k, target in enumerate(targets[:n_edits]):
        _, template = templates[k % len(templates)]
        status = fresh_status(template, target["status_id"], target["created_at"])
        status["edited_at"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        status["content"] = f"{status.get('content') or ''}<p>(edited)</p>"
        events.append(status_event("status.update", status, STAGE_INSTANCE, now, is_json=True))
    for target in targets[n_edits:]:
        events.append(delete_event(target["status_id"], STAGE_INSTANCE, now))
    return events, {"new": size - n_changes, "edits": n_edits, "deletes": n_changes - n_edits}


def quiet(_line: str) -> None:
    """Stage logs the benchmark does not print."""


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Largest size's time / smallest size's, per measured step."""
    if len(results) < 2:
        return {}
    small, large = min(results, key=lambda r: r["size"]), max(results, key=lambda r: r["size"])
    return {step: round(large[step] / small[step], 2) if small[step] else None
            for step in ("silver_batch_s", "gold_refresh_s", "sync_batch_s")}


class ScaleBench:
    def __init__(self, base, scratch: Path, batch: int, changes: float, days: int, log=print,
                 full_gold: bool = False) -> None:
        from tootlake.pipelines.bench.freshness import TEMPLATE_FILE, load_templates
        from tootlake.pipelines.bench.gold import load_statuses, silver_rows

        self.base, self.scratch, self.batch, self.changes, self.days = base, scratch, batch, changes, days
        self.log, self.full_gold = log, full_gold
        self.run_id = time.strftime("%Y%m%d%H%M%S")
        data = base.path(base.shared_data_dir)
        self.statuses = load_statuses(data)
        self.base_rows = silver_rows(self.statuses)
        self.templates = load_templates(base, data / TEMPLATE_FILE)
        self.rng = random.Random(20261203)
        self.spark = None

    def settings_for(self, label: str):
        from tootlake.pipelines.ops.drill import drill_settings

        return drill_settings(self.base, self.scratch / label, f"scale{self.run_id}_{label}")

    def measure(self, n: int, label: str) -> dict[str, Any]:
        from tootlake.pipelines.databases.dbinit import init_postgres
        from tootlake.pipelines.jobs.bronze import run_bronze
        from tootlake.pipelines.jobs.gold import refresh_gold
        from tootlake.pipelines.jobs.silver import Scoring, ensure_tables, run_silver
        from tootlake.pipelines.jobs.sync import run_sync
        from tootlake.pipelines.lake import Lake
        from tootlake.pipelines.ops import services
        from tootlake.pipelines.source.producer import produce_events
        from tootlake.pipelines.spark import build_spark

        # the incremental refresh at every size (by default `tootlake gold` rebuilds small lakes in full)
        settings = self.settings_for(label).model_copy(update={"gold_incremental_min_rows": 0})
        services.ensure_services(settings)  # the run's database
        init_postgres(settings.postgres_conninfo(), log=quiet)
        if self.spark is None:
            self.spark = build_spark(settings, "tootlake-bench-scale")
        spark = self.spark
        lake = Lake(settings, spark)
        out: dict[str, Any] = {"size": n}

        started = time.monotonic()
        ensure_tables(spark, settings)
        now = datetime.now(UTC).replace(microsecond=0)
        files = max(1, -(-n // ROWS_PER_STAGED_FILE))
        staged = staged_posts(spark, self.base_rows, n, now - timedelta(hours=1), self.days)
        lake.append(SILVER_POSTS, staged.repartitionByRange(files, "post_id").sortWithinPartitions("post_id"))
        out["stage_silver_s"] = round(time.monotonic() - started, 1)
        self.log(f"[bench scale] {label}: staged {n} silver posts in {out['stage_silver_s']} s")

        started = time.monotonic()
        first = run_sync(settings, spark, "postgres", copy_gold=False, log=quiet, dq=None)
        out["first_sync_s"] = round(time.monotonic() - started, 1)
        out["first_sync_batches"] = first["batches"]
        out["first_sync_rows"] = first["postgres"]["staged"]
        started = time.monotonic()
        refresh_gold(settings, spark, progress=False)  # the first build is a full one
        out["gold_full_s"] = round(time.monotonic() - started, 1)
        self.log(f"[bench scale] {label}: first sync {out['first_sync_rows']} rows in {first['batches']} "
                 f"batches, {out['first_sync_s']} s; full gold build {out['gold_full_s']} s")

        # edit / delete targets: every k-th live post, ~5,000 spread over the whole history
        every = max(1, n // 5000)
        live = (lake.read(SILVER_POSTS).where(f"NOT is_deleted AND bronze_offset % {every} = {7 % every}")
                .select("status_id", "created_at").collect())
        targets = [{"status_id": row["status_id"], "created_at": row["created_at"].replace(tzinfo=UTC)}
                   for row in live]
        events, mix = batch_events(self.templates, targets, self.batch, self.changes,
                                   datetime.now(UTC), self.rng)
        produced = produce_events(settings, events)
        run_bronze(spark, settings, log=quiet)
        out["batch"] = {**mix, "delivered": produced.delivered}

        started = time.monotonic()
        silver = run_silver(settings, spark, scorer=Scoring.MODELS)
        out["silver_batch_s"] = round(time.monotonic() - started, 2)
        out["silver"] = {k: silver[k] for k in ("batches", "bronze_rows", "inserted", "updated", "scored")}
        out["silver_steps"] = (silver["last_batch"] or {}).get("steps")
        started = time.monotonic()
        gold = refresh_gold(settings, spark, full_refresh=self.full_gold, progress=False)
        out["gold_refresh_s"] = round(time.monotonic() - started, 2)
        out["gold"] = {k: v for k, v in gold.items() if k != "seconds"}
        started = time.monotonic()
        sync = run_sync(settings, spark, "postgres", copy_gold=False, log=quiet)
        out["sync_batch_s"] = round(time.monotonic() - started, 2)
        out["sync"] = {"batches": sync["batches"], "staged": sync["postgres"]["staged"],
                       "pg_rows": {k: sync["postgres"][k] for k in ("rawposts", "processedposts")}}
        out["silver_rows"] = lake.read(SILVER_POSTS).count()
        self.log(f"[bench scale] {label}: batch {mix}: silver {out['silver_batch_s']} s "
                 f"({out['silver_steps']}), gold refresh {out['gold_refresh_s']} s, "
                 f"sync {out['sync_batch_s']} s ({out['sync']['staged']} posts staged)")
        return out

    def cleanup(self, label: str) -> None:
        from tootlake.pipelines.bench.freshness import cleanup

        cleanup(self.settings_for(label), self.scratch / label, log=self.log)


def format_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'silver posts':>13} {'silver batch':>13} {'gold refresh':>13} {'sync batch':>11} "
             f"{'stage':>8} {'first sync':>11} {'gold full':>10}"]
    for r in results:
        lines.append(f"{r['size']:>13,} {r['silver_batch_s']:>12.1f}s {r['gold_refresh_s']:>12.1f}s "
                     f"{r['sync_batch_s']:>10.1f}s {r['stage_silver_s']:>7.0f}s {r['first_sync_s']:>10.0f}s "
                     f"{r['gold_full_s']:>9.1f}s")
    return lines


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="tootlake bench scale")
    parser.description = __doc__.splitlines()[0].split(": ", 1)[1].capitalize()
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated silver sizes in posts (default 10000,100000,1000000)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="records in the measured batch (default 1000)")
    parser.add_argument("--changes", type=float, default=0.1,
                        help="share of the batch that edits or deletes staged posts (default 0.1)")
    parser.add_argument("--days", type=int, default=365, help="days the staged posts span (default 365)")
    parser.add_argument("--warmup", type=int, default=2000,
                        help="posts of the untimed warm-up round (0: none; default 2000)")
    parser.add_argument("--full-gold", action="store_true",
                        help="time a full gold rebuild after the batch instead of the incremental refresh")
    parser.add_argument("--keep", action="store_true", help="keep the lakes, databases and topics")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings

    try:
        sizes = sorted({int(part) for part in args.sizes.split(",") if part.strip()})
    except ValueError:
        print(f"[bench scale] --sizes must be integers like 10000,100000, got {args.sizes!r}")
        return 2
    if not sizes or sizes[0] < 100 or args.batch < 10 or not 0 <= args.changes <= 1:
        print("[bench scale] --sizes >= 100 each, --batch >= 10, --changes in [0, 1]")
        return 2
    base = load_settings()
    scratch = base.path(Path("var/bench/scale"))
    bench = ScaleBench(base, scratch / time.strftime("%Y%m%d-%H%M%S"), args.batch, args.changes, args.days,
                       log=lambda line: print(line, flush=True), full_gold=args.full_gold)
    results = []
    rounds = ([("warm-up", args.warmup)] if args.warmup else []) + [(f"n{n}", n) for n in sizes]
    try:
        for label, n in rounds:
            figures = bench.measure(n, label)
            if label != "warm-up":
                results.append(figures)
            if not args.keep:
                bench.cleanup(label)
    finally:
        if bench.spark is not None:
            bench.spark.stop()
        if not args.keep:
            shutil.rmtree(bench.scratch, ignore_errors=True)
    print("\nbench scale: one batch of "
          f"{args.batch} records ({args.changes:.0%} edits/deletes of staged posts) on silver of each size")
    for line in format_table(results):
        print("  " + line)
    found = ratios(results)
    if found:
        print("  ratio largest/smallest: " + ", ".join(f"{k} {v}" for k, v in found.items())
              + f" (goal <= {GOAL_RATIO})")
    print(json.dumps({"sizes": sizes, "batch": args.batch, "changes": args.changes, "results": results,
                      "ratios": found}))
    return 0
