"""Analysis against tables Spark wrote: DuckDB answers equal Spark's (gold functions) at the same version,
delta-rs reads Spark's history / versions, diff sees Spark's UPDATE / DELETE / MERGE, and a delta-rs restore
leaves a table Spark reads back as the old version."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from analysis_lake import post
from delta.tables import DeltaTable as SparkDeltaTable
from pyspark.sql import functions as F

from tootlake.gold import activity, threat
from tootlake.gold.base import post_hashtags
from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines import analysis, lake
from tootlake.pipelines.settings import Settings
from tootlake.silver.schema import POSTS_SCHEMA

pytestmark = pytest.mark.integration

TABLE = "silver.posts"
START = datetime(2023, 5, 1, 6, 0, tzinfo=UTC)


def synthetic_posts(n: int, seed: int = 7) -> list[dict]:
    """`n` varied silver rows: 9 hours, 5 languages (and null), 12 users on 2 instances, 0-3 tags (mixed case,
    repeats, blanks), every threat level and unscored, some hate, some tombstones."""
    rng = random.Random(seed)
    tags = ["Python", "python", "data", "rust", "fediverse", "news", " ", "Art", "art", "music"]
    rows = []
    for i in range(n):
        acct = rng.choice([f"user{u}" for u in range(8)] + [f"remote{u}@other.example" for u in range(4)])
        level = rng.choice(["NONE", "NONE", "NONE", "LOW", "MEDIUM", "HIGH", None])
        rows.append(post(
            f"mastodon.social/{i}", acct, START + timedelta(minutes=rng.randrange(0, 9 * 60)),
            language=rng.choice(["en", "en", "de", "fr", "ja", None, "EN"]),
            hashtags=rng.sample(tags, rng.randrange(0, 4)) or None,
            threat_level=level,
            contains_hate_speech=None if level is None else int(level == "HIGH" and rng.random() < 0.7),
            sentiment_label=rng.choice(["positive", "neutral", "negative", None]),
            text_length=rng.randrange(1, 500),
            is_deleted=rng.random() < 0.05,
        ))
    return rows


@pytest.fixture(scope="module")
def spark_lake(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """silver.posts written by Spark in 4 versions: 0 WRITE, 1 UPDATE, 2 DELETE, 3 MERGE."""
    lake_settings = settings.model_copy(update={"lake_dir": tmp_path_factory.mktemp("analysis") / "lake"})
    path = str(lake_settings.table_path(TABLE))
    rows = synthetic_posts(400)
    spark.createDataFrame(rows[:300], POSTS_SCHEMA).write.format("delta").save(path)
    table = SparkDeltaTable.forPath(spark, path)
    table.update(F.col("language") == "fr", {"threat_level": F.lit("HIGH"), "contains_hate_speech": F.lit(1)})
    table.delete(F.col("account_acct") == "user3")
    updates = spark.createDataFrame(rows[250:400], POSTS_SCHEMA).withColumn("text_length", F.lit(42))
    (table.alias("t").merge(updates.alias("s"), "t.post_id = s.post_id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    return lake_settings


def spark_at(spark, settings: Settings, version: int):
    return spark.read.format("delta").option("versionAsOf", version).load(str(settings.table_path(TABLE)))


def rows(df, columns: list[str]) -> list[tuple]:
    return sorted(tuple(r[c] for c in columns) for r in df.select(*columns).collect())


def duck_rows(settings: Settings, script: str, version: int, columns: list[str]) -> list[tuple]:
    frame = analysis.run_sql(settings, script, as_of={TABLE: version})
    return sorted(tuple(r) for r in frame[columns].itertuples(index=False, name=None))


@pytest.mark.parametrize("version", [0, 3])
def test_duckdb_posts_per_hour_equals_spark_gold(spark, spark_lake: Settings, version: int) -> None:
    columns = ["hour_start", "posts", "users"]
    expected = [(h.replace(tzinfo=UTC), p, u)
                for h, p, u in rows(activity.posts_hourly(spark_at(spark, spark_lake, version)), columns)]
    got = [(h.to_pydatetime(), int(p), int(u)) for h, p, u in duck_rows(spark_lake, "posts_per_hour",
                                                                        version, columns)]
    assert len(got) == 9
    assert got == expected


def test_duckdb_top_hashtags_equals_spark(spark, spark_lake: Settings) -> None:
    tags = post_hashtags(spark_at(spark, spark_lake, 2)).groupBy("hashtag").agg(
        F.count("*").alias("posts"), F.countDistinct("user_acct").alias("users"))
    expected = sorted(rows(tags, ["hashtag", "posts", "users"]), key=lambda r: (-r[1], r[0]))[:20]
    got = [tuple(r) for r in analysis.run_sql(spark_lake, "top_hashtags", as_of={TABLE: 2})
           [["hashtag", "posts", "users"]].itertuples(index=False, name=None)]
    assert [t for t, _, _ in got] == [t for t, _, _ in expected]  # "python" and "Python" are one tag
    assert [(t, int(p), int(u)) for t, p, u in got] == expected


@pytest.mark.parametrize("version", [1, 3])
def test_duckdb_threat_by_language_equals_spark_gold(spark, spark_lake: Settings, version: int) -> None:
    columns = ["language", "posts", "none_posts", "low_posts", "medium_posts", "high_posts", "hate_share"]
    expected = {r["language"]: tuple(r[c] for c in columns[1:]) for r in
                threat.threat_by_language(spark_at(spark, spark_lake, version)).collect()}
    frame = analysis.run_sql(spark_lake, "threat_share_by_language", as_of={TABLE: version})
    got = {lang: rest for lang, *rest in frame[columns].itertuples(index=False, name=None)}
    assert got.keys() == expected.keys() and len(got) == 5  # en (with "EN"), de, fr, ja, und
    for language, (*counts, hate_share) in got.items():
        *spark_counts, spark_share = expected[language]
        assert list(map(int, counts)) == spark_counts, language
        if spark_share is None:  # nothing scored: null in both
            assert pd.isna(hate_share), language
        else:
            assert hate_share == pytest.approx(round(spark_share, 4)), language


def test_history_of_a_spark_table(spark_lake: Settings) -> None:
    commits = lake.history(spark_lake, TABLE)
    assert [(c.version, c.operation) for c in commits] == [
        (3, "MERGE"), (2, "DELETE"), (1, "UPDATE"), (0, "WRITE")]
    assert commits[-1].rows_written == 300  # WRITE's numOutputRows


def test_diff_sees_spark_update_delete_merge(spark, spark_lake: Settings) -> None:
    v0 = {r["post_id"]: r for r in spark_at(spark, spark_lake, 0).collect()}
    # The UPDATE rewrote every fr row; only those not already HIGH + hate have different values.
    fr = {pid for pid, r in v0.items()
          if r["language"] == "fr" and (r["threat_level"], r["contains_hate_speech"]) != ("HIGH", 1)}
    user3 = {pid for pid, r in v0.items() if r["account_acct"] == "user3"}
    update = lake.diff(spark_lake, TABLE, 0, 1)
    assert set(update.changed.column("post_id").to_pylist()) == fr
    assert update.counts["added"] == update.counts["removed"] == 0
    delete = lake.diff(spark_lake, TABLE, 1, 2)
    assert set(delete.removed.column("post_id").to_pylist()) == user3
    assert delete.counts["added"] == delete.counts["changed"] == 0
    # MERGE of rows 250..399 (text_length 42): inserts 300..399 and the user3 rows the DELETE removed,
    # updates the rest of 250..299 (text_length, and the fr rows' UPDATE is undone).
    source = synthetic_posts(400)[250:400]
    v2 = {r["post_id"]: r for r in spark_at(spark, spark_lake, 2).collect()}
    compared = ("text_length", "threat_level", "contains_hate_speech")
    expected_changed = {row["post_id"] for row in source if row["post_id"] in v2 and any(
        v2[row["post_id"]][c] != (42 if c == "text_length" else row[c]) for c in compared)}
    merge = lake.diff(spark_lake, TABLE, 2, 3)
    assert set(merge.added.column("post_id").to_pylist()) == {r["post_id"] for r in source} - set(v2)
    assert set(merge.changed.column("post_id").to_pylist()) == expected_changed
    assert merge.counts["removed"] == 0
    assert "text_length" in merge.changed_columns and set(merge.changed_columns) <= set(compared)


def test_gold_diff_keys_are_gold_grains(spark, spark_lake: Settings) -> None:
    """Each gold table's diff key names its grain: its columns exist in what the gold function returns, and
    the key is unique on a few tables (a full check of all 12 would cost a dozen Spark jobs)."""
    posts = spark_at(spark, spark_lake, 3)
    for name, build in BATCH_TABLES.items():
        assert set(lake.table_keys()[f"gold.{name}"]) <= set(build(posts, 5).columns), name
    for name in ("hashtags_daily", "threat_by_language"):
        df = BATCH_TABLES[name](posts, 5)
        key = lake.table_keys()[f"gold.{name}"]
        assert df.count() == df.select(*key).distinct().count(), name


def test_restore_with_delta_rs_is_read_back_by_spark(spark, spark_lake: Settings, tmp_path: Path) -> None:
    # Restore a copy: the other tests use the module's table.
    copy = tmp_path / "lake"
    shutil.copytree(spark_lake.path(spark_lake.lake_dir), copy)
    settings = spark_lake.model_copy(update={"lake_dir": copy})
    lake.restore(settings, TABLE, 0)
    path = str(settings.table_path(TABLE))
    assert SparkDeltaTable.forPath(spark, path).history(1).collect()[0]["operation"] == "RESTORE"
    restored = spark.read.format("delta").load(path)
    original = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert restored.count() == 300
    assert restored.exceptAll(original).union(original.exceptAll(restored)).count() == 0
