"""`tootlake bench dq`: what the per-batch data-quality rules cost, and one Great Expectations validation.

The same silver run (bronze -> silver/posts + quarantine, several micro-batches) and the same gold run
(every gold table) with the rules off (dq=None) and on (a Guard: one aggregate per batch + dq.metrics
append, gold tables checked before their overwrite), on the bundled replay statuses in a temporary lake.
Runs are interleaved and the best of `--rounds` is kept (the machine is shared). The overhead ratio is
with / without - 1 (goal <= 10 %). Scoring is off by default so the ratio is about the rules, not the
models (with models silver is slower, so the same absolute cost is a smaller share).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tootlake.catalog.vocab import BRONZE_POSTS_RAW, SILVER_POSTS

DATASETS = ("mastodon-public-timeline-2023", "mastodon-mastodonpy-serialized-2023")
BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="bench dq", description=__doc__)
    parser.description = ("Silver and gold run time with the data-quality rules on vs off (overhead ratio, "
                          "goal <= 10%), and the time of one Great Expectations validation.")
    parser.add_argument("--batches", type=int, default=4, help="bronze commits = silver micro-batches (4)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, best kept (default 2)")
    parser.add_argument("--scoring", action="store_true", help="run silver with the models (slower)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    return parser


def _records(shared: Path) -> list[tuple[str, str]]:
    from tootlake.bronze.records import build_envelope, encode_record

    fetched = datetime(2023, 10, 24, tzinfo=UTC)
    out = []
    for folder in DATASETS:
        path = shared / folder / "statuses.dev.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    key, value = encode_record(build_envelope("status", "mastodon.social", fetched,
                                                              json.loads(line)))
                    out.append((key.decode(), value.decode()))
    if not out:
        raise SystemExit(f"no Mastodon samples under {shared}: set SHARED_DATA_DIR")
    out += [(f"mastodon.social/bad{i}", "{not json") for i in range(5)]  # a few for the quarantine
    return out


def _write_bronze(lake, records: list[tuple[str, str]], batches: int) -> None:
    ts = datetime(2023, 10, 24, 0, 0, 1)
    size = -(-len(records) // batches)
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        rows = [(k, v, "t", 0, start + i, ts, ts, ts.date()) for i, (k, v) in enumerate(chunk)]
        lake.append(BRONZE_POSTS_RAW, lake.spark.createDataFrame(rows, BRONZE_DDL).coalesce(1))


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    from tootlake.pipelines.jobs.gold import run_gold
    from tootlake.pipelines.jobs.silver import Scoring, run_silver
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.quality.guard import Guard
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    base = load_settings()
    log = (lambda *_: None) if args.json else (lambda msg: print(f"[bench dq] {msg}", flush=True))
    work = Path(tempfile.mkdtemp(prefix="tootlake-bench-dq-"))
    settings = base.model_copy(update={"lake_dir": work / "lake", "checkpoint_dir": work / "ck"})
    records = _records(base.path(base.shared_data_dir))
    spark = build_spark(base, "tootlake-bench-dq")
    try:
        _write_bronze(Lake(settings, spark), records, args.batches)
        log(f"{len(records)} bronze records in {args.batches} commits under {work}")
        clock = lambda: datetime(2026, 11, 23, tzinfo=UTC)  # noqa: E731

        runs = iter(range(1_000))
        current = {"settings": settings}

        def silver(rules_on: bool) -> None:
            # A fresh lake (bronze linked in) and checkpoint every time: each run does the same work.
            n = next(runs)
            s = settings.model_copy(update={"lake_dir": work / f"lake-{n}",
                                            "checkpoint_dir": work / f"ck-{n}"})
            s.table_path(BRONZE_POSTS_RAW).parent.mkdir(parents=True)
            s.table_path(BRONZE_POSTS_RAW).symlink_to(settings.table_path(BRONZE_POSTS_RAW))
            scorer = Scoring.MODELS_IF_AVAILABLE if args.scoring else None
            run_silver(s, spark, scorer=scorer, max_files_per_trigger=1, clock=clock,
                       dq=Guard(s, "silver", clock=clock) if rules_on else None)
            current["settings"] = s

        def gold(rules_on: bool) -> None:
            s = current["settings"]
            run_gold(s, spark, progress=False, dq=Guard(s, "gold") if rules_on else None)

        log("warm-up (untimed): silver and gold once with the rules on")
        silver(True)
        gold(True)
        best: dict[str, float] = {}

        def measure(round_no: int, name: str, fn) -> None:
            seconds = _timed(fn)
            best[name] = min(best.get(name, seconds), seconds)
            log(f"round {round_no}: {name:<10} {seconds:6.2f} s")

        for round_no in range(1, max(1, args.rounds) + 1):
            measure(round_no, "silver_off", lambda: silver(False))
            measure(round_no, "silver_on", lambda: silver(True))
            # Both timed gold runs must overwrite existing tables (creating them costs more than replacing
            # them), so an untimed gold run comes first; the on/off order alternates between rounds.
            gold(False)
            for rules_on in ((False, True) if round_no % 2 else (True, False)):
                measure(round_no, "gold_on" if rules_on else "gold_off", lambda on=rules_on: gold(on))

        from tootlake.pipelines.quality.gx import _context, validate_layer, validate_table

        log("Great Expectations: import + context, then one validation of silver.posts, then the layer")
        gx_started = time.perf_counter()
        settings = current["settings"]
        context = _context(settings)
        gx_setup = time.perf_counter() - gx_started
        from tootlake.expectations.suites import SUITES

        spec = SUITES["silver"][SILVER_POSTS]
        validate_table(context, settings, SILVER_POSTS, spec)  # warm-up (first checkpoint, docs site)
        one = validate_table(context, settings, SILVER_POSTS, spec)
        layer = validate_layer(settings, "silver", record=False)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "bronze_records": len(records),
        "silver_batches": args.batches,
        "scoring": bool(args.scoring),
        "silver_off_s": round(best["silver_off"], 2),
        "silver_on_s": round(best["silver_on"], 2),
        "silver_overhead": round(best["silver_on"] / best["silver_off"] - 1, 3),
        "gold_off_s": round(best["gold_off"], 2),
        "gold_on_s": round(best["gold_on"], 2),
        "gold_overhead": round(best["gold_on"] / best["gold_off"] - 1, 3),
        "goal_overhead": 0.10,
        "gx_import_and_context_s": round(gx_setup, 2),
        "gx_one_validation_s": round(one.seconds, 2),
        "gx_one_validation_rows": one.rows_validated,
        "gx_one_validation_expectations": len(one.outcomes),
        "gx_silver_layer_s": round(layer.seconds, 2),
        "rounds": max(1, args.rounds),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"  {key:<32} {value}")
        for job in ("silver", "gold"):
            ratio = result[f"{job}_overhead"]
            verdict = "meets" if ratio <= 0.10 else "misses"
            print(f"[bench dq] {job}: rules add {ratio:+.1%} ({verdict} the <= 10% goal)")
        print(f"[bench dq] one GX validation (silver.posts, {one.rows_validated} rows, "
              f"{len(one.outcomes)} expectations): {one.seconds:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
