"""silver.posts + silver.scoring: text, within-batch dedupe, score planning, tombstones, scoring step."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tootlake.silver.parse import parse_records
from tootlake.silver.posts import (
    CONTENT_COLUMNS,
    SCORE_COLUMNS,
    latest_per_post,
    plan_scoring,
    post_versions,
    to_posts_rows,
)
from tootlake.silver.quarantine import with_rule_failures
from tootlake.silver.schema import POSTS_SCHEMA
from tootlake.silver.scoring import apply_scoring

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")


def status(sid="1", content="<p>hello</p>", created="2023-10-20T15:55:35.889Z", edited=None, tags=()):
    return {"id": sid, "uri": f"https://x.test/s/{sid}", "url": f"https://x.test/@a/{sid}",
            "created_at": created, "edited_at": edited, "language": "en", "visibility": "public",
            "sensitive": False, "spoiler_text": "", "content": content, "reblog": None,
            "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
            "account": {"id": "9", "acct": "a", "username": "a", "display_name": "A"},
            "tags": [{"name": t} for t in tags]}


def record(st, event="status"):
    return json.dumps({"schema_version": 1, "event": event, "instance": "x.test",
                       "fetched_at": "2023-10-25T00:00:00Z", "status": st})


def versions(spark, records: list[tuple[str, str]]) -> DataFrame:
    """records: (post id, value) in bronze offset order."""
    ts = datetime(2023, 10, 25, 0, 0, 1)
    rows = [(f"x.test/{sid}", value, "t", 0, offset, ts, ts, ts.date())
            for offset, (sid, value) in enumerate(records)]
    judged = with_rule_failures(parse_records(spark.createDataFrame(rows, BRONZE_DDL)), NOW)
    return post_versions(judged)


class FakeScorer:
    """Scores by a rule on the text, so tests can tell a fresh score from a carried one."""

    threat_model_version = "threat-v2"
    sentiment_model_version = "sent-v1"

    def score(self, df):
        return df.withColumns({
            "threat_label": F.when(F.col("text").contains("hate"), "hate").otherwise("none"),
            "threat_score": F.lit(0.9),
            "threat_level": F.when(F.col("text").contains("hate"), "HIGH").otherwise("NONE"),
            "contains_hate_speech": F.col("text").contains("hate").cast("int"),
            "threat_model_version": F.lit(self.threat_model_version),
            "sentiment_label": F.when(F.col("text").contains("fail"), None).otherwise(F.lit("neutral")),
            "sentiment_score": F.lit(0.5),
            "sentiment_model_version": F.lit(self.sentiment_model_version),
        })


def test_text_hashtags_and_lineage(spark):
    content = ('<p>Hi &amp; bye<br>see <a href="https://x.test/tags/Rust" class="mention hashtag">'
               '#<span>Rust</span></a> and #Python</p>')
    row = versions(spark, [("1", record(status(content=content, tags=["Rust"])))]).first()
    assert row.text == "Hi & bye\nsee #Rust and #Python"
    assert row.text_length == len(row.text)
    assert list(row.hashtags) == ["rust", "python"]
    assert (row.post_id, row.platform, row.is_deleted) == ("x.test/1", "mastodon", False)
    assert row.bronze_offset == 0
    assert row.version_at == datetime(2023, 10, 20, 15, 55, 35, 889000)


def test_latest_edit_wins_then_offset_and_delete_is_final(spark):
    df = versions(spark, [
        ("1", record(status("1", "<p>v2</p>", edited="2023-10-21T00:00:00Z"), "status.update")),
        ("1", record(status("1", "<p>v1</p>"))),  # older version, later offset: loses
        ("2", record(status("2", "<p>a</p>"))),
        ("2", record(status("2", "<p>a again</p>"))),  # same version: the later offset wins
        ("3", record(status("3", "<p>gone soon</p>", edited="2023-10-22T00:00:00Z"), "status.update")),
        ("3", record({"id": "3"}, "delete")),
        ("3", record(status("3", "<p>late replay</p>", edited="2023-10-23T00:00:00Z"), "status.update")),
    ])
    got = {r.post_id: r for r in latest_per_post(df).collect()}
    assert len(got) == 3
    assert got["x.test/1"].text == "v2"
    assert got["x.test/2"].text == "a again" and got["x.test/2"].bronze_offset == 3
    assert got["x.test/3"].is_deleted and got["x.test/3"].event_kind == "delete"
    assert got["x.test/3"].deleted_at == datetime(2023, 10, 25)


def _stored(spark, rows):
    ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in POSTS_SCHEMA.fields)
    empty = spark.createDataFrame([], ddl)
    data = [{**{f.name: None for f in POSTS_SCHEMA.fields}, **r} for r in rows]
    return spark.createDataFrame(data, empty.schema) if data else empty


def test_plan_scoring_scores_only_what_changed(spark):
    base = {"created_at": datetime(2023, 10, 20, 15, 55, 35, 889000), "is_deleted": False,
            "updated_at": datetime(2023, 10, 25), "threat_label": "none", "threat_score": 0.7,
            "threat_level": "NONE", "contains_hate_speech": 0, "sentiment_label": "positive",
            "sentiment_score": 0.6, "sentiment_model_version": "sent-v1"}
    current = _stored(spark, [
        {**base, "post_id": "x.test/1", "text": "same", "threat_model_version": "threat-v2",
         "processing_status": "SUCCESS"},
        {**base, "post_id": "x.test/2", "text": "old text", "threat_model_version": "threat-v2",
         "processing_status": "SUCCESS"},
        {**base, "post_id": "x.test/3", "text": "same", "threat_model_version": "threat-v1",
         "processing_status": "SUCCESS"},
        {**base, "post_id": "x.test/4", "text": "same", "threat_model_version": "threat-v2",
         "processing_status": "FAILED"},
        {**base, "post_id": "x.test/5", "text": "newer", "threat_model_version": "threat-v2",
         "processing_status": "SUCCESS", "edited_at": datetime(2024, 1, 1)},
        {**base, "post_id": "x.test/6", "text": None, "is_deleted": True},
    ])
    incoming = versions(spark, [(str(i), record(status(str(i), "<p>same</p>"))) for i in range(1, 8)])
    planned = plan_scoring(latest_per_post(incoming), current, "threat-v2", "sent-v1")
    got = {r.post_id: r for r in planned.collect()}
    needs = {pid: r.needs_scoring for pid, r in got.items()}
    assert needs == {"x.test/1": False,  # unchanged: keep the stored scores
                     "x.test/2": True,  # text changed
                     "x.test/3": True,  # threat model version changed
                     "x.test/4": True,  # last scoring failed
                     "x.test/5": False,  # older than the stored version: MERGE ignores it
                     "x.test/6": False,  # tombstone: final
                     "x.test/7": True}  # new post
    assert got["x.test/1"].threat_score == 0.7 and got["x.test/1"].processing_status == "SUCCESS"
    assert got["x.test/2"].threat_score is None
    # only post 7 is unknown to silver: a batch of such posts may be appended instead of MERGEd
    assert {pid for pid, r in got.items() if r.is_new_post} == {"x.test/7"}
    # without models this run, a failed row is not retried (it would only be marked FAILED again)
    no_retry = plan_scoring(latest_per_post(incoming), current, "threat-v2", "sent-v1", retry_failed=False)
    assert no_retry.where("post_id = 'x.test/4'").first().needs_scoring is False


def test_apply_scoring_and_rows_in_contract_order(spark):
    incoming = versions(spark, [
        ("1", record(status("1", "<p>some hate here</p>"))),
        ("2", record(status("2", "<p>please fail</p>"))),
        ("3", record({"id": "3"}, "delete")),
    ])
    planned = plan_scoring(latest_per_post(incoming), _stored(spark, []), "threat-v2", "sent-v1")
    rows = to_posts_rows(apply_scoring(planned, FakeScorer()), F.lit(datetime(2026, 1, 1)).cast("timestamp"))
    assert rows.columns[: len(POSTS_SCHEMA.fields)] == [f.name for f in POSTS_SCHEMA.fields]
    got = {r.post_id: r for r in rows.collect()}
    assert (got["x.test/1"].threat_label, got["x.test/1"].contains_hate_speech) == ("hate", 1)
    assert got["x.test/1"].processing_status == "SUCCESS"
    assert got["x.test/2"].processing_status == "FAILED"  # the sentiment model gave no label
    tomb = got["x.test/3"]
    assert tomb.is_deleted and tomb.updated_at == datetime(2026, 1, 1)
    assert all(getattr(tomb, c) is None for c in CONTENT_COLUMNS + SCORE_COLUMNS)


def test_without_a_scorer_rows_are_marked_failed(spark):
    incoming = versions(spark, [("1", record(status("1")))])
    planned = plan_scoring(latest_per_post(incoming), _stored(spark, []), None, None)
    row = apply_scoring(planned, None).first()
    assert row.processing_status == "FAILED" and row.threat_label is None
