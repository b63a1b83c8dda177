"""Data-quality rules on crafted DataFrames: warn counts, drop quarantines, fail raises naming the rule and
examples; table checks (unique, row-count change, freshness); dq.metrics rows equal the counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from deltalake import DeltaTable

from tootlake.catalog.rules import Rule, TableRules, freshness, row, row_count_change, unique
from tootlake.expectations.rules import aggregate_columns, results
from tootlake.expectations.tables import gold_table, silver_posts, sync_posts
from tootlake.pipelines.quality.guard import METRICS_TABLE, QUARANTINE_TABLE, DataQualityError, Guard
from tootlake.silver.quarantine import RULE_NAMES

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROWS = [  # post_id, platform, threat_level, created_at
    ("a/1", "mastodon", "NONE", datetime(2026, 11, 23, 11, 0)),
    ("a/2", "mastodon", "LOW", datetime(2026, 11, 23, 11, 30)),
    ("a/3", "myspace", "HIGH", datetime(2026, 11, 22, 9, 0)),
    ("a/4", "mastodon", "EXTREME", None),
    ("a/4", "mastodon", None, datetime(2026, 11, 20, 9, 0)),
]


@pytest.fixture
def df(spark):
    return spark.createDataFrame(ROWS, "post_id string, platform string, threat_level string, "
                                       "created_at timestamp")


@pytest.fixture
def dq_settings(settings, tmp_path):
    return settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "ck"})


def _guard(dq_settings, job="test"):
    return Guard(dq_settings, job, clock=lambda: NOW)


def _metrics(dq_settings):
    table = DeltaTable(str(dq_settings.table_path(METRICS_TABLE))).to_pyarrow_table()
    return {(r["table"], r["rule"]): r for r in table.to_pylist()}


def test_table_checks_cannot_drop_and_names_are_unique():
    with pytest.raises(ValueError, match="cannot drop"):
        unique("k", ("post_id",), "drop")
    with pytest.raises(ValueError, match="severity"):
        row("r", "true", "ignore")
    with pytest.raises(ValueError, match="unique"):
        TableRules("t", "h", (), (row("r", "true"), row("r", "false")))


def test_silver_drop_rules_are_the_quarantine_rules(spark):
    rules = silver_posts(NOW)
    assert [r.name for r in rules.of("drop")] == list(RULE_NAMES)
    assert rules.of("fail") and rules.of("warn")


def test_warn_counts_in_one_aggregate_and_writes_metrics(df, dq_settings):
    rules = TableRules("test.posts", "x->y", ("post_id",), (
        row("level_known", "threat_level IN ('NONE', 'LOW', 'MEDIUM', 'HIGH')", "warn"),
        row("has_created_at", "created_at IS NOT NULL", "warn", where="platform = 'mastodon'"),
    ))
    guard = _guard(dq_settings)
    found, _ = guard.check(df, rules, batch_id=7)
    got = {r.rule.name: (r.rows_checked, r.rows_failed) for r in found}
    # null threat_level fails (a null predicate is a failure); `where` narrows the rows checked
    assert got == {"level_known": (5, 2), "has_created_at": (4, 1)}
    metrics = _metrics(dq_settings)
    assert {k[1]: (v["rows_checked"], v["rows_failed"], v["batch_id"], v["severity"])
            for k, v in metrics.items()} == {"level_known": (5, 2, 7, "warn"),
                                             "has_created_at": (4, 1, 7, "warn")}
    assert {v["run_id"] for v in metrics.values()} == {guard.run_id}


def test_drop_sends_rows_to_quarantine_with_the_rule_name(df, dq_settings):
    rules = TableRules("test.posts", "x->y", ("post_id",), (
        row("platform_known", "platform = 'mastodon'", "drop", "platform is mastodon"),
        row("level_known", "threat_level IS NOT NULL", "warn"),
    ))
    kept, found = _guard(dq_settings).apply(df, rules, batch_id=0)
    assert sorted(r["post_id"] for r in kept.collect()) == ["a/1", "a/2", "a/4", "a/4"]
    quarantined = DeltaTable(str(dq_settings.table_path(QUARANTINE_TABLE))).to_pyarrow_table().to_pylist()
    assert [(q["key"], q["rules"], q["reason"]) for q in quarantined] == [
        ("a/3", ["platform_known"], "platform is mastodon")]
    assert '"platform":"myspace"' in quarantined[0]["value"]
    assert {r.rule.name: r.rows_failed for r in found} == {"platform_known": 1, "level_known": 1}


@pytest.fixture
def df_changes(df):
    from pyspark.sql import functions as F

    return df.withColumns({"_change_type": F.lit("insert"), "is_deleted": F.lit(False)})


def test_drop_in_sync_rules(df_changes, dq_settings):
    batch = df_changes.where("threat_level <> 'EXTREME' OR threat_level IS NULL")
    kept, found = _guard(dq_settings).apply(batch, sync_posts(), batch_id=3)
    assert sorted(r["post_id"] for r in kept.collect()) == ["a/1", "a/2", "a/4"]
    assert {r.rule.name: r.rows_failed for r in found} == {
        "post_id_present": 0, "platform_known": 1, "threat_level_known": 0, "live_post_has_created_at": 0}
    _guard(dq_settings).apply(batch, sync_posts(), batch_id=4)
    quarantined = DeltaTable(str(dq_settings.table_path(QUARANTINE_TABLE))).to_pyarrow_table()
    assert quarantined.num_rows == 1, "the same rejected row is quarantined once"


def test_fail_raises_naming_the_rule_and_examples(df_changes, dq_settings):
    with pytest.raises(DataQualityError) as excinfo:
        _guard(dq_settings, "sync").check(df_changes, sync_posts(), batch_id=1)
    message = str(excinfo.value)
    assert "threat_level_known" in message and "a/4" in message and "1 of 5 rows" in message
    assert [r.rule.name for r in excinfo.value.failed] == ["threat_level_known"]
    # the failure is recorded before raising
    assert _metrics(dq_settings)[("silver.posts", "threat_level_known")]["rows_failed"] == 1


def test_table_checks(df, spark):
    rules = TableRules("t", "h", ("post_id",), (
        unique("post_id_unique", ("post_id",)),
        row_count_change("size", 0.5),
        freshness("fresh", "created_at", timedelta(hours=2)),
        freshness("very_fresh", "created_at", timedelta(minutes=10)),
    ))
    agg = df.agg(*aggregate_columns(df, rules)).first().asDict()
    got = {r.rule.name: (r.rows_checked, r.rows_failed) for r in results(agg, rules, NOW, previous_rows=20)}
    assert got == {"post_id_unique": (5, 1), "size": (5, 15), "fresh": (5, 0), "very_fresh": (5, 5)}
    within = {r.rule.name: r.rows_failed for r in results(agg, rules, NOW, previous_rows=4)}
    assert within["size"] == 0
    first = {r.rule.name: r.note for r in results(agg, rules, NOW, previous_rows=None)}
    assert first["size"] == "no previous version"


def test_gold_table_rules_find_duplicate_keys_and_negative_counts(spark, dq_settings):
    table = spark.createDataFrame([("2026-11-01", 3), ("2026-11-01", -1), ("2026-11-02", 2)],
                                  "post_date string, posts long")
    assert not _guard(dq_settings).needs_precheck(gold_table("posts_daily", ("post_date",), table.columns))
    rules = gold_table("posts_daily", ("post_date",), table.columns, strict=True)
    with pytest.raises(DataQualityError, match="key_unique") as excinfo:
        _guard(dq_settings, "gold").check(table, rules)
    assert "counts_not_negative" in str(excinfo.value) and "2026-11-01" in str(excinfo.value)


def test_rule_builder_check(df):
    rule = Rule("starts_with_a", lambda d: d["post_id"].startswith("a/"), "warn")
    rules = TableRules("t", "h", (), (rule,))
    agg = df.agg(*aggregate_columns(df, rules)).first().asDict()
    assert results(agg, rules, NOW)[0].rows_failed == 0
    assert df.where(rule.fails(df)).count() == 0
    other = Rule("ends_with_1", lambda d: d["post_id"].endswith("1"), "warn")
    assert df.where(other.fails(df)).count() == 4


def test_warn_rules_are_counted_by_the_write_itself(spark, dq_settings, tmp_path):
    table = spark.createDataFrame([("2026-11-01", 3), ("2026-11-02", -2), ("2026-11-03", 1)],
                                  "post_date string, posts long")
    guard = _guard(dq_settings, "gold")
    observed, finish = guard.observe(table, gold_table("posts_daily", ("post_date",), table.columns),
                                     previous_rows=12)
    observed.write.format("delta").save(str(tmp_path / "out"))
    got = {r.rule.name: (r.rows_checked, r.rows_failed) for r in finish()}
    assert got == {"row_count_change": (3, 9), "counts_not_negative": (3, 1)}
    assert _metrics(dq_settings)[("gold.posts_daily", "counts_not_negative")]["rows_failed"] == 1
