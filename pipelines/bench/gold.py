"""`tootlake bench gold`: how the batch gold run time grows with silver's size.

Silver-like posts are built from the bundled real statuses (no silver job or model needed): keys, account,
times, language, plain-text length and hashtags come from the statuses; threat and sentiment columns are
synthetic but deterministic (a hash of the status id), so every run sees the same data. Scale N makes N
copies of every post with new keys (`<uri>#copy<i>`) and times shifted by i days.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import SILVER_POSTS
from tootlake.silver.schema import PLATFORM_MASTODON, POSTS_SCHEMA

STATUSES = Path("mastodon-public-timeline-2023") / "statuses.dev.jsonl"
FETCH_INSTANCE = "mastodon.social"  # the bundled statuses were fetched from this instance's public timeline
_TAG = re.compile(r"<[^>]+>")
_LEVELS = ("NONE",) * 14 + ("LOW",) * 3 + ("MEDIUM", "HIGH")  # 19 buckets; ~74% NONE
_SENTIMENTS = ("negative", "neutral", "neutral", "positive", "positive")


def load_statuses(shared_data_dir: Path) -> list[dict[str, Any]]:
    path = shared_data_dir / STATUSES
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the shared data folder must sit next to the repo")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def plain_text(content_html: str | None) -> str:
    return html.unescape(_TAG.sub(" ", content_html or "")).strip()


def silver_row(status: dict[str, Any], copy: int = 0, updated_at: datetime | None = None) -> dict[str, Any]:
    """A silver/posts row (POSTS_SCHEMA field names) for one real status, copy `copy` of it."""
    shift = timedelta(days=copy)
    suffix = f"#copy{copy}" if copy else ""
    digest = zlib.crc32(f"{status['id']}{suffix}".encode())
    text = plain_text(status.get("content"))
    unscored = digest % 41 == 0  # a few posts whose scoring failed
    level = None if unscored else _LEVELS[digest % len(_LEVELS)]
    account = status.get("account") or {}
    created_at = _ts(status["created_at"])
    edited_at = _ts(status.get("edited_at"))
    return {
        "post_id": status["uri"] + suffix,
        "instance": FETCH_INSTANCE,
        "status_id": status["id"] + (f"-{copy}" if copy else ""),
        "url": status.get("url"),
        "account_id": account.get("id"),
        "account_acct": account.get("acct"),
        "account_username": account.get("username"),
        "account_display_name": account.get("display_name"),
        "created_at": created_at + shift,
        "edited_at": None if edited_at is None else edited_at + shift,
        "language": status.get("language"),
        "visibility": status.get("visibility"),
        "sensitive": bool(status.get("sensitive")),
        "spoiler_text": status.get("spoiler_text") or "",
        "content_html": status.get("content"),
        "text": text,
        "text_length": len(text),
        "hashtags": [tag["name"].lower() for tag in status.get("tags") or []],
        "is_reblog": status.get("reblog") is not None,
        "replies_count": status.get("replies_count"),
        "reblogs_count": status.get("reblogs_count"),
        "favourites_count": status.get("favourites_count"),
        "platform": PLATFORM_MASTODON,
        "threat_label": None if unscored else {"NONE": "none", "LOW": "offensive"}.get(level, "hate"),
        "threat_score": None if unscored else 0.5 + (digest % 500) / 1000,
        "threat_level": level,
        "contains_hate_speech": None if unscored else int(level in ("MEDIUM", "HIGH")),
        "threat_model_version": None if unscored else "synthetic",
        "sentiment_label": None if unscored else _SENTIMENTS[(digest >> 8) % len(_SENTIMENTS)],
        "sentiment_score": None if unscored else 0.4 + ((digest >> 8) % 600) / 1000,
        "sentiment_model_version": None if unscored else "synthetic",
        "processing_status": "FAILED" if unscored else "SUCCESS",
        "scoring_note": None,  # synthetic scores stand for every language (no coverage applied)
        "is_deleted": False,
        "deleted_at": None,
        "event_kind": "status.update" if edited_at else "status",
        "bronze_partition": digest % 3,
        "bronze_offset": digest,
        "ingested_at": updated_at or created_at + shift,
        "updated_at": updated_at or created_at + shift,
    }


def silver_rows(statuses: list[dict[str, Any]], scale: int = 1) -> list[dict[str, Any]]:
    """`scale` copies of every status as silver rows (new keys, times shifted by the copy number in days)."""
    return [silver_row(status, copy) for copy in range(scale) for status in statuses]


def as_tuples(rows: list[dict[str, Any]]) -> list[tuple]:
    return [tuple(row[field.name] for field in POSTS_SCHEMA.fields) for row in rows]


def scaled_silver(spark, statuses: list[dict[str, Any]], scale: int):
    """`scale` copies of the silver rows, built in Spark: copy i gets key `<uri>#copy<i>` and times + i days.

    Copies keep the original's scores (cheaper than hashing per copy; the bench measures volume).
    """
    from pyspark.sql import functions as F

    base = spark.createDataFrame(as_tuples(silver_rows(statuses)), POSTS_SCHEMA)
    copies = spark.range(scale).withColumnRenamed("id", "copy")
    shift = F.make_dt_interval(F.col("copy").cast("int"))
    suffix = F.when(F.col("copy") > 0, F.concat(F.lit("#copy"), F.col("copy").cast("string"))).otherwise("")
    replaced = {
        "post_id": F.concat("post_id", suffix),
        "status_id": F.concat("status_id", suffix),
        "created_at": F.col("created_at") + shift,
        "edited_at": F.col("edited_at") + shift,
        "ingested_at": F.col("ingested_at") + shift,
        "updated_at": F.col("updated_at") + shift,
    }
    return base.crossJoin(copies).select(
        *[replaced.get(field.name, F.col(field.name)).alias(field.name) for field in POSTS_SCHEMA.fields]
    )


def bench_gold(
    settings, scales: list[int], work_dir: Path, log=print, warmup: bool = True
) -> list[dict[str, Any]]:
    """Write synthetic silver at each scale, time one full gold run on it; returns one record per scale."""
    from tootlake.pipelines.jobs.gold import run_gold
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.spark import build_spark

    spark = build_spark(settings, "tootlake-bench-gold")
    statuses = load_statuses(settings.path(settings.shared_data_dir))
    results = []
    for scale in scales:
        lake = work_dir / f"x{scale}" / "lake"
        shutil.rmtree(lake.parent, ignore_errors=True)
        scaled = settings.model_copy(update={"lake_dir": lake})
        scaled_lake = Lake(scaled, spark)
        scaled_lake.overwrite(SILVER_POSTS, scaled_silver(spark, statuses, scale))
        scaled_lake.read(SILVER_POSTS).count()  # warm the file listing, not timed
        if warmup and not results:
            # The JVM's first jobs pay for class loading and code generation: keep that out of the figures.
            log(f"[bench gold] warm-up run on x{scale} (not timed)")
            run_gold(scaled, spark, progress=False)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        counts = run_gold(scaled, spark, progress=False)
        elapsed = time.monotonic() - started
        posts = len(statuses) * scale
        results.append({"scale": scale, "silver_posts": posts, "seconds": round(elapsed, 2),
                        "posts_per_s": round(posts / elapsed), "gold_rows": sum(counts.values()),
                        # a shared machine: the 1-minute load average says how contended the run was
                        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)]})
        log(f"[bench gold] x{scale}: {posts} silver posts -> {sum(counts.values())} gold rows "
            f"in {elapsed:.1f} s ({posts / elapsed:.0f} posts/s, load avg {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores)")
    return results


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bench gold", description=__doc__)
    parser.description = ("Time the batch gold run on 1x, 10x and 100x the bundled posts (synthetic "
                          "silver: copies with new keys and shifted times) to show how its cost grows.")
    parser.add_argument("--scales", default="1,10,100",
                        help="comma-separated copy counts (default 1,10,100)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the untimed warm-up run (class loading, codegen) before the first scale")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the results as JSON here (default var/bench/gold.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings

    try:
        scales = [int(part) for part in args.scales.split(",") if part.strip()]
    except ValueError:
        print(f"[bench gold] --scales must be integers like 1,10,100, got {args.scales!r}")
        return 2
    if not scales or min(scales) < 1:
        print("[bench gold] --scales needs at least one integer >= 1")
        return 2
    settings = load_settings()
    work_dir = settings.path(Path("var/bench/gold"))
    results = bench_gold(settings, scales, work_dir, warmup=not args.no_warmup)
    output = args.output or settings.path(Path("var/bench/gold.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    base = results[0]
    print(f"{'scale':>6} {'posts':>8} {'seconds':>8} {'posts/s':>8} {'time vs x' + str(base['scale']):>12}")
    for result in results:
        print(f"{'x' + str(result['scale']):>6} {result['silver_posts']:>8} {result['seconds']:>8.1f} "
              f"{result['posts_per_s']:>8} {result['seconds'] / base['seconds']:>11.1f}x")
    print(f"[bench gold] results -> {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
