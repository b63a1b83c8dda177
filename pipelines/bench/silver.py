"""`tootlake bench silver`: posts/s through silver's threat scoring vs plain onnxruntime on the same texts
with the same model, their ratio (goal >= 0.8), and the silver transform's rate without scoring.

Texts: the bundled real Mastodon statuses (HTML -> plain text with the producer's helper), repeated to
`--posts`. Every Spark measurement runs on cached input after a warm-up pass, so it measures the steady
state (Python workers up, one InferenceSession each), not the JVM or worker start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DATASETS = ("mastodon-public-timeline-2023", "mastodon-mastodonpy-serialized-2023",
            "mastodon-api-fixtures-mastodonpy")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bench silver", description=__doc__)
    parser.description = "Silver scoring throughput vs plain onnxruntime (same texts, same model)."
    parser.add_argument("--posts", type=int, default=2000, help="texts to score (default 2000)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per onnxruntime run (default: SILVER_THREAT_BATCH_SIZE)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="measure each path this many times, interleaved, and keep the best (default 2): "
                             "on a shared machine the load drifts, interleaving keeps the ratio fair")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    return parser


def _statuses(shared: Path) -> list[dict]:
    out = []
    for folder in DATASETS:
        path = shared / folder / "statuses.dev.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                out += [json.loads(line) for line in handle]
    if not out:
        raise SystemExit(f"no Mastodon samples under {shared}: set SHARED_DATA_DIR")
    return out


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pyspark.sql import functions as F

    from tootlake.bronze.records import build_envelope, encode_record
    from tootlake.bronze.text import html_to_text
    from tootlake.models.threat import ThreatModel
    from tootlake.pipelines.jobs.silver import configure_spark, default_intra_op_threads
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import BatchFrames, build_spark
    from tootlake.silver.parse import parse_records
    from tootlake.silver.posts import latest_per_post, plan_scoring, post_versions, to_posts_rows
    from tootlake.silver.quarantine import with_rule_failures
    from tootlake.silver.schema import POSTS_SCHEMA
    from tootlake.silver.scoring import apply_scoring, score_threat

    settings = load_settings()
    batch_size = args.batch_size or settings.silver_threat_batch_size
    log = (lambda *_: None) if args.json else (lambda msg: print(f"[bench silver] {msg}", flush=True))
    statuses = _statuses(settings.path(settings.shared_data_dir))
    chosen = [statuses[i % len(statuses)] for i in range(args.posts)]
    # Unique ids per copy, so dedupe keeps every post (as distinct posts with the same texts).
    copies = [dict(s, id=f"{i}{str(s['id'])[-6:]}") for i, s in enumerate(chosen)]
    texts = [html_to_text(s.get("content")) for s in copies]
    cores = os.cpu_count() or 1

    log(f"{len(texts)} texts; plain onnxruntime ({cores} intra-op threads, batch {batch_size}) ...")
    plain = ThreatModel.load(intra_op_threads=cores)
    plain.predict(texts[:64], batch_size=batch_size)  # warm-up
    version = plain.model_version
    # The deployed models: the multilingual sentiment head scores the languages coverage.json routes to it
    # (no threat model there), the English encoder the rest; the raw limit is both in plain onnxruntime.
    from tootlake.models.coverage import language_code, load_coverage

    routed_languages = load_coverage("sentiment").multilingual
    routed = [language_code(s.get("language")) in routed_languages for s in copies]
    routed_texts = [t for t, r in zip(texts, routed, strict=True) if r]
    english_texts = [t for t, r in zip(texts, routed, strict=True) if not r]
    head = None
    if routed_languages:
        from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR

        head = ThreatModel.load(DEFAULT_ARTIFACT_DIR, intra_op_threads=cores)
        head.run(routed_texts[:64] or texts[:64], ["sentiment_probs"], batch_size=batch_size)  # warm-up

    def plain_deployed() -> None:
        plain.run(english_texts, ["probs", "embedding"], batch_size=batch_size)
        if head is not None and routed_texts:
            head.run(routed_texts, ["sentiment_probs"], batch_size=batch_size)


    spark = build_spark(settings, "tootlake-bench-silver")
    configure_spark(spark, settings)
    parallelism = spark.sparkContext.defaultParallelism
    threads = settings.silver_threat_threads or default_intra_op_threads(spark)
    log(f"Spark: {parallelism} tasks x {threads} onnxruntime thread(s), arrow batch "
        f"{settings.silver_arrow_batch_size}")
    text_df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "post_id int, text string")
    text_df = text_df.repartition(parallelism).cache()
    text_df.count()

    def score_texts(df):
        score_threat(df, batch_size=batch_size, intra_op_threads=threads).write.format("noop") \
            .mode("overwrite").save()

    score_texts(text_df.limit(200))  # warm-up: start the Python workers, load one session in each

    # The whole silver transform on bronze-shaped rows, with and without the scoring step.
    fetched = datetime(2023, 10, 24, tzinfo=UTC)
    records = [encode_record(build_envelope("status", "mastodon.social", fetched, s)) for s in copies]
    ts = datetime(2023, 10, 24, 0, 0, 1)
    bronze = spark.createDataFrame(
        [(k.decode(), v.decode(), "t", 0, i, ts, ts, ts.date()) for i, (k, v) in enumerate(records)],
        "key string, value string, topic string, partition int, offset long, kafka_timestamp timestamp, "
        "ingested_at timestamp, ingest_date date",
    ).repartition(parallelism).cache()
    bronze.count()
    empty_posts = spark.createDataFrame([], POSTS_SCHEMA)  # nothing stored yet: every post is scored

    class ThreatOnly:
        threat_model_version = version
        sentiment_model_version = None

        def score(self, df):
            return score_threat(df, batch_size=batch_size, intra_op_threads=threads).withColumns(
                {"sentiment_label": F.lit(None).cast("string"), "sentiment_score": F.lit(None).cast("double"),
                 "sentiment_model_version": F.lit(None).cast("string")})

    def silver(scorer):
        # materialised where the job materialises (BatchFrames.keep): apply_scoring splits the plan three
        # ways, and without it each branch would parse and dedupe the batch again
        with BatchFrames(spark) as frames:
            judged = frames.keep(with_rule_failures(parse_records(bronze), datetime(2026, 1, 1, tzinfo=UTC)))
            planned = frames.keep(plan_scoring(latest_per_post(post_versions(judged)), empty_posts,
                                               getattr(scorer, "threat_model_version", None), None)
                                  .repartition(parallelism))  # as the job does for a batch this size
            rows = to_posts_rows(apply_scoring(planned, scorer), F.current_timestamp())
            rows.write.format("noop").mode("overwrite").save()

    from tootlake.pipelines.jobs.silver import ModelScorer

    deployed = ModelScorer(spark, batch_size=batch_size, intra_op_threads=threads)
    silver(None)  # warm-up
    silver(deployed)
    best: dict[str, float] = {}
    paths = {
        "plain": lambda: plain.predict(texts, batch_size=batch_size),
        "spark": lambda: score_texts(text_df),
        "silver_without": lambda: silver(None),
        "silver_with": lambda: silver(ThreatOnly()),
        "plain_deployed": plain_deployed,
        "silver_deployed": lambda: silver(deployed),
    }
    for round_no in range(1, max(1, args.rounds) + 1):
        for name, fn in paths.items():
            seconds = _timed(fn)
            best[name] = min(best.get(name, seconds), seconds)
            log(f"round {round_no}: {name:<15} {len(texts) / seconds:8.1f} posts/s")
    plain_s, spark_s = best["plain"], best["spark"]
    no_scoring_s, full_s = best["silver_without"], best["silver_with"]

    n = len(texts)
    result = {
        "posts": n,
        "model_version": version,
        "plain_onnxruntime_posts_per_s": round(n / plain_s, 1),
        "spark_scoring_posts_per_s": round(n / spark_s, 1),
        "ratio_spark_vs_plain": round(plain_s / spark_s, 3),
        "silver_with_scoring_posts_per_s": round(n / full_s, 1),
        "ratio_silver_with_scoring_vs_plain": round(plain_s / full_s, 3),
        "silver_without_scoring_posts_per_s": round(n / no_scoring_s, 1),
        # every model as silver runs it: threat + MLlib sentiment, the multilingual head for its languages
        "posts_routed_to_multilingual_head": len(routed_texts),
        "plain_onnxruntime_deployed_posts_per_s": round(n / best["plain_deployed"], 1),
        "silver_deployed_models_posts_per_s": round(n / best["silver_deployed"], 1),
        "ratio_silver_deployed_vs_plain": round(best["plain_deployed"] / best["silver_deployed"], 3),
        "goal_ratio": 0.8,
        "cores": cores,
        "spark_tasks": parallelism,
        "intra_op_threads_per_worker": threads,
        "arrow_batch": settings.silver_arrow_batch_size,
        "onnx_batch": batch_size,
        "rounds": max(1, args.rounds),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"  {key:<36} {value}")
        verdict = "meets" if result["ratio_spark_vs_plain"] >= 0.8 else "misses"
        print(f"[bench silver] Spark scoring runs at {result['ratio_spark_vs_plain']:.2f}x plain onnxruntime "
              f"({verdict} the 0.8 goal)")
    return 0
