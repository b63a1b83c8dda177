"""Silver: Delta stream of bronze/posts_raw -> MERGE into silver/posts + append to silver/posts_quarantine.

Exactly-once without a transactional sink: the stream checkpoint replays an unfinished micro-batch with
the same bronze rows after a crash, and both writes are idempotent —
- the quarantine append carries Delta's `txnAppId`/`txnVersion` (app id kept in the checkpoint folder,
  version = batch id), so Delta skips a batch it already has;
- the MERGE only changes a row for a strictly newer version (or a re-score), so a replayed batch finds
  nothing newer and changes nothing.

Entry point: `spark-submit pipelines/jobs/silver.py` or `tootlake silver`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from tootlake.bronze.posts_raw import POSTS_RAW
from tootlake.pipelines.jobs.isolation import bisect, error_text, is_record_level
from tootlake.pipelines.jobs.streaming import AVAILABLE_NOW, apply_trigger, parse_trigger, run_query
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.logs import configure_logging
from tootlake.pipelines.settings import FROM_SETTINGS, FromSettings, Settings, is_object_store
from tootlake.pipelines.spark import BatchFrames
from tootlake.silver.parse import parse_records
from tootlake.silver.posts import (
    MERGE_DELETE_SET,
    MERGE_DELETE_WHEN,
    MERGE_INSERT_VALUES,
    MERGE_ON,
    MERGE_UPDATE_SET,
    MERGE_UPDATE_WHEN,
    POSTS,
    latest_per_post,
    plan_scoring,
    post_versions,
    to_posts_rows,
)
from tootlake.silver.quarantine import POSTS_QUARANTINE, PROCESSING_ERROR, quarantine, with_rule_failures
from tootlake.silver.schema import POSTS_SCHEMA, QUARANTINE_SCHEMA
from tootlake.silver.scoring import Scorer, apply_scoring, score_threat, scorer_coverage
from tootlake.silver.timestamps import spark_literal

if TYPE_CHECKING:
    from tootlake.pipelines.quality.guard import Guard

logger = logging.getLogger(__name__)

BRONZE_TABLE = POSTS_RAW.name
POSTS_TABLE = POSTS.name
QUARANTINE_TABLE = POSTS_QUARANTINE.name
TXN_APP_ID_FILE = "tootlake_txn_app_id"
# A quarantined record's identity: its bronze position and bytes (null-safe). Every writer into the
# quarantine (silver's rules and poison records, DQ drop rules, the sync's rejects) dedupes on it.
QUARANTINE_IDENTITY = ("bronze_partition", "bronze_offset", "value")
BROADCAST_KEYS_MAX = 100_000  # batch keys broadcast to the scoring plan's semi-join up to this many rows
LISTED_KEYS_MAX = 20_000  # up to this many posts in a batch, lookups and MERGE name the keys (file pruning)


class SilverError(RuntimeError):
    """A precondition of the silver job is not met; the message says what to do."""


# --- scoring with the real models ------------------------------------------------------------------
class ModelScorer:
    """Threat (ONNX, mapInArrow, one session per Python worker) + sentiment (MLlib PipelineModel on the
    English encoder's embedding; for the languages models/coverage.json routes to it, the multilingual
    encoder's sentiment head)."""

    def __init__(
        self,
        spark: SparkSession,
        threat_path: str | None = None,
        sentiment_path: str | None = None,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
        sentiment: bool = True,
        multilingual_path: str | None = None,
    ) -> None:
        from tootlake.models.coverage import load_coverage
        from tootlake.models.threat import artifact_version, get_threat_model

        self.threat_path = threat_path
        self.batch_size = batch_size
        self.intra_op_threads = intra_op_threads or default_intra_op_threads(spark)
        # Loading on the driver too gives the version (and fails early, with what to do, if missing).
        self.threat_model_version = get_threat_model(threat_path).model_version
        self.sentiment_model = None
        self.sentiment_model_version: str | None = None
        # The languages each model is trusted on (models/coverage.json): other posts stay unscored on purpose.
        self.threat_languages = _checked(load_coverage("threat"), self.threat_model_version).languages
        self.sentiment_languages: frozenset[str] | None = None
        self.multilingual_path: str | None = None
        self.multilingual_languages: frozenset[str] = frozenset()
        if sentiment:
            from tootlake.models.sentiment import load_sentiment_model, model_version

            self.sentiment_model = load_sentiment_model(spark, sentiment_path)
            self.sentiment_model_version = model_version(sentiment_path)
            coverage = load_coverage("sentiment")
            if coverage.multilingual:
                from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR

                both = coverage.multilingual & self.threat_languages
                if both:  # its posts would need the English encoder for threat anyway
                    raise SilverError("models/coverage.json: sentiment.multilingual_languages "
                                      f"{sorted(both)} are covered by the threat model too: score them "
                                      "with MLlib instead")
                self.multilingual_path = multilingual_path or str(DEFAULT_ARTIFACT_DIR)
                # only its version here: the workers load it (a session holds ~420 MB)
                head = artifact_version(self.multilingual_path)
                # one version for the pair: a change of either re-scores the posts (plan_scoring)
                self.sentiment_model_version = f"{self.sentiment_model_version}+{head}"
                self.multilingual_languages = coverage.multilingual
            self.sentiment_languages = _checked(coverage, self.sentiment_model_version).languages

    def score(self, df: DataFrame) -> DataFrame:
        if not self.multilingual_languages:
            return self._score_english(df)
        from tootlake.silver.coverage import covered
        from tootlake.silver.scoring import THREAT_FIELDS, score_sentiment_head

        # Languages the multilingual head covers skip the English encoder (their threat columns stay null:
        # the threat model does not cover them, apply_scoring says so in scoring_note).
        routed = covered(F.col("language"), self.multilingual_languages)
        english = self._score_english(df.where(~routed))
        other = score_sentiment_head(df.where(routed), self.multilingual_path, self.batch_size,
                                     self.intra_op_threads).withColumns({
            **{f.name: F.lit(None).cast(f.dataType) for f in THREAT_FIELDS},
            "sentiment_model_version": F.lit(self.sentiment_model_version),
        })
        return english.unionByName(other.select(*english.columns))

    def _score_english(self, df: DataFrame) -> DataFrame:
        from tootlake.models.sentiment import uses_encoder  # pyspark.ml: not imported for `tootlake --help`

        # The sentiment pipeline reads the encoder's embedding; the threat pass computes it in the same run.
        out = score_threat(df, self.threat_path, self.batch_size, self.intra_op_threads,
                           with_embedding=uses_encoder(self.sentiment_model))
        if self.sentiment_model is None:
            return out.withColumns({"sentiment_label": F.lit(None).cast("string"),
                                    "sentiment_score": F.lit(None).cast("double"),
                                    "sentiment_model_version": F.lit(None).cast("string")})
        from tootlake.models.sentiment import score_sentiment

        scored = score_sentiment(self.sentiment_model, out)
        return scored.withColumn("sentiment_model_version", F.lit(self.sentiment_model_version))


def _checked(coverage, version: str | None):
    """The coverage, with a warning when it was measured on another model version than the loaded one."""
    if coverage.model_version and coverage.model_version != version:
        logger.warning(f"[silver] the {coverage.model} coverage ({sorted(coverage.languages)}) was measured "
                       f"on {coverage.model_version}, not on the loaded {version}: re-measure it "
                       "(`tootlake models evaluate ... --language all`) and update models/coverage.json")
    return coverage


def default_intra_op_threads(spark: SparkSession) -> int:
    """onnxruntime threads per Python worker: cores / concurrent tasks (never oversubscribe the CPU)."""
    return max(1, (os.cpu_count() or 1) // max(1, spark.sparkContext.defaultParallelism))


# --- the micro-batch ------------------------------------------------------------------------------
@dataclass
class SilverStats:
    batches: int = 0
    bronze_rows: int = 0
    quarantined: int = 0
    merged: int = 0  # distinct posts offered to the MERGE
    inserted: int = 0
    updated: int = 0
    scored: int = 0
    isolated: int = 0  # poison records found by bisecting a failed batch (also counted in quarantined)
    seconds: float = 0.0
    per_batch: list[dict] = field(default_factory=list)


@dataclass
class SilverBatchWriter:
    """The foreachBatch function: pure transforms from tootlake.silver, then the two idempotent writes."""

    settings: Settings
    scorer: Scorer | None
    txn_app_id: str
    clock: Any = None  # None: the real clock (`now()`); tests pass a fixed one
    stats: SilverStats = field(default_factory=SilverStats)
    dq: Any = None  # a quality.guard.Guard: rules counted per batch, fail stops before the writes
    dq_error: BaseException | None = None  # kept so run_silver raises it, not Spark's wrapped copy
    use_txn: bool = True  # Delta txn ids on the quarantine append (off for the parts of an isolated batch)

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    def rules_now(self) -> Column:
        """The instant the quarantine rules judge against, for a stream's plan: each micro-batch's trigger
        time (`current_timestamp()` in a stream), or the fixed clock a test set."""
        return F.current_timestamp() if self.clock is None else spark_literal(self.clock())

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if "rules" not in batch.columns:  # a plain bronze DataFrame (a test, a bench), not the stream's
            batch = judge(batch, self.now(), self.settings)
        try:
            write_silver_batch(self, batch, batch_id)
        except Exception as exc:
            if self.dq_error is not None or not is_record_level(exc):
                raise  # a fail rule, or the machine's fault: retried by the supervisor, never quarantined
            isolate_poison(self, batch, batch_id, exc)


def isolate_poison(ctx: SilverBatchWriter, batch: DataFrame, batch_id: int, error: BaseException) -> None:
    """The batch failed on something record-level: bisect it, commit every record that goes through
    (idempotent writes, so parts may be re-attempted), quarantine the poison with the error text."""
    spark = batch.sparkSession
    at = ["bronze_partition", "bronze_offset"]
    batch = batch.persist()
    try:
        positions = sorted(tuple(r) for r in batch.select(*at).collect())
        logger.info(f"[silver] batch {batch_id} failed on a record-level error; isolating it among "
                    f"{len(positions)} records: {error_text(error)}")
        part_ctx = replace(ctx, dq=None, stats=SilverStats(), use_txn=False)

        def attempt(part) -> None:
            wanted = spark.createDataFrame(list(part), "bronze_partition int, bronze_offset long")
            part_batch = batch.join(F.broadcast(wanted), at, "left_semi")
            write_silver_batch(part_ctx, part_batch, batch_id)

        poisoned = bisect(positions, attempt, failed_with=error)
        errors = {position: error_text(exc) for position, exc in poisoned}
        reasons = spark.createDataFrame([(p, o, r) for (p, o), r in errors.items()],
                                        "bronze_partition int, bronze_offset long, reason string")
        poison = batch.drop("rules", "reason").join(F.broadcast(reasons), at).select(
            "key", "value", F.array(F.lit(PROCESSING_ERROR)).alias("rules"), "reason",
            "bronze_partition", "bronze_offset")
        append_quarantine(Lake(ctx.settings, spark), quarantine(poison, spark_literal(ctx.now())))
    finally:
        batch.unpersist()
    for name in ("bronze_rows", "quarantined", "merged", "inserted", "updated", "scored"):
        setattr(ctx.stats, name, getattr(ctx.stats, name) + getattr(part_ctx.stats, name))
    ctx.stats.batches += 1
    ctx.stats.quarantined += len(poisoned)
    ctx.stats.isolated += len(poisoned)
    logger.info(f"[silver] batch {batch_id}: isolated {len(poisoned)} poison record(s) into the quarantine "
                f"(rule {PROCESSING_ERROR}); {len(positions) - len(poisoned)} records went through")


def append_quarantine(lake: Lake, rows: DataFrame, txn: tuple[str, int] | None = None) -> None:
    """The one writer into silver/posts_quarantine: appends the records it does not have yet (same
    QUARANTINE_IDENTITY, null-safe: a Kafka record with a null value is quarantined once), so a re-read of
    bronze from a fresh checkpoint or a re-attempted part of a batch is a no-op; `txn` makes a replayed
    micro-batch commit nothing. Only the bronze offsets the rows span are read: quarantine files are
    written batch by batch in offset order, so their statistics let Delta skip every other file."""
    lake.append_unseen(QUARANTINE_TABLE, rows, QUARANTINE_IDENTITY, txn, skip_by="bronze_offset")


def write_silver_batch(ctx: SilverBatchWriter, batch: DataFrame, batch_id: int) -> None:
    with BatchFrames(batch.sparkSession) as frames:
        _write_silver_batch(ctx, batch, batch_id, frames)


def _write_silver_batch(ctx: SilverBatchWriter, batch: DataFrame, batch_id: int, frames: BatchFrames) -> None:
    started = time.monotonic()
    steps: dict[str, float] = {}  # seconds per step of this batch (what a fixed per-batch cost is made of)

    last = [started]

    def lap(name: str) -> None:
        steps[name] = round(time.monotonic() - last[0], 2)
        last[0] = time.monotonic()

    spark = batch.sparkSession
    now = ctx.now()
    settings = ctx.settings
    lake = Lake(settings, spark)
    # Each step's result is materialised (a local checkpoint cuts the lineage: the next step plans against
    # a one-node plan instead of re-analysing the whole parse -> rules -> dedupe -> lookup tree, which cost
    # seconds of driver time per batch whatever its size). The batch comes judged (see start_silver_query).
    judged = frames.keep(batch)
    # One pass over the materialised batch gives both counts (with DQ on, every rule's count in the same
    # pass; a fail rule raises here, before either write).
    counts = [F.count(F.lit(1)).alias("n"), F.count(F.when(F.size("rules") > 0, 1)).alias("bad"),
              # the batch's posts, for lookups in silver/posts that file statistics can prune
              F.collect_set(F.when(F.size("rules") == 0, F.col("post_id"))).alias("keys")]
    if ctx.dq is not None and ctx.dq.enabled:
        from tootlake.pipelines.quality.guard import DataQualityError, check_silver_batch

        try:
            totals = check_silver_batch(ctx.dq, judged, now, settings, batch_id, counts)
        except DataQualityError as exc:
            ctx.dq_error = exc
            raise
    else:
        totals = judged.agg(*counts).first()
    bronze_rows, quarantined, keys = int(totals["n"]), int(totals["bad"]), totals["keys"]
    lap("parse_and_rules")
    # Within one checkpoint the txn id makes a replayed batch a no-op (parts of an isolated batch
    # write without it: they share the batch id). Nothing to quarantine: no commit at all.
    if quarantined:
        append_quarantine(lake, quarantine(judged, spark_literal(now)),
                          (ctx.txn_app_id, batch_id) if ctx.use_txn else None)
    lap("quarantine_append")

    small = bronze_rows <= settings.silver_small_batch_rows
    if small:
        # One partition from here on: every window, distinct and aggregate below is satisfied by it, so
        # the plan has no shuffle (each costs a Spark job of ~0.3-0.7 s, whatever the rows), and the
        # posts append writes one file.
        judged = judged.coalesce(1)
    # Only the batch's posts. Listed as literals, silver's file statistics on post_id skip every file that
    # holds none of them (Mastodon ids grow with time, so a live batch touches the newest files and the
    # files of the old posts it edits or deletes): the lookup costs what the batch touches, not the lake.
    # A batch with more keys than that (a first run over a backlog) uses a semi-join instead.
    listed = len(keys) <= LISTED_KEYS_MAX
    if listed:
        current = lake.read(POSTS_TABLE).where(F.col("post_id").isin(keys))
    else:
        batch_keys = judged.where(F.size("rules") == 0).select("post_id").distinct()
        if bronze_rows <= BROADCAST_KEYS_MAX:  # a first batch over a large backlog must not be broadcast
            batch_keys = F.broadcast(batch_keys)
        current = lake.read(POSTS_TABLE).join(batch_keys, "post_id", "left_semi")
    if small:  # at most the batch's posts: joined to the batch without shuffling it
        current = F.broadcast(current)
    versions = post_versions(judged)
    if small:  # a Python UDF's output forgets the single partition: say it again (no shuffle)
        versions = versions.coalesce(1)
    # Materialised once: apply_scoring splits it three ways (kept, scored, declined) and each branch
    # would otherwise re-run the text UDF, the dedupe window and the lookup in silver.
    planned = plan_scoring(
        latest_per_post(versions), current,
        ctx.scorer.threat_model_version if ctx.scorer else None,
        ctx.scorer.sentiment_model_version if ctx.scorer else None,
        retry_failed=ctx.scorer is not None,
        coverage=scorer_coverage(ctx.scorer),
    )
    if not small:
        # Adaptive execution packs a few thousand posts into one shuffle partition (they weigh a few MB):
        # the models would then run on one core. One partition per core for the scoring instead.
        planned = planned.repartition(spark.sparkContext.defaultParallelism)
    planned = frames.keep(planned)
    lap("plan")
    # Materialised once: MERGE reads its source twice and must not run the models twice.
    rows = frames.keep(to_posts_rows(apply_scoring(planned, ctx.scorer), spark_literal(now)))
    lap("score")
    totals = rows.agg(F.count(F.lit(1)).alias("n"),
                      F.count(F.when(F.col("needs_scoring"), 1)).alias("scored"),
                      F.count(F.when(~F.col("is_new_post"), 1)).alias("existing")).first()
    offered = int(totals["n"])
    scored = int(totals["scored"]) if ctx.scorer is not None else 0  # no models: nothing scored
    if int(totals["existing"]) == 0 and ctx.use_txn:
        # Only posts silver has never seen (the usual live batch): a plain append, made idempotent
        # by its Delta txn id, costs a fraction of a MERGE (which must look for matches first).
        lake.append(POSTS_TABLE, rows.select(*[f.name for f in POSTS_SCHEMA.fields]),
                    (f"{ctx.txn_app_id}-posts", batch_id))
        result = {"num_inserted_rows": offered, "num_updated_rows": 0, "write": "append"}
    else:
        # The key list on the target side lets MERGE skip the files that cannot match (see the lookup).
        on = F.expr(MERGE_ON) & F.col("t.post_id").isin(keys) if listed else MERGE_ON
        metrics = (
            lake.merge(POSTS_TABLE, rows, on)
            .whenMatchedUpdate(condition=MERGE_DELETE_WHEN, set=MERGE_DELETE_SET)
            .whenMatchedUpdate(condition=MERGE_UPDATE_WHEN, set=MERGE_UPDATE_SET)
            .whenNotMatchedInsert(values=MERGE_INSERT_VALUES)
            .execute()
        )
        result = metrics.first().asDict() if metrics is not None else {}
    lap("write_posts")
    s = ctx.stats
    s.batches += 1
    s.bronze_rows += bronze_rows
    s.quarantined += quarantined
    s.merged += offered
    s.scored += scored
    s.inserted += int(result.get("num_inserted_rows", 0) or 0)
    s.updated += int(result.get("num_updated_rows", 0) or 0)
    elapsed = time.monotonic() - started
    s.seconds += elapsed
    s.per_batch.append({"batch_id": batch_id, "bronze_rows": bronze_rows, "quarantined": quarantined,
                        "offered": offered, "scored": scored, **result, "seconds": round(elapsed, 2),
                        "steps": steps})
    logger.info(f"[silver] batch {batch_id}: {bronze_rows} bronze rows -> {quarantined} quarantined, "
                f"{offered} posts offered ({scored} scored), "
                f"inserted {result.get('num_inserted_rows', '?')}, "
                f"updated {result.get('num_updated_rows', '?')} ({result.get('write', 'merge')}) "
                f"in {elapsed:.1f} s "
                f"({', '.join(f'{k} {v}' for k, v in steps.items())})")


# --- set-up and the streaming query ----------------------------------------------------------------
def ensure_tables(spark: SparkSession, settings: Settings) -> None:
    """Create the silver tables with their contract schema when they do not exist yet.

    silver/posts is born with the change data feed on: sync and the gold stream read it, and turning it
    on later is an ALTER that can race a running MERGE.
    """
    lake = Lake(settings, spark)
    lake.create(POSTS_TABLE, POSTS_SCHEMA, change_feed=True)
    lake.create(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    add_missing_columns(lake, POSTS_TABLE, POSTS_SCHEMA)


def add_missing_columns(lake: Lake, name: str, schema) -> list[str]:
    """Add the contract's columns an older table lacks (e.g. silver/posts.scoring_note), nullable, at the
    end; returns their names. Rows written before read them as null."""
    have = {column.lower() for column in lake.read(name).columns}
    missing = [f for f in schema.fields if f.name.lower() not in have]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        lake.spark.sql(f"ALTER TABLE delta.`{lake.location(name)}` ADD COLUMNS ({columns})")
        logger.info(f"[silver] {name}: added column(s) {[f.name for f in missing]}")
    return [f.name for f in missing]


def txn_app_id(checkpoint: Path | str, settings: Settings | None = None) -> str:
    """A writer id that lives and dies with the checkpoint: a fresh checkpoint (batch ids from 0 again)
    gets a fresh id, so Delta never mistakes its batches for ones it already has. An s3a:// checkpoint
    needs `settings` (to reach the store)."""
    if is_object_store(checkpoint):
        from tootlake.pipelines import storage

        if settings is None:
            raise ValueError("txn_app_id of an s3a:// checkpoint needs the settings")
        location = f"{checkpoint}/{TXN_APP_ID_FILE}"
        if not storage.is_file(settings, location):
            storage.write_text(settings, location, f"tootlake-silver-{uuid.uuid4()}\n")
        return storage.read_text(settings, location).strip()
    checkpoint = Path(checkpoint)
    checkpoint.mkdir(parents=True, exist_ok=True)
    path = checkpoint / TXN_APP_ID_FILE
    if not path.exists():
        path.write_text(f"tootlake-silver-{uuid.uuid4()}\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def configure_spark(spark: SparkSession, settings: Settings) -> None:
    # Arrow batches of 1-2k rows: big enough to amortise the hop to Python, small enough to stream.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.silver_arrow_batch_size))
    # Delta rebuilds table state with 50 tasks by default: far too many for small local tables, and
    # each micro-batch reads three tables' state.
    spark.conf.set("spark.databricks.delta.snapshotPartitions", str(spark.sparkContext.defaultParallelism))


def judge(bronze: DataFrame, now: datetime | Column, settings: Settings) -> DataFrame:
    """Bronze records parsed and judged by the quarantine rules (one row per record, `rules` filled)."""
    return with_rule_failures(parse_records(bronze), now, settings.silver_max_content_chars,
                              timedelta(seconds=settings.silver_future_tolerance_s))


def start_silver_query(
    spark: SparkSession,
    settings: Settings,
    writer: SilverBatchWriter,
    trigger: str = AVAILABLE_NOW,
    max_files_per_trigger: int | None = None,
):
    lake = Lake(settings, spark)
    if not lake.exists(BRONZE_TABLE):
        raise SilverError(f"no bronze table at {lake.location(BRONZE_TABLE)}: run `tootlake bronze` first")
    # Parsing and the rules are part of the stream's plan, built once: built for each micro-batch they
    # cost ~1.5 s of driver time (thousands of Python -> JVM calls) whatever the batch's size.
    stream = judge(lake.read_stream(BRONZE_TABLE, max_files_per_trigger=max_files_per_trigger),
                   writer.rules_now(), settings)
    query = (
        stream.writeStream.queryName("silver_posts")
        .foreachBatch(writer)
        .option("checkpointLocation", settings.checkpoint_uri("silver"))
    )
    return apply_trigger(query, trigger).start()


def build_scorer(spark: SparkSession, settings: Settings, scoring: bool = True) -> Scorer | None:
    if not scoring:
        return None
    return ModelScorer(
        spark,
        threat_path=_opt_path(settings.threat_model_dir),
        sentiment_path=_opt_path(settings.sentiment_model_dir),
        batch_size=settings.silver_threat_batch_size,
        intra_op_threads=settings.silver_threat_threads or None,
    )


def _opt_path(value: object) -> str | None:
    return str(value) if value else None


class Scoring(Enum):
    """How `run_silver` gets its scorer when it is not handed one."""

    MODELS = "models"  # load the threat and sentiment models; a missing one fails, saying what to do
    MODELS_IF_AVAILABLE = "models-if-available"  # the same, but carry on without scoring when one is missing


def silver_writer(
    settings: Settings,
    spark: SparkSession,
    scorer: Scorer | Scoring | None = Scoring.MODELS_IF_AVAILABLE,
    clock: Any = None,
    dq: Guard | FromSettings | None = FROM_SETTINGS,
) -> SilverBatchWriter:
    """Set up silver (Spark settings, tables, models, rules) and return its foreachBatch function; see
    `run_silver` for the arguments."""
    configure_spark(spark, settings)
    ensure_tables(spark, settings)
    if scorer is Scoring.MODELS_IF_AVAILABLE:
        try:
            scorer = build_scorer(spark, settings)
        except Exception as exc:  # noqa: BLE001 - ModelLoadError, or the sentiment artifact missing
            logger.warning(f"[silver] WARNING: scoring disabled, a model is not available: {exc}")
            scorer = None
    elif scorer is Scoring.MODELS:
        scorer = build_scorer(spark, settings)
    writer = SilverBatchWriter(settings, scorer, txn_app_id(settings.checkpoint_uri("silver"), settings))
    if clock is not None:
        writer.clock = clock
    if dq is FROM_SETTINGS:
        from tootlake.pipelines.quality.guard import Guard

        dq = (Guard(settings, "silver", clock=writer.now, stream_id=writer.txn_app_id)
              if settings.dq_enabled else None)
    writer.dq = dq
    return writer


def run_silver(
    settings: Settings,
    spark: SparkSession,
    trigger: str = AVAILABLE_NOW,
    scorer: Scorer | Scoring | None = Scoring.MODELS_IF_AVAILABLE,
    max_files_per_trigger: int | None = None,
    clock: Any = None,
    dq: Guard | FromSettings | None = FROM_SETTINGS,
) -> dict:
    """Run the silver stream (available-now: until bronze is drained) and return what it did.

    `scorer`: a Scoring mode (load the models from THREAT_MODEL_DIR / SENTIMENT_MODEL_DIR, default the
    packaged artifacts), a Scorer (tests), or None (no scoring: rows get processing_status FAILED and are
    scored when next seen). `dq`: a quality.guard.Guard, FROM_SETTINGS (a Guard when DQ_ENABLED, else
    none) or None (no rules). A `fail` rule raises DataQualityError before the batch writes anything.
    """
    writer = silver_writer(settings, spark, scorer, clock, dq)
    scorer, dq = writer.scorer, writer.dq
    query = start_silver_query(spark, settings, writer, trigger, max_files_per_trigger)
    try:
        report = run_query(query, "silver", log=lambda _line: None)
    except Exception:
        if writer.dq_error is not None:  # the rule's message, not the JVM's stack trace
            raise writer.dq_error from None
        raise
    stats = writer.stats
    return {
        "batches": stats.batches,
        "bronze_rows": stats.bronze_rows,
        "quarantined": stats.quarantined,
        "posts_offered": stats.merged,
        "inserted": stats.inserted,
        "updated": stats.updated,
        "scored": stats.scored,
        "isolated": stats.isolated,
        "elapsed_s": round(report.elapsed_s, 1),
        "stopped_by_signal": report.stopped_by_signal,
        "threat_model_version": getattr(scorer, "threat_model_version", None),
        "sentiment_model_version": getattr(scorer, "sentiment_model_version", None),
        "dq_run_id": dq.run_id if dq is not None else None,
        "last_batch": stats.per_batch[-1] if stats.per_batch else None,  # with its seconds per step
    }


# --- what the demo prints -------------------------------------------------------------------------
def silver_summary(spark: SparkSession, settings: Settings) -> dict:
    """Counts of silver/posts (live, tombstones, by processing status, threat level, sentiment) and of
    silver/posts_quarantine (records, and records per failed rule)."""
    lake = Lake(settings, spark)
    posts, quarantined = lake.read(POSTS_TABLE), lake.read(QUARANTINE_TABLE)
    live = posts.where("NOT is_deleted")

    def dist(df: DataFrame, column: str) -> dict[str, int]:
        rows = df.groupBy(column).count().collect()
        return {str(r[column]): r["count"] for r in sorted(rows, key=lambda r: -r["count"])}

    return {
        "silver_rows": posts.count(),
        "live_posts": live.count(),
        "tombstones": posts.where("is_deleted").count(),
        "processing_status": dist(live, "processing_status"),
        "threat_level": dist(live, "threat_level"),
        "sentiment": dist(live, "sentiment_label"),
        # posts left unscored on purpose: language outside a model's coverage (models/coverage.json)
        "scoring_note": dist(live.where("scoring_note IS NOT NULL"), "scoring_note")
        if "scoring_note" in live.columns else {},
        "quarantine_rows": quarantined.count(),
        "quarantine_by_rule": dist(quarantined.select(F.explode("rules").alias("rule")), "rule"),
    }


def format_summary(summary: dict) -> str:
    def line(title: str, counts: dict[str, int]) -> str:
        return f"  {title:<20}" + (", ".join(f"{k} {v}" for k, v in counts.items()) or "-")

    return "\n".join([
        f"  silver/posts         {summary['silver_rows']} rows ({summary['live_posts']} live, "
        f"{summary['tombstones']} deleted)",
        line("processing status", summary["processing_status"]),
        line("threat level", summary["threat_level"]),
        line("sentiment", summary["sentiment"]),
        line("unscored on purpose", summary.get("scoring_note", {})),
        f"  quarantine           {summary['quarantine_rows']} records",
        line("  by rule", summary["quarantine_by_rule"]),
    ])

def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="silver", description=__doc__)
    parser.description = ("Stream bronze/posts_raw into silver/posts (parse, quarantine, UTC timestamps, "
                          "latest edit wins, threat + sentiment scores) and silver/posts_quarantine.")
    parser.add_argument("--trigger", type=parse_trigger, default=AVAILABLE_NOW,
                        help="'available-now' (default: process what bronze holds, then exit) or an interval "
                             "such as '30 seconds' (run until Ctrl-C / SIGTERM)")
    parser.add_argument("--max-files-per-trigger", type=int, default=None,
                        help="cap on bronze files per micro-batch (smaller, more frequent batches)")
    parser.add_argument("--no-scoring", action="store_true",
                        help="skip the models (rows get processing_status FAILED; scored when seen again)")
    parser.add_argument("--summary", action="store_true",
                        help="print the silver/quarantine summary at the end")
    return parser


def run(args: argparse.Namespace) -> int:
    from tootlake.models.sentiment import SentimentModelError
    from tootlake.models.threat import ModelLoadError
    from tootlake.pipelines.quality.guard import DataQualityError
    from tootlake.pipelines.quality.gx import after_job_run
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings, "tootlake-silver")
    try:
        report = run_silver(settings, spark, args.trigger, scorer=None if args.no_scoring else Scoring.MODELS,
                            max_files_per_trigger=args.max_files_per_trigger)
    except (SilverError, ModelLoadError, SentimentModelError) as exc:
        logger.error(f"[silver] {exc}")
        return 2
    except DataQualityError as exc:
        logger.error(f"[silver] {exc}")
        return 3
    print("[silver] done: " + json.dumps(report))
    after_job_run(settings, "silver", report.get("dq_run_id"))  # GX suites once per run, not per batch
    if args.summary:
        print(format_summary(silver_summary(spark, settings)))
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from tootlake.pipelines.storage import exit_process

    exit_process(main())
