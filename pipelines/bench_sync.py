"""`tootlake bench sync`: rows/s of the PostgreSQL upsert path vs a plain COPY of the same rows.

Both runs use the same staged rows, the same batch size and one transaction per batch, in a scratch
database (`<POSTGRES_DB>_bench_sync`, dropped afterwards) on the configured server:
- upsert: PostgresTarget.write_batch -> COPY into the temp stage + DELETE tombstones + INSERT ... ON CONFLICT
  into rawposts and processedposts (empty tables: every row inserted into both);
- copy: COPY of the same payload into an empty table with the staging columns (no keys);
and, for information, an update pass (every row newer) and a replay pass (nothing newer).
Ratio = upsert rows/s / copy rows/s (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import statistics
import time

GOAL_RATIO = 0.5


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bench sync", description=__doc__)
    parser.description = "Rows/s of the PostgreSQL upsert path vs a plain COPY of the same rows."
    parser.add_argument("--rows", type=int, default=20_000, help="posts per run (default 20000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="posts per transaction (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path; the median is reported")
    return parser


def synthetic_posts(count: int) -> list[dict]:
    """Silver rows with realistic field sizes (~300-char text, HTML twice that, a few hashtags)."""
    from tootlake.silver.schema import POSTS_SCHEMA

    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    words = ["lake", "delta", "spark", "kafka", "post", "toot", "mastodon", "fediverse", "stream", "sync",
             "quote", "'x'", "back\\slash", "emoji", "😀", "rtl", "\u200f"]
    posts = []
    for i in range(count):
        text = " ".join(words[(i + k) % len(words)] for k in range(48))
        row = {field.name: None for field in POSTS_SCHEMA.fields}
        row.update(
            post_id=f"https://bench.example/users/u{i % 500}/statuses/{10**9 + i}", instance="bench.example",
            status_id=str(10**9 + i), url=f"https://bench.example/@u{i % 500}/{10**9 + i}",
            account_id=str(i % 500), account_acct=f"u{i % 500}", account_username=f"u{i % 500}",
            account_display_name=f"User {i % 500}", created_at=base + dt.timedelta(seconds=i),
            language="en", visibility="public", sensitive=False, content_html=f"<p>{text}</p><p>{text}</p>",
            text=text, text_length=len(text), hashtags=["bench", f"t{i % 40}"], is_reblog=False,
            replies_count=i % 3, reblogs_count=i % 5, favourites_count=i % 7, platform="mastodon",
            threat_label="none", threat_score=0.93, threat_level="NONE", contains_hate_speech=0,
            threat_model_version="bench", sentiment_label="neutral", sentiment_score=0.71,
            sentiment_model_version="bench", processing_status="SUCCESS", is_deleted=False,
            updated_at=base, ingested_at=base,
        )
        posts.append(row)
    return posts


def _batches(rows: list, size: int):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def run(args: argparse.Namespace) -> int:
    import psycopg2

    from tootlake.pipelines import services
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.sync import dbinit
    from tootlake.pipelines.sync.postgres import STAGE_DDL, PostgresTarget, copy_payload
    from tootlake.pipelines.sync.records import STAGE_NAMES, stage_rows

    settings = load_settings()
    if settings.uses_embedded_postgres:
        services.start_postgres(settings)
    bench_db = f"{settings.postgres_db}_bench_sync"
    admin = psycopg2.extensions.parse_dsn(settings.postgres_conninfo())
    admin_info = psycopg2.extensions.make_dsn(**{**admin, "dbname": "postgres"})
    bench_info = psycopg2.extensions.make_dsn(**{**admin, "dbname": bench_db})

    def recreate_db() -> None:
        with contextlib.closing(psycopg2.connect(admin_info)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
            conn.cursor().execute(f'CREATE DATABASE "{bench_db}"')
        dbinit.init_postgres(bench_info, log=lambda _: None)

    print(f"[bench sync] staging {args.rows} synthetic posts (batch {args.batch_size}, {args.repeats} runs)")
    posts = synthetic_posts(args.rows)
    rows = stage_rows(posts)
    newer = stage_rows({**p, "updated_at": p["updated_at"] + dt.timedelta(hours=1)} for p in posts)
    results: dict[str, list[float]] = {"upsert (insert)": [], "copy": [], "upsert (update)": [],
                                       "upsert (replay)": []}
    try:
        for repeat in range(args.repeats):
            recreate_db()
            target = PostgresTarget(bench_info, log=lambda _: None)
            passes = (("upsert (insert)", rows), ("upsert (update)", newer), ("upsert (replay)", newer))
            for label, data in passes:
                started = time.perf_counter()
                for chunk in _batches(data, args.batch_size):
                    target.write_batch(chunk)
                results[label].append(len(data) / (time.perf_counter() - started))
            target.close()
            with contextlib.closing(psycopg2.connect(bench_info)) as conn:
                with conn.cursor() as cur:
                    baseline = STAGE_DDL.replace("CREATE TEMP TABLE IF NOT EXISTS sync_stage", "CREATE TABLE "
                                                 "copy_baseline").replace(" ON COMMIT DELETE ROWS", "")
                    cur.execute(baseline)
                conn.commit()
                started = time.perf_counter()
                for chunk in _batches(rows, args.batch_size):
                    with conn.cursor() as cur:
                        cur.copy_expert(f"COPY copy_baseline ({', '.join(STAGE_NAMES)}) FROM STDIN",
                                        io.BytesIO(copy_payload(chunk)))
                    conn.commit()
                results["copy"].append(len(rows) / (time.perf_counter() - started))
            print(f"[bench sync] run {repeat + 1}/{args.repeats}: "
                  + ", ".join(f"{k} {v[-1]:,.0f} rows/s" for k, v in results.items()))
    finally:
        with contextlib.closing(psycopg2.connect(admin_info)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
    # both paths spend the same Python time building COPY payloads: measure it to show database time alone
    started = time.perf_counter()
    for chunk in _batches(rows, args.batch_size):
        copy_payload(chunk)
    encode_s = time.perf_counter() - started
    median = {k: statistics.median(v) for k, v in results.items()}
    ratio = median["upsert (insert)"] / median["copy"]
    print("[bench sync] median rows/s (encode + COPY + SQL + commit, per batch):")
    for label, value in median.items():
        db_s = len(rows) / value - encode_s
        db_rate = f"{len(rows) / db_s:>10,.0f}" if db_s > 0 else "       n/a"
        print(f"  {label:<16} {value:>10,.0f}   database only (encode subtracted): {db_rate}")
    print(f"[bench sync] COPY payload encoding: {len(rows) / encode_s:,.0f} rows/s in Python")
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    print(f"[bench sync] upsert/copy ratio {ratio:.2f} ({verdict} the goal >= {GOAL_RATIO})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
