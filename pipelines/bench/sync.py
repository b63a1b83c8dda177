"""`tootlake bench sync`: rows/s of the PostgreSQL upsert path vs a plain COPY of the same rows.

Both paths use the same staged rows, batch size and one transaction per batch, in a scratch database
(`<POSTGRES_DB>_bench_sync`, dropped afterwards) on the configured server:
- upsert: what the sync does per batch (PostgresTarget): COPY into the temp stage, INSERT ... SELECT
  DISTINCT ON ... ON CONFLICT DO UPDATE ... WHERE newer into rawposts then processedposts, commit; into
  empty tables (every post inserted into both), then an update pass (every post newer) and a replay pass
  (nothing newer);
- copy: COPY of the same payloads into an empty table with the staging columns (no keys, no indexes).
Encoding the rows as COPY text is the same Python work on both paths: it is timed once per run, and the
database part of each path on its own, so both "end to end" (encode + database) and "database only"
rates are printed. Ratio = upsert rows/s / copy rows/s end to end (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import statistics
import time

from tootlake.catalog.vocab import SILVER_POSTS

GOAL_RATIO = 0.5


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bench sync", description=__doc__)
    parser.description = "Rows/s of the PostgreSQL upsert path vs a plain COPY of the same rows."
    parser.add_argument("--rows", type=int, default=20_000, help="posts per run (default 20000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="posts per transaction (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path; the median is reported")
    parser.add_argument("--freshness", type=int, default=0, metavar="POSTS",
                        help="instead: the sync leg's freshness in continuous mode over POSTS posts "
                             "(silver/posts commit -> PROCESSEDPOSTS row visible), p50/p95; needs Spark")
    parser.add_argument("--trigger", default="1 second", help="sync trigger for --freshness (default 1 s)")
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
    if args.freshness:
        return run_freshness(args)
    import psycopg2

    from tootlake.pipelines.databases import dbinit
    from tootlake.pipelines.databases.postgres import STAGE_DDL, PostgresTarget, copy_payload
    from tootlake.pipelines.databases.records import STAGE_NAMES, stage_rows
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.settings import load_settings

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
    db_s: dict[str, list[float]] = {"upsert (insert)": [], "upsert (update)": [], "upsert (replay)": [],
                                    "copy": []}
    encode_s: list[float] = []
    try:
        for repeat in range(args.repeats):
            recreate_db()
            # Encoding (Python rows -> COPY text) is the same work on both paths: timed once per run, and
            # the database part of each path timed on its own (pre-encoded payloads).
            started = time.perf_counter()
            payloads = [copy_payload(chunk) for chunk in _batches(rows, args.batch_size)]
            encode_s.append(time.perf_counter() - started)
            newer_payloads = [copy_payload(chunk) for chunk in _batches(newer, args.batch_size)]
            target = PostgresTarget(bench_info, log=lambda _: None)
            passes = (("upsert (insert)", rows, payloads), ("upsert (update)", newer, newer_payloads),
                      ("upsert (replay)", newer, newer_payloads))
            for label, data, encoded in passes:
                started = time.perf_counter()
                for chunk, payload in zip(_batches(data, args.batch_size), encoded, strict=True):
                    target._write_once(chunk, payload)
                db_s[label].append(time.perf_counter() - started)
            target.close()
            with contextlib.closing(psycopg2.connect(bench_info)) as conn:
                with conn.cursor() as cur:
                    baseline = STAGE_DDL.replace("CREATE TEMP TABLE IF NOT EXISTS sync_stage", "CREATE TABLE "
                                                 "copy_baseline").replace(" ON COMMIT DELETE ROWS", "")
                    cur.execute(baseline)
                conn.commit()
                started = time.perf_counter()
                for payload in payloads:
                    with conn.cursor() as cur:
                        cur.copy_expert(f"COPY copy_baseline ({', '.join(STAGE_NAMES)}) FROM STDIN",
                                        io.BytesIO(payload))
                    conn.commit()
                db_s["copy"].append(time.perf_counter() - started)
            print(f"[bench sync] run {repeat + 1}/{args.repeats}: encode {encode_s[-1]:.2f} s, "
                  + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in db_s.items()))
    finally:
        with contextlib.closing(psycopg2.connect(admin_info)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
    n = len(rows)
    enc = statistics.median(encode_s)
    db = {k: statistics.median(v) for k, v in db_s.items()}
    print(f"[bench sync] {n} posts, median of {args.repeats} runs; rows/s end to end (encode + database) "
          "and database only:")
    for label, seconds in db.items():
        print(f"  {label:<16} {n / (enc + seconds):>10,.0f}   {n / seconds:>10,.0f}")
    print(f"  (encoding rows -> COPY text in Python: {n / enc:,.0f} rows/s, the same for both paths)")
    ratio = (n / (enc + db["upsert (insert)"])) / (n / (enc + db["copy"]))
    db_ratio = db["copy"] / db["upsert (insert)"]
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    print(f"[bench sync] upsert/copy ratio {ratio:.2f} end to end ({verdict} the goal >= {GOAL_RATIO}); "
          f"{db_ratio:.2f} database only")
    return 0


def run_freshness(args: argparse.Namespace) -> int:
    """Continuous sync into a scratch database; silver commits of 10 posts; latency = row visible - commit."""
    import tempfile
    import threading
    from pathlib import Path

    import psycopg2
    from pydantic import SecretStr

    from tootlake.pipelines.databases import dbinit
    from tootlake.pipelines.jobs.sync import run_sync
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.ops.processes import wait_until
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark
    from tootlake.silver.schema import POSTS_SCHEMA

    base = load_settings()
    if base.uses_embedded_postgres:
        services.start_postgres(base)
    bench_db = f"{base.postgres_db}_bench_fresh"
    parts = psycopg2.extensions.parse_dsn(base.postgres_conninfo())
    admin_info = psycopg2.extensions.make_dsn(**{**parts, "dbname": "postgres"})
    with contextlib.closing(psycopg2.connect(admin_info)) as conn:
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        conn.cursor().execute(f'CREATE DATABASE "{bench_db}"')
    bench_info = psycopg2.extensions.make_dsn(**{**parts, "dbname": bench_db})
    dbinit.init_postgres(bench_info, log=lambda _: None)
    work = Path(tempfile.mkdtemp(prefix="tootlake-bench-fresh-"))
    dsn = SecretStr(bench_info) if base.postgres_dsn else None
    settings = base.model_copy(update={"lake_dir": work / "lake", "checkpoint_dir": work / "checkpoints",
                                       "postgres_dsn": dsn, "postgres_db": bench_db})
    spark = build_spark(settings, "tootlake-bench-sync-freshness")
    lake = Lake(settings, spark)
    posts = synthetic_posts(args.freshness + 10)

    def commit(rows: list[dict]) -> float:
        now = dt.datetime.now(dt.UTC)
        rows = [{**r, "updated_at": now.replace(tzinfo=None)} for r in rows]
        frame = spark.createDataFrame(rows, POSTS_SCHEMA).coalesce(1)
        lake.append(SILVER_POSTS, frame)
        return time.time()

    commit(posts[:10])  # creates the table; the first batch also starts the stream
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            run_sync(settings, spark, trigger=args.trigger, copy_gold=False, log=lambda _: None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    latencies: list[float] = []
    with contextlib.closing(psycopg2.connect(bench_info)) as conn:
        conn.autocommit = True
        cur = conn.cursor()

        def visible(ids: list[str]) -> int:
            cur.execute("SELECT count(*) FROM processedposts WHERE raw_post_id = ANY(%s)", (ids,))
            return cur.fetchone()[0]

        # wait for the stream to be up
        wait_until(lambda: visible([p["post_id"] for p in posts[:10]]) >= 10 or failure, 600, every=0.2)
        print(f"[bench sync] freshness: stream up; committing {args.freshness} posts, 10 per silver commit")
        for start in range(10, args.freshness + 10, 10):
            chunk = posts[start : start + 10]
            ids = [p["post_id"] for p in chunk]
            committed = commit(chunk)
            pending = set(ids)
            while pending and time.time() < committed + 120 and not failure:
                cur.execute("SELECT raw_post_id FROM processedposts WHERE raw_post_id = ANY(%s)",
                            (list(pending),))
                seen = {row[0] for row in cur.fetchall()}
                latencies.extend(time.time() - committed for _ in seen)
                pending -= seen
                time.sleep(0.05)
    for query in spark.streams.active:
        query.stop()
    thread.join(60)
    if failure:
        print(f"[bench sync] freshness: the sync failed: {failure[0]}")
        return 1
    latencies.sort()
    if not latencies:
        print("[bench sync] freshness: no post became visible")
        return 1
    p50 = latencies[len(latencies) // 2]
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    print(f"[bench sync] freshness of the sync leg over {len(latencies)} posts (trigger {args.trigger}): "
          f"p50 {p50:.1f} s, p95 {p95:.1f} s, max {latencies[-1]:.1f} s")
    with contextlib.closing(psycopg2.connect(admin_info)) as conn:
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
