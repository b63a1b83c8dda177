"""Batch gold: read silver/posts, rebuild every gold table, report row counts and a short summary.

Each table is recomputed from the whole silver table and written with a Delta overwrite (one atomic
commit per table): running twice yields the same tables, and an edit or delete in silver is reflected
on the next run because nothing is carried over from the previous gold. The cost is a full scan of
silver per run (see `tootlake bench gold` for how it grows).

Entry point: `spark-submit pipelines/jobs/gold.py [--stream]` or `tootlake gold`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tootlake.catalog.vocab import THREAT_LEVELS
from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines.jobs.streaming import AVAILABLE_NOW, parse_trigger
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.settings import FROM_SETTINGS, FromSettings, Settings
from tootlake.silver.posts import POSTS

if TYPE_CHECKING:
    from tootlake.pipelines.quality.guard import Guard

logger = logging.getLogger(__name__)

SILVER_POSTS = POSTS.name


class GoldInputMissing(RuntimeError):
    """silver/posts does not exist yet."""


def read_silver_posts(settings: Settings, spark: SparkSession) -> DataFrame:
    lake = Lake(settings, spark)
    if not lake.exists(SILVER_POSTS):
        raise GoldInputMissing(f"no silver posts table at {lake.location(SILVER_POSTS)}: "
                               "run `tootlake silver` (or make demo) first")
    return lake.read(SILVER_POSTS)


def run_gold(
    settings: Settings,
    spark: SparkSession,
    tables: list[str] | None = None,
    silver_posts: DataFrame | None = None,
    progress: bool = True,
    dq: Guard | FromSettings | None = FROM_SETTINGS,
) -> dict[str, int]:
    """Rebuild the batch gold tables (all, or `tables`) from silver; returns {table_name: row_count}.

    `dq`: a quality.guard.Guard, FROM_SETTINGS (a Guard when DQ_ENABLED, else none) or None (no rules).
    The input rules run on silver in the pass that fills the cache; each table's rules run before its
    overwrite, so a `fail` rule (DataQualityError) leaves that table at its previous version.
    """
    names = tables if tables else list(BATCH_TABLES)
    unknown = sorted(set(names) - set(BATCH_TABLES))
    if unknown:
        raise ValueError(f"unknown gold table(s) {unknown}; known: {sorted(BATCH_TABLES)}")
    lake = Lake(settings, spark)
    posts = silver_posts if silver_posts is not None else read_silver_posts(settings, spark)
    posts = posts.persist()  # every table scans it: read silver once
    counts: dict[str, int] = {}
    if dq is FROM_SETTINGS:
        from tootlake.pipelines.quality.guard import Guard

        dq = Guard(settings, "gold") if settings.dq_enabled else None
    try:
        if dq is not None:
            from tootlake.pipelines.quality.guard import check_gold_input

            check_gold_input(dq, posts)
        for name in names:
            started = time.monotonic()
            target = f"gold.{name}"
            table = BATCH_TABLES[name](posts, settings.active_min)
            if dq is not None:
                from tootlake.pipelines.quality.guard import check_gold_table

                previous = lake.last_commit_rows(target) if lake.exists(target) else None
                table, after_write = check_gold_table(dq, name, table, previous)
            lake.overwrite(target, table)  # one atomic commit: readers see the old or the new table
            if dq is not None:
                after_write()  # records the counts (or drops the cache of a pre-checked table)
            rows = lake.last_commit_rows(target)  # from the commit's metrics: no Spark job
            counts[name] = rows if rows is not None else lake.read(target).count()
            if progress:
                logger.info(f"gold.{name}: {counts[name]} rows ({time.monotonic() - started:.1f}s)")
    finally:
        posts.unpersist()
    return counts


def _gold(settings: Settings, spark: SparkSession, name: str) -> DataFrame:
    lake = Lake(settings, spark)
    if not lake.exists(f"gold.{name}"):
        raise GoldInputMissing(f"no gold table at {lake.location(f'gold.{name}')}: run `tootlake gold` first")
    return lake.read(f"gold.{name}")


LEVELS = tuple(level.lower() for level in THREAT_LEVELS)


def gold_summary(settings: Settings, spark: SparkSession, top: int = 5, hours: int = 6) -> dict[str, Any]:
    """A small summary for the demo: top hashtags, posts per hour (busiest hours), threat share."""
    top_tags = (
        _gold(settings, spark, "hashtags_daily").groupBy("hashtag").agg(F.sum("posts").alias("posts"))
        .orderBy(F.col("posts").desc(), F.col("hashtag").asc()).limit(top).collect()
    )
    hourly = _gold(settings, spark, "posts_hourly")
    hour_stats = hourly.agg(F.count("*").alias("hours"), F.sum("posts").alias("posts")).first()
    busiest = hourly.orderBy(F.col("posts").desc(), F.col("hour_start").asc()).limit(hours).collect()
    threat = _gold(settings, spark, "threat_daily").agg(
        *[F.sum(c).alias(c) for c in ("posts", "none_posts", "low_posts", "medium_posts", "high_posts",
                                      "unscored_posts", "hate_scored_posts", "hate_posts")]
    ).first()
    posts_total = int(threat["posts"] or 0)
    scored_for_hate = int(threat["hate_scored_posts"] or 0)
    return {
        "top_hashtags": [(row["hashtag"], int(row["posts"])) for row in top_tags],
        "hours_with_posts": int(hour_stats["hours"] or 0),
        "posts_per_active_hour": float(hour_stats["posts"] or 0) / max(int(hour_stats["hours"] or 0), 1),
        "busiest_hours": [(row["hour_start"].strftime("%Y-%m-%d %H:00"), int(row["posts"]))
                          for row in busiest],
        "threat_levels": {level: int(threat[f"{level}_posts"] or 0) for level in LEVELS},
        "unscored_posts": int(threat["unscored_posts"] or 0),
        "hate_posts": int(threat["hate_posts"] or 0),
        "hate_share": (int(threat["hate_posts"] or 0) / scored_for_hate) if scored_for_hate else None,
        "posts": posts_total,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for `gold_summary`'s dict."""
    tags = ", ".join(f"#{tag} ({n})" for tag, n in summary["top_hashtags"]) or "(no hashtags)"
    hours = ", ".join(f"{hour} UTC: {n}" for hour, n in summary["busiest_hours"]) or "(no posts)"
    levels = ", ".join(f"{level.upper()} {n}" for level, n in summary["threat_levels"].items())
    share = "n/a" if summary["hate_share"] is None else f"{summary['hate_share']:.1%}"
    return "\n".join([
        f"gold: {summary['posts']} live posts over {summary['hours_with_posts']} hours with posts "
        f"({summary['posts_per_active_hour']:.1f} posts per such hour)",
        f"  top hashtags: {tags}",
        f"  busiest hours: {hours}",
        f"  threat levels: {levels} (unscored {summary['unscored_posts']}); "
        f"hate speech: {summary['hate_posts']} posts = {share}",
    ])

def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="gold", description=__doc__)
    parser.description = (
        "Rebuild the batch gold tables from silver/posts (idempotent Delta overwrite) and print a summary, "
        "or, with --stream, run the 1-minute windowed post counts (watermark + late_events metric)."
    )
    parser.add_argument("--table", action="append", choices=sorted(BATCH_TABLES), metavar="NAME",
                        help=f"rebuild only this table (repeatable; default all): {', '.join(BATCH_TABLES)}")
    parser.add_argument("--no-summary", action="store_true", help="batch: do not print the summary")
    parser.add_argument("--stream", action="store_true",
                        help="run the streaming gold/posts_per_minute + gold/late_events instead")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="with --stream: 'available-now' (default: process what silver holds, then exit) "
                             "or an interval such as '30 seconds' (run until Ctrl-C / SIGTERM)")
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here so `--help` answers without starting the JVM.
    from tootlake.pipelines.jobs.gold_stream import run_gold_stream
    from tootlake.pipelines.quality.guard import DataQualityError
    from tootlake.pipelines.quality.gx import after_job_run
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-gold-stream" if args.stream else "tootlake-gold")
    try:
        if args.stream:
            result = run_gold_stream(settings, spark, trigger=args.trigger)
            print(f"[gold] stream done: {result['posts_per_minute']} windows, "
                  f"{result['late_events']} late events")
            return 0
        counts = run_gold(settings, spark, tables=args.table)
        gold_dir = f"{settings.location(settings.lake_dir)}/gold"
        print(f"[gold] done: {len(counts)} tables, {sum(counts.values())} rows -> {gold_dir}")
        after_job_run(settings, "gold")  # GX suites once per run
        if not args.no_summary and not args.table:
            print(format_summary(gold_summary(settings, spark)))
        return 0
    except GoldInputMissing as exc:
        logger.error(f"[gold] {exc}")
        return 1
    except DataQualityError as exc:
        logger.error(f"[gold] {exc}")
        return 3


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
