"""`tootlake bench objectstore`: bronze and silver rows/s on an s3a:// lake (the embedded s3proxy, or
S3_ENDPOINT) vs a local lake, in one run: same topic, same Spark session, local first then object store,
each layer from scratch (its own lake and checkpoints), after an untimed warm-up run on a third lake.
Silver runs without model scoring (`--score` to include it), so the ratio measures storage, not the
threat model.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from tootlake.bronze.filters import FilterConfig


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--records", type=int, default=5_000,
                        help="Kafka records to produce (the bundled statuses, repeated; default 5000)")
    parser.add_argument("--bucket", default="tootlake-bench", help="bucket of the s3a:// lake")
    parser.add_argument("--score", action="store_true", help="silver with the threat/sentiment models")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    return parser


def measure(base, records: int, bucket: str, score: bool, log=print) -> dict:
    """{"local": {...}, "s3a": {...}, "ratio": {...}}: rows and seconds of bronze and silver per lake."""
    from tootlake.pipelines.jobs.bronze import BRONZE_TABLE, run_bronze
    from tootlake.pipelines.jobs.silver import Scoring, run_silver
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.ops import services
    from tootlake.pipelines.source.mastodon import replay_source
    from tootlake.pipelines.source.producer import produce_events
    from tootlake.pipelines.spark import build_spark

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    scratch = base.path(base.state_dir).parent / "bench" / f"objectstore-{run_id}"
    topic = {"kafka_topic": f"bench-objectstore-{run_id}"}
    lakes = {
        # untimed: the JVM's first jobs pay for class loading and code generation, whichever lake is first
        "warm-up": base.model_copy(update={**topic, "lake_dir": str(scratch / "warm-up" / "lake"),
                                           "checkpoint_dir": str(scratch / "warm-up" / "checkpoints")}),
        "local": base.model_copy(update={**topic, "lake_dir": str(scratch / "lake"),
                                         "checkpoint_dir": str(scratch / "checkpoints")}),
        "s3a": base.model_copy(update={**topic, "lake_dir": f"s3a://{bucket}/{run_id}/lake",
                                       "checkpoint_dir": f"s3a://{bucket}/{run_id}/checkpoints"}),
    }
    services.ensure_services(lakes["s3a"], kafka=True, postgres=False)
    statuses = list(replay_source(lakes["local"]))
    events = [statuses[i % len(statuses)] for i in range(records)]
    produced = produce_events(lakes["local"], events, filters=FilterConfig(exclude_reblogs=False))
    log(f"produced {produced.delivered} records to {topic['kafka_topic']}")
    spark = build_spark(lakes["s3a"], "tootlake-bench-objectstore")  # s3a jars + conf; local paths work too
    result: dict = {"records": produced.delivered, "scored": score}
    for name, settings in lakes.items():
        started = time.monotonic()
        run_bronze(spark, settings, log=lambda _line: None)
        bronze_s = time.monotonic() - started
        bronze_rows = Lake(settings, spark).read(BRONZE_TABLE).count()
        started = time.monotonic()
        report = run_silver(settings, spark, scorer=Scoring.MODELS if score else None, dq=None)
        silver_s = time.monotonic() - started
        if name == "warm-up":
            log(f"  warm-up (not timed): bronze {bronze_rows} rows, silver {report['bronze_rows']} rows")
            continue
        result[name] = {"lake": settings.location(settings.lake_dir),
                        "bronze_rows": bronze_rows, "bronze_s": round(bronze_s, 2),
                        "bronze_rows_per_s": round(bronze_rows / bronze_s, 1),
                        "silver_rows": report["bronze_rows"], "silver_s": round(silver_s, 2),
                        "silver_rows_per_s": round(report["bronze_rows"] / silver_s, 1)}
        log(f"  {name:<6} bronze {bronze_rows} rows in {bronze_s:.1f} s, silver {report['bronze_rows']} rows "
            f"in {silver_s:.1f} s")
    result["ratio"] = {layer: round(result["s3a"][f"{layer}_rows_per_s"]
                                    / result["local"][f"{layer}_rows_per_s"], 2)
                       for layer in ("bronze", "silver")}
    return result


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.settings import load_settings

    result = measure(load_settings(), args.records, args.bucket, args.score)
    print("\nbench objectstore (one run, same topic, same Spark session; rows/s incl. query start)")
    for layer in ("bronze", "silver"):
        print(f"  {layer:<7} local {result['local'][f'{layer}_rows_per_s']:8.0f} rows/s   "
              f"s3a {result['s3a'][f'{layer}_rows_per_s']:8.0f} rows/s   ratio s3a/local "
              f"{result['ratio'][layer]:.2f}")
    if args.json:
        print(json.dumps(result, indent=1))
    same = result["local"]["bronze_rows"] == result["s3a"]["bronze_rows"] == result["records"]
    return 0 if same and result["local"]["silver_rows"] == result["s3a"]["silver_rows"] else 1
