"""pipelines.jobs.silver helpers: the writer id kept with the checkpoint, the summary, table creation."""

from __future__ import annotations

import pytest

from tootlake.pipelines.jobs.silver import format_summary, txn_app_id


def test_txn_app_id_lives_and_dies_with_the_checkpoint(tmp_path):
    first = txn_app_id(tmp_path / "cp")
    assert first.startswith("tootlake-silver-") and txn_app_id(tmp_path / "cp") == first
    # a fresh checkpoint restarts batch ids at 0, so it must not reuse the old writer id
    assert txn_app_id(tmp_path / "other") != first


def test_format_summary_lists_every_distribution():
    text = format_summary({
        "silver_rows": 10, "live_posts": 9, "tombstones": 1,
        "processing_status": {"SUCCESS": 9}, "threat_level": {"NONE": 7, "LOW": 2},
        "sentiment": {"neutral": 5, "positive": 4}, "quarantine_rows": 3,
        "quarantine_by_rule": {"invalid_json": 2, "missing_id": 1},
    })
    assert "10 rows (9 live, 1 deleted)" in text
    assert "NONE 7, LOW 2" in text and "neutral 5, positive 4" in text
    assert "3 records" in text and "invalid_json 2, missing_id 1" in text


def test_silver_posts_is_created_with_the_change_data_feed_on(spark, settings, tmp_path):
    """Sync and the gold stream read silver/posts' change feed; it must be on from the first version."""
    from tootlake.pipelines.jobs.silver import ensure_tables

    settings = settings.model_copy(update={"lake_dir": tmp_path / "lake"})
    ensure_tables(spark, settings)
    ensure_tables(spark, settings)  # idempotent

    def properties(table: str) -> dict:
        path = settings.table_path(table)
        return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]["properties"]

    assert properties("silver.posts").get("delta.enableChangeDataFeed") == "true"
    assert "delta.enableChangeDataFeed" not in properties("silver.posts_quarantine")


def test_build_scorer_scores_with_the_packaged_models(spark, settings):
    """Unset THREAT_MODEL_DIR / SENTIMENT_MODEL_DIR: the artifacts shipped in the package score each row."""
    from tootlake.catalog.vocab import SENTIMENT_LABELS, THREAT_LEVELS
    from tootlake.pipelines.jobs.silver import build_scorer

    scorer = build_scorer(spark, settings.model_copy(update={"threat_model_dir": None,
                                                             "sentiment_model_dir": None}))
    assert scorer.threat_path is None
    df = spark.createDataFrame([("a", "what a lovely morning by the sea"), ("b", "I will hurt you")],
                               "post_id string, text string")
    rows = {row["post_id"]: row for row in scorer.score(df).collect()}
    assert set(rows) == {"a", "b"}
    for row in rows.values():
        assert row["threat_level"] in THREAT_LEVELS and row["sentiment_label"] in SENTIMENT_LABELS
        assert row["threat_model_version"] == scorer.threat_model_version
        assert row["sentiment_model_version"] == scorer.sentiment_model_version
    # the languages each model is trusted on come from models/coverage.json (silver leaves the rest unscored)
    from tootlake.models.coverage import load_coverage

    assert scorer.threat_languages == load_coverage("threat").languages
    assert scorer.sentiment_languages == load_coverage("sentiment").languages
    assert "en" in scorer.threat_languages and "ja" not in scorer.threat_languages


def test_ensure_tables_adds_the_scoring_note_to_an_older_silver_table(spark, settings, tmp_path):
    from pyspark.sql.types import StructType

    from tootlake.pipelines.jobs.silver import ensure_tables
    from tootlake.pipelines.lake import Lake
    from tootlake.silver.schema import POSTS_SCHEMA

    settings = settings.model_copy(update={"lake_dir": tmp_path / "lake"})
    lake = Lake(settings, spark)
    older = StructType([f for f in POSTS_SCHEMA.fields if f.name != "scoring_note"])
    lake.create("silver.posts", older, change_feed=True)
    ensure_tables(spark, settings)
    assert lake.read("silver.posts").schema["scoring_note"].dataType.simpleString() == "string"
    ensure_tables(spark, settings)  # idempotent
    assert lake.read("silver.posts").columns == POSTS_SCHEMA.fieldNames()


def test_build_scorer_reads_the_model_dir_settings(spark, settings, tmp_path):
    from tootlake.models.sentiment import SentimentModelError
    from tootlake.models.threat import DEFAULT_ARTIFACT_DIR, ModelLoadError
    from tootlake.pipelines.jobs.silver import build_scorer

    with pytest.raises(ModelLoadError, match=str(tmp_path / "no-threat")):
        build_scorer(spark, settings.model_copy(update={"threat_model_dir": tmp_path / "no-threat"}))
    with pytest.raises(SentimentModelError, match=str(tmp_path / "no-sentiment")):
        build_scorer(spark, settings.model_copy(update={"threat_model_dir": DEFAULT_ARTIFACT_DIR,
                                                        "sentiment_model_dir": tmp_path / "no-sentiment"}))
