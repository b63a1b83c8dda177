"""Batch gold on real Delta tables: matches the independent computation, reruns change nothing, and an
edit / delete in silver is reflected on the next run."""

from __future__ import annotations

import pytest
from gold_reference import connect, crafted_rows, duckdb_rows, reference_sql, spark_rows

from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines.bench.gold import load_statuses, silver_rows
from tootlake.pipelines.jobs.gold import GoldInputMissing, format_summary, gold_summary, run_gold
from tootlake.silver.schema import POSTS_SCHEMA

pytestmark = pytest.mark.integration


def _write_silver(spark, settings, rows):
    tuples = [tuple(r[f.name] for f in POSTS_SCHEMA.fields) for r in rows]
    (spark.createDataFrame(tuples, POSTS_SCHEMA).write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true").save(str(settings.table_path("silver.posts"))))


def _gold_tables(spark, settings):
    return {name: spark_rows(spark.read.format("delta").load(str(settings.table_path(f"gold.{name}"))))
            for name in BATCH_TABLES}


def _assert_matches_reference(tables, rows, active_min):
    con = connect(rows)
    try:
        for name, (columns, got) in tables.items():
            assert got == duckdb_rows(con, reference_sql(active_min)[name], columns), name
    finally:
        con.close()


@pytest.fixture
def gold_settings(settings, tmp_path):
    return settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "ck"})


def test_missing_silver_says_what_to_do(spark, gold_settings):
    with pytest.raises(GoldInputMissing, match="tootlake silver"):
        run_gold(gold_settings, spark)


def test_gold_twice_then_silver_edit_and_delete(spark, gold_settings, shared_data):
    rows = silver_rows(load_statuses(shared_data)) + crafted_rows(gold_settings.active_min)
    _write_silver(spark, gold_settings, rows)

    counts = run_gold(gold_settings, spark, progress=False)
    assert set(counts) == set(BATCH_TABLES) and all(n > 0 for n in counts.values())
    first = _gold_tables(spark, gold_settings)
    assert {name: len(got) for name, (_, got) in first.items()} == counts
    _assert_matches_reference(first, rows, gold_settings.active_min)

    assert run_gold(gold_settings, spark, progress=False) == counts
    assert _gold_tables(spark, gold_settings) == first, "a second run changed a gold table"

    # silver changes: one post deleted (tombstone), one edited (new hashtags, longer text)
    tagged = next(r for r in rows if r["hashtags"] and not r["is_deleted"])
    deleted = next(r for r in rows if not r["is_deleted"] and r is not tagged)
    edited_rows = [dict(r) for r in rows]
    for row in edited_rows:
        if row["post_id"] == deleted["post_id"]:
            row.update(is_deleted=True, text=None, text_length=None, hashtags=None, event_kind="delete")
        elif row["post_id"] == tagged["post_id"]:
            row.update(hashtags=["brandnewtag"], text_length=(row["text_length"] or 0) + 50)
    _write_silver(spark, gold_settings, edited_rows)
    run_gold(gold_settings, spark, progress=False)
    after = _gold_tables(spark, gold_settings)
    _assert_matches_reference(after, edited_rows, gold_settings.active_min)
    assert after != first
    tags = {row[columns.index("hashtag")] for columns, got in [after["threat_by_hashtag"]] for row in got}
    assert "brandnewtag" in tags

    summary = gold_summary(gold_settings, spark)
    assert summary["posts"] == sum(1 for r in edited_rows if not r["is_deleted"])
    assert summary["hate_posts"] == sum(1 for r in edited_rows
                                        if not r["is_deleted"] and r["contains_hate_speech"] == 1)
    assert len(summary["top_hashtags"]) == 5
    assert "top hashtags" in format_summary(summary)
