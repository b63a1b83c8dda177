"""Silver end to end on a real bronze Delta table: real statuses plus duplicates, edits, deletes and
malformed records -> exact silver/posts and quarantine counts, the right surviving versions, replay is a
no-op, SIGKILL + restart gives the same result, and Spark-path threat labels equal onnxruntime's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tootlake.bronze.records import build_envelope, encode_record
from tootlake.pipelines.jobs.silver import POSTS_TABLE, QUARANTINE_TABLE, run_silver
from tootlake.silver.posts import SCORE_COLUMNS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "mastodon.social"
FETCHED = datetime(2023, 10, 24, 12, 0, tzinfo=UTC)
BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")


class RuleScorer:
    """A deterministic stand-in for the models (the real ones are checked in the last test)."""

    threat_model_version = "rule-threat-1"
    sentiment_model_version = "rule-sentiment-1"

    def score(self, df):
        long_text = F.length("text") > 200
        return df.withColumns({
            "threat_label": F.when(long_text, "offensive").otherwise("none"),
            "threat_score": F.lit(0.75),
            "threat_level": F.when(long_text, "LOW").otherwise("NONE"),
            "contains_hate_speech": F.lit(0),
            "threat_model_version": F.lit(self.threat_model_version),
            "sentiment_label": F.lit("neutral"),
            "sentiment_score": F.lit(0.5),
            "sentiment_model_version": F.lit(self.sentiment_model_version),
        })


def _statuses(shared_data: Path) -> list[dict]:
    out = []
    for folder, n in (("mastodon-public-timeline-2023", 150), ("mastodon-mastodonpy-serialized-2023", 32)):
        with open(shared_data / folder / "statuses.dev.jsonl", encoding="utf-8") as handle:
            out += [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
    return out


def _record(event: str, status: dict) -> tuple[str, str]:
    key, value = encode_record(build_envelope(event, INSTANCE, FETCHED, status))
    return key.decode(), value.decode()


def _scenario(shared_data: Path):
    """Bronze files (one list of (key, value) per Delta commit) and what silver must end up with."""
    statuses = _statuses(shared_data)
    first = [_record("status", s) for s in statuses[:100]]
    second = [_record("status", s) for s in statuses[100:]]
    edited, deleted = statuses[:5], statuses[10:13]
    edits = []
    for i, s in enumerate(edited):
        # (every sample post was created before November 2023)
        newer = dict(s, content=f"<p>edited version {i}</p>", edited_at=f"2023-11-0{i + 2}T08:00:00.000Z")
        older = dict(s, content=f"<p>stale version {i}</p>", edited_at="2023-11-01T23:59:00+00:00")
        edits += [_record("status.update", newer), _record("status.update", older)]  # newest first
    deletes = [_record("delete", {"id": s["id"]}) for s in deleted]
    deletes.append(_record("delete", {"id": "999"}))  # a post silver never saw: tombstone
    replays = first[20:40] + second[:10] + edits[:2]  # the producer sent these again
    late_after_delete = [_record("status", deleted[0])]  # must not resurrect the post
    malformed = [
        (f"{INSTANCE}/1", '{"schema_version": 1, "event": "status", "status": {'),
        (f"{INSTANCE}/2", json.dumps({"schema_version": 9, "event": "status", "instance": INSTANCE,
                                      "status": statuses[0]})),
        (f"{INSTANCE}/3", json.dumps({"schema_version": 1, "event": "status", "instance": INSTANCE,
                                      "status": dict(statuses[1], id=None)})),
        (f"{INSTANCE}/4", json.dumps({"schema_version": 1, "event": "status", "instance": INSTANCE,
                                      "status": {k: v for k, v in statuses[2].items()
                                                 if k != "created_at"}})),
        (f"{INSTANCE}/5", json.dumps({"schema_version": 1, "event": "status", "instance": INSTANCE,
                                      "status": dict(statuses[3], created_at="2099-01-01T00:00:00Z")})),
        (f"{INSTANCE}/6", json.dumps({"schema_version": 1, "event": "status", "instance": INSTANCE,
                                      "status": dict(statuses[4], content="<p>" + "x" * 60_000 + "</p>")})),
    ]
    files = [first, second + malformed[:3], edits + replays, deletes + malformed[3:], late_after_delete]
    keys = {k for k, _ in first + second}
    expected = {
        "silver_rows": len(keys) + 1,
        "tombstones": 4,
        "quarantine": len(malformed),
        "edited_text": {_record("status", s)[0]: f"edited version {i}" for i, s in enumerate(edited)},
        "deleted": {_record("status", s)[0] for s in deleted} | {f"{INSTANCE}/999"},
        "bronze_rows": sum(len(f) for f in files),
    }
    return files, expected


def _write_bronze(spark, path: Path, files) -> None:
    offset = 0
    ts = datetime(2023, 10, 24, 12, 0, 1)
    for records in files:
        rows = []
        for key, value in records:
            rows.append((key, value, "mastodon-raw-posts", 0, offset, ts, ts, ts.date()))
            offset += 1
        (spark.createDataFrame(rows, BRONZE_DDL).coalesce(1).write.format("delta").mode("append")
         .partitionBy("ingest_date").save(str(path)))


def _settings_for(settings, root: Path):
    return settings.model_copy(update={"lake_dir": root / "lake", "checkpoint_dir": root / "checkpoints"})


def _read(spark, s, table):
    return spark.read.format("delta").load(str(s.table_path(table)))


@pytest.fixture(scope="module")
def scenario(spark, settings, shared_data, tmp_path_factory):
    files, expected = _scenario(shared_data)
    s = _settings_for(settings, tmp_path_factory.mktemp("silver-e2e"))
    _write_bronze(spark, s.table_path("bronze.posts_raw"), files)
    clock = lambda: datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # noqa: E731
    report = run_silver(s, spark, scorer=RuleScorer(), max_files_per_trigger=1, clock=clock)
    return s, files, expected, report, clock


def test_counts_versions_and_tombstones(spark, scenario):
    s, _, expected, report, _ = scenario
    posts = _read(spark, s, POSTS_TABLE)
    quarantine = _read(spark, s, QUARANTINE_TABLE)
    assert report["batches"] == 5 and report["bronze_rows"] == expected["bronze_rows"]
    assert posts.count() == expected["silver_rows"]
    assert posts.select("post_id").distinct().count() == expected["silver_rows"]
    assert posts.where("is_deleted").count() == expected["tombstones"]
    assert {r.post_id for r in posts.where("is_deleted").collect()} == expected["deleted"]
    assert quarantine.count() == expected["quarantine"] == report["quarantined"]
    by_rule = {r.rule: r["count"] for r in
               quarantine.select(F.explode("rules").alias("rule")).groupBy("rule").count().collect()}
    assert by_rule == {"invalid_json": 1, "unknown_schema_version": 1, "missing_id": 1,
                       "missing_created_at": 1, "created_at_in_future": 1, "oversized_content": 1}
    edited = posts.where(F.col("post_id").isin(*expected["edited_text"]))
    texts = {r.post_id: r.text for r in edited.collect()}
    assert texts == expected["edited_text"]
    live = posts.where("NOT is_deleted")
    assert live.where("processing_status != 'SUCCESS' OR threat_label IS NULL").count() == 0
    tomb = posts.where("is_deleted").collect()
    assert all(r.text is None and r.content_html is None and r.threat_label is None for r in tomb)
    # timestamps from both source forms landed as UTC instants
    assert live.where("created_at IS NULL OR created_at < '2023-06-01'").count() == 0


def test_replaying_all_of_bronze_changes_nothing(spark, scenario, tmp_path):
    s, _, _, _, clock = scenario
    before = _read(spark, s, POSTS_TABLE).orderBy("post_id").collect()
    quarantined = _read(spark, s, QUARANTINE_TABLE).count()
    replay = s.model_copy(update={"checkpoint_dir": tmp_path / "fresh-checkpoint"})  # bronze read again
    report = run_silver(replay, spark, scorer=RuleScorer(), clock=clock)
    assert report["updated"] == 0 and report["inserted"] == 0 and report["scored"] == 0
    assert _read(spark, s, POSTS_TABLE).orderBy("post_id").collect() == before
    assert _read(spark, s, QUARANTINE_TABLE).count() == quarantined


def test_model_version_change_rescores_without_duplicates(spark, scenario, tmp_path):
    s, _, expected, _, clock = scenario

    class NewModel(RuleScorer):
        threat_model_version = "rule-threat-2"

    replay = s.model_copy(update={"checkpoint_dir": tmp_path / "fresh-checkpoint"})
    report = run_silver(replay, spark, scorer=NewModel(), clock=clock)
    posts = _read(spark, s, POSTS_TABLE)
    live = expected["silver_rows"] - expected["tombstones"]
    assert report["scored"] == live and report["updated"] == live and report["inserted"] == 0
    assert posts.count() == expected["silver_rows"]
    assert posts.where("NOT is_deleted AND threat_model_version != 'rule-threat-2'").count() == 0


def test_sigkill_mid_run_then_restart_gives_the_same_result(spark, settings, shared_data, tmp_path):
    files, expected = _scenario(shared_data)
    s = _settings_for(settings, tmp_path)
    _write_bronze(spark, s.table_path("bronze.posts_raw"), files)
    env = dict(os.environ, LAKE_DIR=str(s.path(s.lake_dir)), CHECKPOINT_DIR=str(s.path(s.checkpoint_dir)),
               TOOTLAKE_HOME=str(REPO_ROOT), SPARK_MASTER="local[2]", SPARK_SHUFFLE_PARTITIONS="2",
               SPARK_DRIVER_MEMORY="1g", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "tootlake.pipelines.jobs.silver", "--no-scoring",
           "--max-files-per-trigger", "1"]
    log = (tmp_path / "silver-killed.log").open("w")
    # Own process group: the kill takes the driver JVM down with the Python process, like a lost node.
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    commits = s.checkpoint_path("silver") / "commits"
    second_batch = s.checkpoint_path("silver") / "offsets" / "1"
    deadline = time.monotonic() + 900
    try:
        # Kill inside the second micro-batch: its offsets are logged (it has started), not committed.
        while time.monotonic() < deadline and proc.poll() is None and not second_batch.exists():
            time.sleep(0.2)
        output = (tmp_path / "silver-killed.log").read_text()[-2000:]
        assert proc.poll() is None, f"silver finished before it could be killed: {output}"
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (commits / "1").exists(), "the kill came after the second batch had finished"

    restart = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert restart.returncode == 0, restart.stdout[-2000:] + restart.stderr[-2000:]

    # The same result as an uninterrupted run: every post once, the right versions, nothing twice.
    posts = _read(spark, s, POSTS_TABLE)
    killed = posts.collect()
    assert len(killed) == expected["silver_rows"] == len({r.post_id for r in killed})
    assert {r.post_id for r in killed if r.is_deleted} == expected["deleted"]
    texts = {r.post_id: r.text for r in killed if r.post_id in expected["edited_text"]}
    assert texts == expected["edited_text"]
    assert all(r.processing_status == "FAILED" and r.threat_label is None for r in killed if not r.is_deleted)
    quarantine = _read(spark, s, QUARANTINE_TABLE)
    assert quarantine.count() == expected["quarantine"]
    assert quarantine.select("bronze_offset").distinct().count() == expected["quarantine"]
    # and the Delta log agrees: the restart re-ran the unfinished batch, it did not add a second copy
    assert len(list(commits.glob("[0-9]*"))) == len(files)


def test_spark_threat_labels_equal_onnxruntime(spark, shared_data):
    from tootlake.models.threat import DEFAULT_ARTIFACT_DIR, ModelLoadError, get_threat_model
    from tootlake.silver.scoring import score_threat

    try:
        model = get_threat_model()
    except ModelLoadError as exc:
        pytest.skip(f"threat model artifact not built yet ({DEFAULT_ARTIFACT_DIR}): {exc}")
    from tootlake.bronze.text import html_to_text

    texts = [html_to_text(s.get("content")) for s in _statuses(shared_data)][:150]
    texts += ["", None]
    direct_labels, direct_scores = model.predict(texts, batch_size=32)
    # Same batches on both paths (one partition, one Arrow batch, same batch size), so the results must be
    # identical, not merely close (batch independence itself is a unit test of the model).
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "i int, text string").coalesce(1)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1024")
    rows = sorted(score_threat(df, batch_size=32).collect(), key=lambda r: r.i)
    assert [r.threat_label for r in rows] == direct_labels
    assert [r.threat_score for r in rows] == pytest.approx(list(direct_scores), abs=1e-5)
    assert all(r.threat_model_version == model.model_version for r in rows)
    assert set(SCORE_COLUMNS) >= {"threat_label", "threat_score"}
