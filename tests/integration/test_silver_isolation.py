"""Poison-pill isolation in silver: a record that makes its micro-batch fail (a bug nobody foresaw) is
found by bisection and quarantined with the error text; its batch mates are committed; an infrastructure
error is raised, never quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from pyspark.sql import functions as F

from tootlake.bronze.records import build_envelope, encode_record
from tootlake.pipelines.jobs.isolation import bisect, is_record_level
from tootlake.pipelines.jobs.silver import POSTS_TABLE, QUARANTINE_TABLE, run_silver

pytestmark = pytest.mark.integration

BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")
CLOCK = lambda: datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # noqa: E731
POISON = "poison-pill-marker"
MESSAGES = {ValueError: "the scorer cannot handle this text", OSError: "No space left on device"}


def _status(i: int, text: str) -> dict:
    return {"id": str(1000 + i), "uri": f"https://example.social/users/a/statuses/{1000 + i}",
            "created_at": "2024-05-01T10:00:00Z", "content": f"<p>{text}</p>", "visibility": "public",
            "language": "en", "account": {"id": "7", "acct": "a", "username": "a"}, "tags": []}


class FragileScorer:
    """Scores like a model would, but its UDF raises on one kind of text (as an unforeseen bug would)."""

    threat_model_version = "fragile-1"
    sentiment_model_version = "fragile-1"

    def __init__(self, error: type[BaseException] = ValueError) -> None:
        self.error = error

    def score(self, df):
        error = self.error

        @F.pandas_udf("double")
        def fragile(text: pd.Series) -> pd.Series:
            if text.fillna("").str.contains(POISON).any():
                raise error(MESSAGES[error])
            return pd.Series([0.5] * len(text))

        return df.withColumns({
            "threat_label": F.lit("none"), "threat_score": fragile("text"), "threat_level": F.lit("NONE"),
            "contains_hate_speech": F.lit(0), "threat_model_version": F.lit(self.threat_model_version),
            "sentiment_label": F.lit("neutral"), "sentiment_score": F.lit(0.5),
            "sentiment_model_version": F.lit(self.sentiment_model_version),
        })


def _bronze(spark, path, texts: list[str]) -> None:
    ts = datetime(2024, 5, 1, 10, 0, 1)
    rows = []
    for i, text in enumerate(texts):
        key, value = encode_record(build_envelope("status", "example.social",
                                                  datetime(2024, 5, 1, 10, 0, tzinfo=UTC), _status(i, text)))
        rows.append((key.decode(), value.decode(), "t", i % 3, i, ts, ts, ts.date()))
    spark.createDataFrame(rows, BRONZE_DDL).write.format("delta").partitionBy("ingest_date").save(str(path))


def test_a_poison_record_is_quarantined_and_its_batch_mates_go_through(spark, settings, tmp_path):
    s = settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "cp"})
    texts = [f"post number {i}" for i in range(16)]
    texts[5] = f"a post with the {POISON} in it"
    texts[12] = f"another {POISON}"
    _bronze(spark, s.table_path("bronze.posts_raw"), texts)
    report = run_silver(s, spark, scorer=FragileScorer(), clock=CLOCK, dq=None)
    posts = spark.read.format("delta").load(str(s.table_path(POSTS_TABLE)))
    quarantine = spark.read.format("delta").load(str(s.table_path(QUARANTINE_TABLE))).collect()
    assert posts.count() == 14
    assert posts.where(F.col("text").contains(POISON)).count() == 0
    assert sorted(r.bronze_offset for r in quarantine) == [5, 12]
    assert all(list(r.rules) == ["processing_error"] and "cannot handle this text" in r.reason
               for r in quarantine)
    assert json.loads(quarantine[0].value)["status"]["id"] in ("1005", "1012")  # verbatim
    assert report["isolated"] == 2 and report["quarantined"] == 2

    # a fresh checkpoint re-reads bronze: the poison is quarantined again only once, nothing duplicates
    again = s.model_copy(update={"checkpoint_dir": tmp_path / "cp2"})
    run_silver(again, spark, scorer=FragileScorer(), clock=CLOCK, dq=None)
    assert spark.read.format("delta").load(str(s.table_path(QUARANTINE_TABLE))).count() == 2
    assert spark.read.format("delta").load(str(s.table_path(POSTS_TABLE))).count() == 14


def test_an_infrastructure_error_is_raised_not_quarantined(spark, settings, tmp_path):
    s = settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "cp"})
    _bronze(spark, s.table_path("bronze.posts_raw"), [f"{POISON} {i}" for i in range(4)])
    with pytest.raises(Exception, match="No space left on device"):
        run_silver(s, spark, scorer=FragileScorer(OSError), clock=CLOCK, dq=None)
    quarantine = s.table_path(QUARANTINE_TABLE)
    assert spark.read.format("delta").load(str(quarantine)).count() == 0


def test_bisect_finds_each_poison_and_attempts_the_rest_once():
    attempted: list[int] = []

    def attempt(part):
        if any(x in (3, 17) for x in part):
            raise ValueError("bad")
        attempted.extend(part)

    poisoned = bisect(list(range(20)), attempt)
    assert sorted(x for x, _ in poisoned) == [3, 17]
    assert sorted(attempted) == [x for x in range(20) if x not in (3, 17)]


def test_bisect_raises_when_every_record_fails_or_the_error_is_infrastructure():
    def always(part):
        raise ValueError("not the records")

    with pytest.raises(ValueError):
        bisect(list(range(8)), always)
    with pytest.raises(OSError):
        bisect([1, 2], lambda part: (_ for _ in ()).throw(OSError("disk full")))
    assert not is_record_level(OSError("No space left on device"))
    assert is_record_level(ValueError("x"))


def test_a_small_batch_whose_every_record_fails_is_quarantined_not_a_crash_loop():
    def always(part):
        raise ValueError("the same bad text in a post and its edit")

    assert len(bisect([1, 2], always)) == 2
