"""Batch gold: bring the gold tables up to silver/posts, report row counts and a short summary.

`run_gold` recomputes tables from the whole silver table and writes each with a Delta overwrite (one atomic
commit per table): running twice yields the same tables. `refresh_gold` (what `tootlake gold` runs) does
that once, then only rebuilds the keys silver's change feed touched since (tootlake.gold.incremental);
`--full-refresh` forces the full rebuild.

Entry point: `spark-submit pipelines/jobs/gold.py [--full-refresh | --stream]` or `tootlake gold`.
"""

from __future__ import annotations

import argparse
import json
import logging
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


# --- incremental refresh ----------------------------------------------------------------------------
GOLD_STATE = "gold_incremental"  # checkpoint folder: the silver version gold was last brought up to


def _state_location(settings: Settings) -> str:
    return f"{settings.checkpoint_uri(GOLD_STATE)}/state.json"


def read_gold_state(settings: Settings) -> dict | None:
    """The state the last refresh wrote; None when there is none or it is unreadable (a write cut short):
    the next refresh is then a full rebuild."""
    from tootlake.pipelines import storage

    location = _state_location(settings)
    if not storage.is_file(settings, location):
        return None
    try:
        return json.loads(storage.read_text(settings, location))
    except json.JSONDecodeError:
        return None


def write_gold_state(settings: Settings, state: dict) -> None:
    from tootlake.pipelines import storage

    storage.write_text(settings, _state_location(settings), json.dumps(state))


def refresh_gold(
    settings: Settings,
    spark: SparkSession,
    full_refresh: bool = False,
    progress: bool = True,
    dq: Guard | FromSettings | None = FROM_SETTINGS,
) -> dict[str, Any]:
    """Bring every batch gold table up to silver's current version.

    Incremental (the default once a full build has run): reads silver's change feed since the version gold
    last saw, and rebuilds only the keys it touches (tootlake.gold.incremental: the days of per-day tables,
    the users / hashtags / languages of all-time tables, from the gold_state partial tables). A full
    rebuild (every table from all of silver, plus the partial tables) when `full_refresh`, on the first
    run, when silver/posts was re-created, a gold table is missing, silver is still small
    (GOLD_INCREMENTAL_MIN_ROWS), or the change feed since that version is no longer there (vacuumed).
    Returns {"mode", "silver_version", "reason" or "changes", "seconds"}.
    """
    from tootlake.gold import incremental

    lake = Lake(settings, spark)
    if not lake.exists(SILVER_POSTS):
        raise GoldInputMissing(f"no silver posts table at {lake.location(SILVER_POSTS)}: "
                               "run `tootlake silver` (or make demo) first")
    started = time.monotonic()
    silver = lake.table(SILVER_POSTS)  # delta-rs: version and id without a Spark job
    version, table_id = silver.version(), silver.metadata().id
    state = read_gold_state(settings)
    needed = [f"gold.{name}" for name in BATCH_TABLES] + [name for name, _, _ in incremental.PARTIALS]
    reason = None
    if full_refresh:
        reason = "--full-refresh"
    elif state is None:
        reason = "first build (no incremental state yet)"
    elif state.get("silver_table_id") != table_id:
        reason = "silver/posts was re-created"
    elif not all(lake.exists(name) for name in needed):
        reason = "a gold table is missing"
    elif state["silver_version"] == version:  # gold is current: nothing to rebuild, whatever silver's size
        return {"mode": "incremental", "silver_version": version, "changes": 0,
                "seconds": round(time.monotonic() - started, 2)}
    elif (rows := _row_count(silver)) < settings.gold_incremental_min_rows:
        reason = f"silver holds {rows} rows, under GOLD_INCREMENTAL_MIN_ROWS: a full rebuild is cheaper"
    posts = spark.read.format("delta").option("versionAsOf", version).load(lake.location(SILVER_POSTS))
    affected = None
    if reason is None:
        try:
            changes = (spark.read.format("delta").option("readChangeFeed", "true")
                       .option("startingVersion", state["silver_version"] + 1)
                       .option("endingVersion", version).load(lake.location(SILVER_POSTS)))
            affected = incremental.affected_keys(changes)
        except Exception as exc:  # noqa: BLE001 - AnalysisException et al.: the feed is gone, rebuild
            reason = f"silver's change feed since version {state['silver_version'] + 1} is not readable " \
                     f"({type(exc).__name__})"
    if dq is FROM_SETTINGS:
        from tootlake.pipelines.quality.guard import Guard

        dq = Guard(settings, "gold") if settings.dq_enabled else None
    if reason is not None:
        if progress:
            logger.info(f"[gold] full rebuild: {reason}")
        run_gold(settings, spark, silver_posts=posts, progress=progress, dq=dq)
        for name, builder, _key in incremental.PARTIALS:
            lake.overwrite(name, builder(posts))
        result = {"mode": "full", "silver_version": version, "reason": reason}
    else:
        _apply_changes(lake, posts, affected, settings, dq, progress)
        result = {"mode": "incremental", "silver_version": version,
                  "changes": {"days": len(affected.days), "users": len(affected.users),
                              "hashtags": len(affected.hashtags), "languages": len(affected.languages)}}
    write_gold_state(settings, {"silver_version": version, "silver_table_id": table_id})
    result["seconds"] = round(time.monotonic() - started, 2)
    if progress:
        logger.info(f"[gold] {result['mode']} refresh to silver version {version} in {result['seconds']} s"
                    + (f" ({result['changes']})" if result["mode"] == "incremental" else ""))
    return result


def _row_count(table) -> int:
    """Rows of a Delta table from its log (per-file statistics): no data file is read."""
    actions = table.get_add_actions(flatten=True)
    return int(sum(n or 0 for n in actions.column("num_records").to_pylist()))


def _apply_changes(lake: Lake, posts: DataFrame, affected, settings: Settings, dq, progress: bool) -> None:
    """Rebuild the affected keys of every batch gold table (see tootlake.gold.incremental)."""
    from tootlake.gold import incremental

    day_posts = incremental.on_days(posts, affected.days).persist()  # every per-day table reads it
    try:
        if dq is not None:
            from tootlake.pipelines.quality.guard import check_gold_input

            check_gold_input(dq, day_posts)
        for name, builder in incremental.PER_DAY.items():
            _write_checked(lake, dq, name, builder(day_posts),
                           lambda rows, target: _replace_days(lake, target, rows, affected.days))
        for name, builder, _key in incremental.PARTIALS:
            _replace_days(lake, name, builder(day_posts), affected.days)
    finally:
        day_posts.unpersist()
    for name, (partial, key, build) in incremental.ALL_TIME.items():
        keys = incremental.keys_of(affected, key)
        if not keys:
            continue
        daily = lake.read(partial).where(_key_in(key, keys))
        _write_checked(lake, dq, name, build(daily, settings.active_min),
                       lambda rows, target, key=key, keys=keys: _replace_keys(lake, target, key, keys, rows),
                       observable=False)
        if progress:
            logger.info(f"gold.{name}: {len(keys)} {key} key(s) rebuilt")


def _write_checked(lake: Lake, dq, name: str, rows: DataFrame, write, observable: bool = True) -> None:
    """`write(rows, table)` with the table's rules on the rows written (the changed keys only: no size
    rule). `observable`: the write runs `rows`' own plan, so the rules ride along (a MERGE rewrites its
    source's plan: its rows are checked in a pass of their own first)."""
    if dq is None:
        write(rows, f"gold.{name}")
        return
    from tootlake.expectations.tables import gold_rules
    from tootlake.pipelines.quality.guard import check_gold_table

    if observable:
        rows, after_write = check_gold_table(dq, name, rows, None)
        write(rows, f"gold.{name}")
        after_write()
        return
    rows = rows.persist()
    try:
        dq.check(rows, gold_rules(name), previous_rows=None)
        write(rows, f"gold.{name}")
    finally:
        rows.unpersist()


def _key_in(key: str, keys: list):
    present = [k for k in keys if k is not None]
    condition = F.col(key).isin(present)
    return condition | F.col(key).isNull() if len(present) < len(keys) else condition


def _replace_days(lake: Lake, name: str, rows: DataFrame, days: list) -> None:
    """Replace the rows of `days` (post_date) with `rows`, in one commit."""
    if not days:
        return
    listed = ", ".join(f"DATE'{day.isoformat()}'" for day in days)
    (rows.write.format("delta").mode("overwrite").option("replaceWhere", f"post_date IN ({listed})")
     .save(lake.location(name)))


def _replace_keys(lake: Lake, name: str, key: str, keys: list, rows: DataFrame) -> None:
    """Make the rows of `keys` those of `rows` (a key without a row in `rows` is deleted), in one MERGE."""
    columns = rows.columns
    wanted = lake.spark.createDataFrame([(k,) for k in keys], f"{key} string")
    source = wanted.join(rows, on=wanted[key].eqNullSafe(rows[key]), how="left").select(
        wanted[key].alias(key), *[rows[c] for c in columns if c != key])
    values = {c: f"s.`{c}`" for c in columns}
    (lake.merge(name, source, f"t.`{key}` <=> s.`{key}`")
     .whenMatchedDelete(condition="s.posts IS NULL")
     .whenMatchedUpdate(set=values)
     .whenNotMatchedInsert(condition="s.posts IS NOT NULL", values=values)
     .execute())


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
        "Bring the batch gold tables up to silver/posts (incremental: only the keys silver's changes touched "
        "since the last run; a full rebuild the first time, with --full-refresh, or while silver is small) "
        "and print a summary, or, with --stream, run the 1-minute windowed post counts (watermark + "
        "late_events metric)."
    )
    parser.add_argument("--table", action="append", choices=sorted(BATCH_TABLES), metavar="NAME",
                        help=f"rebuild only this table (repeatable; default all): {', '.join(BATCH_TABLES)}")
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild every table from all of silver (default: only the keys silver's "
                             "changes since the last run touch; the first run is always a full build)")
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
        gold_dir = f"{settings.location(settings.lake_dir)}/gold"
        if args.table:  # the named tables, rebuilt from all of silver
            counts = run_gold(settings, spark, tables=args.table)
            print(f"[gold] done: {len(counts)} tables, {sum(counts.values())} rows -> {gold_dir}")
        else:
            result = refresh_gold(settings, spark, full_refresh=args.full_refresh)
            print(f"[gold] done: {result['mode']} refresh to silver version {result['silver_version']} "
                  f"in {result['seconds']} s -> {gold_dir}")
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
    from tootlake.pipelines.storage import exit_process

    exit_process(main())
