"""The table declarations (tootlake.catalog): each table once, and what derives from them agrees with the
transforms and the jobs."""

from __future__ import annotations

import pytest

from tootlake.catalog import registry, vocab
from tootlake.catalog.rules import row
from tootlake.catalog.table import Table, unique_values
from tootlake.expectations.suites import SUITES
from tootlake.gold.tables import BATCH_TABLES, STREAM_TABLES
from tootlake.pipelines import lake
from tootlake.pipelines.ops.supervisor import STAGE_TABLES


def test_every_table_is_declared_once_with_its_key_among_its_columns():
    names = [t.name for t in registry.TABLES]
    assert len(names) == len(set(names))
    for t in registry.TABLES:
        assert t.grain and set(t.key) <= set(t.columns), t.name
    batch = {t.short_name for t in registry.in_layer("gold")} - set(STREAM_TABLES)
    assert batch == set(BATCH_TABLES)


def test_a_declaration_refuses_unknown_key_columns_and_duplicate_rule_names():
    with pytest.raises(ValueError, match="not columns"):
        Table("gold.x", "one row per x", ("y",), ("x",))
    with pytest.raises(ValueError, match="layer"):
        Table("nowhere.x", "one row per x", ("x",), ("x",))
    with pytest.raises(ValueError, match="unique"):
        Table("gold.x", "g", ("x",), ("x",), rules={"h": (row("r", "true"), row("r", "false"))})


def test_diff_keys_and_suites_derive_from_the_declarations():
    assert lake.table_keys()["gold.top_hashtag_daily"] == ("post_date",)
    assert lake.table_keys()["silver.posts_quarantine"] == ("bronze_partition", "bronze_offset")
    assert "dq.metrics" not in lake.table_keys()  # no key: compared row by row
    assert SUITES["gold"]["gold.top_hashtag_daily"] == [unique_values("post_date")]
    for layer, suites in SUITES.items():
        for name, spec in suites.items():
            columns = set(registry.table(name).columns)
            for _, kwargs in spec:
                used = [kwargs.get("column"), *(kwargs.get("column_list") or [])]
                assert {c for c in used if c} <= columns, (layer, name, kwargs)


def test_stage_tables_are_declared_tables():
    assert set(STAGE_TABLES.values()) <= set(registry.BY_NAME)


def test_vocabularies_are_the_ones_the_transforms_use():
    from tootlake.bronze import records
    from tootlake.gold import sentiment, threat
    from tootlake.models import sentiment as sentiment_model
    from tootlake.models import threat as threat_model

    assert records.EVENT_KINDS is vocab.EVENT_KINDS == ("status", "status.update", "delete")
    assert threat.THREAT_LEVELS is vocab.THREAT_LEVELS
    assert sentiment.SENTIMENT_LABELS is vocab.SENTIMENT_LABELS
    assert sentiment_model.LABELS is vocab.SENTIMENT_LABELS and threat_model.LABELS is vocab.THREAT_LABELS


def test_declared_gold_columns_are_what_the_transforms_produce(spark):
    from tootlake.silver.schema import POSTS_SCHEMA

    silver = spark.createDataFrame([], POSTS_SCHEMA)
    for name, build in BATCH_TABLES.items():
        assert tuple(build(silver, 2).columns) == registry.table(f"gold.{name}").columns, name


def test_declared_bronze_columns_are_what_the_transform_produces(spark):
    from pyspark.sql import functions as F

    from tootlake.bronze.posts_raw import POSTS_RAW, posts_raw

    kafka = spark.createDataFrame([], "key binary, value binary, topic string, partition int, offset long, "
                                      "timestamp timestamp")
    assert tuple(posts_raw(kafka, F.current_timestamp()).columns) == POSTS_RAW.columns
