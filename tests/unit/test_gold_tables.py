"""Every batch gold table: Spark result == an independent DuckDB computation on the same silver rows.

Two inputs: silver-like rows from the bundled real statuses (skipped without ../shared/data), and crafted
edge cases built in tests/gold_reference.py, which need no shared data (users at exactly ACTIVE_MIN,
tombstones, an empty day, a day without hashtags, ties, nulls).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gold_reference import (
    DAY_A,
    DAY_C,
    DAY_D,
    connect,
    crafted_rows,
    duckdb_rows,
    post,
    reference_sql,
    spark_rows,
)

from tootlake.gold import activity, hashtags, sentiment, threat, windowed
from tootlake.gold.tables import BATCH_TABLES
from tootlake.pipelines.bench.gold import load_statuses, silver_rows
from tootlake.silver.schema import POSTS_SCHEMA

ACTIVE_MIN = 5


def _frame(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in POSTS_SCHEMA.fields) for r in rows], POSTS_SCHEMA)


def _dataset(spark, rows):
    silver, con = _frame(spark, rows).cache(), connect(rows)
    yield silver, con
    silver.unpersist()
    con.close()


@pytest.fixture(scope="module")
def real(spark, shared_data):
    """Silver-like rows from the bundled real statuses (skips without ../shared/data)."""
    rows = silver_rows(load_statuses(shared_data))
    # a few tombstones among the real posts: gold must ignore them
    for row in rows[::97]:
        row.update(is_deleted=True, text=None, text_length=None, hashtags=None)
    yield from _dataset(spark, rows)


@pytest.fixture(scope="module")
def crafted(spark):
    """The crafted edge cases (tests/gold_reference.py): built here, no shared data needed."""
    yield from _dataset(spark, crafted_rows(ACTIVE_MIN))


@pytest.fixture(params=["real", "crafted"])
def dataset(request):
    return request.param, request.getfixturevalue(request.param)


@pytest.mark.parametrize("table", list(BATCH_TABLES))
def test_table_matches_independent_duckdb(dataset, table):
    name, (silver, con) = dataset
    columns, got = spark_rows(BATCH_TABLES[table](silver, ACTIVE_MIN))
    expected = duckdb_rows(con, reference_sql(ACTIVE_MIN)[table], columns)
    assert got == expected
    if name == "real":
        assert got, f"{table} is empty on the real statuses"


def test_posts_per_minute_batch_definition(dataset):
    _, (silver, con) = dataset
    columns, got = spark_rows(windowed.posts_per_minute(silver))
    assert got == duckdb_rows(con, reference_sql(ACTIVE_MIN)["posts_per_minute"], columns)


def _collect(df, *columns):
    return sorted(tuple(row[c] for c in columns) for row in df.collect())


def test_active_users_boundary(crafted):
    silver, _ = crafted
    users = dict(_collect(activity.active_users(silver, ACTIVE_MIN), "user_acct", "posts"))
    # alice has exactly ACTIVE_MIN live posts (her tombstone does not count); bob one fewer
    assert users == {"alice@mastodon.social": ACTIVE_MIN}
    lower = dict(_collect(activity.active_users(silver, ACTIVE_MIN - 1), "user_acct", "posts"))
    assert lower == {"alice@mastodon.social": ACTIVE_MIN, "bob@other.example": ACTIVE_MIN - 1}
    with pytest.raises(ValueError):
        activity.active_users(silver, 0)


def test_top_hashtag_tie_is_broken_alphabetically(crafted):
    silver, _ = crafted
    top = _collect(hashtags.top_hashtag_daily(silver), "post_date", "hashtag", "posts", "tied_hashtags")
    # day A: alpha 3 (alice 2, bob's 'ALPHA' 1), zeta 3 (alice 2 - 'Zeta','zeta' once each - and
    # alice@other.example 1), beta 2, gamma 2: alpha and zeta tie, alpha wins
    day_a = [row for row in top if row[0] == DAY_A.date()]
    assert len(top) == 1 and len(day_a) == 1, "only day A has hashtags (day B is empty, day C has none)"
    _, tag, posts, tied = day_a[0]
    assert (tag, posts, tied) == ("alpha", 3, 2)


def test_empty_day_and_day_without_hashtags(crafted):
    silver, _ = crafted
    daily = dict(_collect(activity.posts_daily(silver), "post_date", "posts"))
    assert daily == {DAY_A.date(): ACTIVE_MIN + (ACTIVE_MIN - 1) + 1, DAY_C.date(): 2, DAY_D.date(): 5}
    tag_days = {row[0] for row in _collect(hashtags.hashtags_daily(silver), "post_date")}
    assert tag_days == {DAY_A.date()}


def test_posts_outside_the_language_coverage_count_as_unscored(crafted):
    """Day D (tests/gold_reference.py): ja and a null language unscored by both models on purpose, fr by
    sentiment only, pt by threat only, and es FAILED (unscored, not on purpose)."""
    silver, _ = crafted
    columns = ("post_date", "posts", "unscored_posts", "language_unscored_posts")
    threat_day = [r for r in _collect(threat.threat_daily(silver), *columns) if r[0] == DAY_D.date()]
    sentiment_day = [r for r in _collect(sentiment.sentiment_daily(silver), *columns) if r[0] == DAY_D.date()]
    assert threat_day == [(DAY_D.date(), 5, 4, 3)]  # f0 f1 f3 on purpose, f4 failed
    assert sentiment_day == [(DAY_D.date(), 5, 4, 3)]  # f0 f1 f2 on purpose, f4 failed
    by_language = {r[0]: r[1:] for r in _collect(sentiment.sentiment_by_language(silver), "language",
                                                   "scored_posts", "language_unscored_posts")}
    assert by_language["ja"] == (0, 1) and by_language["fr"] == (0, 1) and by_language["pt-br"] == (1, 0)
    threat_languages = {r[0]: r[1] for r in _collect(threat.threat_by_language(silver), "language",
                                                       "language_unscored_posts")}
    assert threat_languages["pt-br"] == 1 and threat_languages["fr"] == 0 and threat_languages["es"] == 0


def test_watermark_is_previous_max_minus_delay():
    watermark = datetime(2024, 1, 1, 12, 20)
    assert windowed.watermark_for(None, timedelta(minutes=10)) is None
    assert windowed.watermark_for(datetime(2024, 1, 1, 12, 30), timedelta(minutes=10)) == watermark


def test_split_late_rows(spark):
    base = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    rows = [post(f"p{m}", base + timedelta(minutes=m, seconds=30)) for m in (18, 19, 20, 25)]
    windowed_posts = windowed.with_minute_window(_frame(spark, rows))
    on_time, late = windowed.split_late(windowed_posts, datetime(2024, 1, 1, 12, 20))
    # 12:19:30 is in [12:19, 12:20): its window ended at the watermark -> late; 12:20:30 is on time
    assert sorted(r["post_id"] for r in late.collect()) == ["p18", "p19"]
    assert sorted(r["post_id"] for r in on_time.collect()) == ["p20", "p25"]
    everything, nothing = windowed.split_late(windowed_posts, None)
    assert everything.count() == 4 and nothing.count() == 0
