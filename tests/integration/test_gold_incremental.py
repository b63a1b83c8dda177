"""Incremental gold on real Delta tables: random sequences of inserts, edits and deletes in silver/posts
(written with MERGE, so the change feed carries pre- and post-images, as silver's own writes do); after each
batch the incremental refresh must equal a full rebuild and the independent DuckDB computation, table by
table. Plus: the first run and `--full-refresh` rebuild, a run without changes does nothing."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from gold_reference import DAY_A, connect, crafted_rows, duckdb_rows, post, reference_sql, spark_rows

from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines.bench.gold import load_statuses, silver_rows
from tootlake.pipelines.jobs.gold import read_gold_state, refresh_gold
from tootlake.pipelines.jobs.silver import ensure_tables
from tootlake.pipelines.lake import Lake
from tootlake.silver.schema import POSTS_SCHEMA

pytestmark = pytest.mark.integration

USERS = ["alice", "bob@other.example", "carol@x.example", None]
TAGS = ["alpha", "Beta", "gamma", "ZETA", " ", "delta"]
LANGUAGES = ["en", "de", "DE", None, "ja", "fr"]
LEVELS = ["NONE", "LOW", "MEDIUM", "HIGH", None]


def _frame(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in POSTS_SCHEMA.fields) for r in rows], POSTS_SCHEMA)


def _upsert(lake: Lake, spark, rows) -> None:
    """Silver-like write: changed rows replace theirs (update pre/post-images), new rows are inserted."""
    values = {f.name: f"s.`{f.name}`" for f in POSTS_SCHEMA.fields}
    (lake.merge("silver.posts", _frame(spark, rows), "t.post_id = s.post_id")
     .whenMatchedUpdate(set=values).whenNotMatchedInsert(values=values).execute())


def _random_post(rng: random.Random, post_id: str) -> dict:
    level = rng.choice(LEVELS)
    return post(post_id, DAY_A + timedelta(days=rng.randrange(6), minutes=rng.randrange(24 * 60)),
                account_acct=rng.choice(USERS), instance=rng.choice(["mastodon.social", "other.example"]),
                hashtags=rng.sample(TAGS, rng.randrange(3)), language=rng.choice(LANGUAGES),
                text_length=rng.choice([None, *range(1, 300, 37)]), threat_level=level,
                contains_hate_speech=None if level is None else int(level in ("MEDIUM", "HIGH")),
                sentiment_label=rng.choice(["negative", "neutral", "positive", None]))


def _mutate(rng: random.Random, rows: dict[str, dict], batch: int) -> list[dict]:
    """One batch: a few new posts, edits (hashtags, length, language, scores; created_at stays, as on
    Mastodon) and deletes (tombstones) of existing live posts."""
    changed = []
    for k in range(rng.randrange(1, 4)):
        changed.append(_random_post(rng, f"n{batch}-{k}"))
    live = [r for r in rows.values() if not r["is_deleted"]]
    for row in rng.sample(live, min(len(live), rng.randrange(1, 4))):
        edit = dict(row, hashtags=rng.sample(TAGS, rng.randrange(3)), language=rng.choice(LANGUAGES),
                    text_length=rng.choice([None, 5, 50, 500]), threat_level=rng.choice(LEVELS),
                    sentiment_label=rng.choice(["negative", "positive", None]))
        edit["contains_hate_speech"] = None if edit["threat_level"] is None else int(
            edit["threat_level"] in ("MEDIUM", "HIGH"))
        changed.append(edit)
    live = [r for r in live if r["post_id"] not in {c["post_id"] for c in changed}]
    for row in rng.sample(live, min(len(live), rng.randrange(0, 3))):
        changed.append(dict(row, is_deleted=True, text=None, text_length=None, hashtags=None,
                            threat_level=None, sentiment_label=None, event_kind="delete"))
    return changed


def _assert_gold_is_current(spark, settings, rows: list[dict]) -> None:
    silver = _frame(spark, rows)
    con = connect(rows)
    try:
        for name, build in BATCH_TABLES.items():
            got = spark_rows(spark.read.format("delta").load(str(settings.table_path(f"gold.{name}"))))
            rebuilt = spark_rows(build(silver, settings.active_min))
            assert sorted(got[0]) == sorted(rebuilt[0]), name
            columns = rebuilt[0]
            ordered = spark_rows(spark.read.format("delta").load(str(settings.table_path(f"gold.{name}")))
                                 .select(*columns))
            assert ordered[1] == rebuilt[1], f"gold.{name}: incremental != full rebuild"
            assert ordered[1] == duckdb_rows(con, reference_sql(settings.active_min)[name], columns), \
                f"gold.{name}: incremental != the independent DuckDB computation"
    finally:
        con.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_gold_equals_a_full_rebuild_after_random_changes(spark, settings, tmp_path, seed) -> None:
    own = settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "ck",
                                      "dq_enabled": seed == 1,  # the rules on the changed rows, once
                                      "gold_incremental_min_rows": 0})
    lake = Lake(own, spark)
    ensure_tables(spark, own)  # silver/posts with its change feed, as the silver job creates it
    rng = random.Random(seed)
    rows = {r["post_id"]: r for r in crafted_rows(own.active_min)}
    _upsert(lake, spark, list(rows.values()))

    first = refresh_gold(own, spark, progress=False)
    assert first["mode"] == "full" and "first build" in first["reason"]
    _assert_gold_is_current(spark, own, list(rows.values()))

    for batch in range(3):
        changed = _mutate(rng, rows, batch)
        _upsert(lake, spark, changed)
        rows.update({r["post_id"]: r for r in changed})
        result = refresh_gold(own, spark, progress=False)
        assert result["mode"] == "incremental", result
        assert result["changes"]["days"] >= 1
        _assert_gold_is_current(spark, own, list(rows.values()))

    again = refresh_gold(own, spark, progress=False)
    assert again["mode"] == "incremental" and again["changes"] == 0
    assert read_gold_state(own)["silver_version"] == again["silver_version"]


def test_full_refresh_and_a_recreated_silver_rebuild_everything(spark, settings, tmp_path,
                                                                shared_data) -> None:
    own = settings.model_copy(update={"lake_dir": tmp_path / "lake", "checkpoint_dir": tmp_path / "ck",
                                      "dq_enabled": False, "gold_incremental_min_rows": 0})
    lake = Lake(own, spark)
    ensure_tables(spark, own)
    rows = silver_rows(load_statuses(shared_data)[:80])
    _upsert(lake, spark, rows)
    assert refresh_gold(own, spark, progress=False)["mode"] == "full"
    forced = refresh_gold(own, spark, full_refresh=True, progress=False)
    assert forced == {**forced, "mode": "full", "reason": "--full-refresh"}
    _assert_gold_is_current(spark, own, rows)

    lake.drop("silver.posts")  # re-created: its change feed does not continue the old one
    ensure_tables(spark, own)
    _upsert(lake, spark, rows[:40])
    recreated = refresh_gold(own, spark, progress=False)
    assert recreated["mode"] == "full" and "re-created" in recreated["reason"]
    _assert_gold_is_current(spark, own, rows[:40])

    _upsert(lake, spark, rows[40:])  # a small silver: the full rebuild is the cheaper path
    small = refresh_gold(own.model_copy(update={"gold_incremental_min_rows": 1000}), spark, progress=False)
    assert small["mode"] == "full" and "GOLD_INCREMENTAL_MIN_ROWS" in small["reason"]
    _assert_gold_is_current(spark, own, rows)
