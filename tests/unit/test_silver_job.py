"""pipelines.jobs.silver helpers: the writer id kept with the checkpoint, the summary, table creation."""

from __future__ import annotations

import json

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
    df = spark.createDataFrame([("a", "en", "what a lovely morning by the sea"),
                                ("b", "en", "I will hurt you")],
                               "post_id string, language string, text string")
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


def _coverage_file(tmp_path, monkeypatch, **sentiment) -> None:
    """models/coverage.json as the package ships it, with these sentiment entries changed."""
    from tootlake.models import coverage

    data = json.loads(coverage.COVERAGE_FILE.read_text(encoding="utf-8"))
    data["sentiment"].update(sentiment)
    file = tmp_path / "coverage.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(coverage, "COVERAGE_FILE", file)


def test_the_multilingual_head_scores_the_languages_routed_to_it(spark, settings, tmp_path, monkeypatch):
    """Languages in sentiment.multilingual_languages get the multilingual encoder's sentiment head (arg-max
    of its sentiment_probs) and no threat columns; the others the English encoder + MLlib, as before."""
    from tootlake.catalog.vocab import SENTIMENT_LABELS
    from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR
    from tootlake.models.threat import ThreatModel
    from tootlake.pipelines.jobs.silver import build_scorer

    _coverage_file(tmp_path, monkeypatch, languages=["en", "de", "es"], multilingual_languages=["de", "es"])
    scorer = build_scorer(spark, settings.model_copy(update={"threat_model_dir": None,
                                                             "sentiment_model_dir": None}))
    head = ThreatModel.load(DEFAULT_ARTIFACT_DIR)
    assert scorer.multilingual_languages == frozenset({"de", "es"})
    assert scorer.sentiment_model_version.endswith(f"+{head.model_version}")  # a new head re-scores
    texts = {"a": ("en", "what a lovely morning by the sea"), "b": ("de", "Was für ein schrecklicher Tag."),
             "c": ("es-MX", "¡Qué alegría verte de nuevo, amiga!"), "d": ("ja", "今日はいい天気ですね")}
    df = spark.createDataFrame([(k, lang, text) for k, (lang, text) in texts.items()],
                               "post_id string, language string, text string")
    rows = {row["post_id"]: row for row in scorer.score(df).collect()}
    assert set(rows) == set(texts)
    assert rows["a"]["threat_label"] is not None and rows["d"]["threat_label"] is not None  # not routed
    probs = head.run([texts[k][1] for k in ("b", "c")], ["sentiment_probs"])["sentiment_probs"]
    for key, row_probs in zip(("b", "c"), probs, strict=True):
        row = rows[key]
        assert row["threat_label"] is None and row["threat_model_version"] is None
        assert row["sentiment_label"] == SENTIMENT_LABELS[int(row_probs.argmax())]
        assert row["sentiment_score"] == pytest.approx(float(row_probs.max()), abs=1e-5)
    assert {row["sentiment_model_version"] for row in rows.values()} == {scorer.sentiment_model_version}


def test_a_language_routed_to_the_multilingual_head_may_not_be_a_threat_language(spark, settings, tmp_path,
                                                                                monkeypatch):
    from tootlake.pipelines.jobs.silver import SilverError, build_scorer

    _coverage_file(tmp_path, monkeypatch, languages=["en", "de"], multilingual_languages=["en", "de"])
    with pytest.raises(SilverError, match=r"multilingual_languages \['en'\]"):
        build_scorer(spark, settings)


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
