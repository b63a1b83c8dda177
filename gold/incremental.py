"""Incremental gold: which keys a set of silver changes touches, and how each gold table is rebuilt for
those keys only.

Every gold table is one of two kinds:
- **per day** (posts_daily, posts_hourly, hashtags_daily, top_hashtag_daily, threat_daily,
  sentiment_daily): its rows for a UTC day depend only on that day's posts, so the table's own builder runs
  on the live posts of the affected days and replaces those days' rows;
- **all time** (user_activity, active_users, user_post_length by user; threat_by_hashtag,
  sentiment_by_hashtag by hashtag; threat_by_language, sentiment_by_language by language): a row depends on
  posts of any day, so it is re-aggregated from a partial table at (key, day) grain — the
  `gold_state.*_daily` tables below, themselves per-day tables — for the affected keys only.

A key is affected when a changed silver row (its pre-image or its new version: an edit can move a post to
another hashtag, a delete removes it) carries it. Rebuilding a key from the current silver is idempotent, so
a run that dies half-way is repaired by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.gold import activity, hashtags, sentiment, threat
from tootlake.gold.base import UNKNOWN_LANGUAGE, live_posts, post_hashtags, user_acct

# Per-day tables: gold name -> builder on silver posts (the same functions as the full rebuild).
PER_DAY = {
    activity.POSTS_DAILY.short_name: activity.posts_daily,
    activity.POSTS_HOURLY.short_name: activity.posts_hourly,
    hashtags.HASHTAGS_DAILY.short_name: hashtags.hashtags_daily,
    hashtags.TOP_HASHTAG_DAILY.short_name: hashtags.top_hashtag_daily,
    threat.THREAT_DAILY.short_name: threat.threat_daily,
    sentiment.SENTIMENT_DAILY.short_name: sentiment.sentiment_daily,
}

# Partial tables (one row per key and UTC day with >= 1 live post): not gold tables of their own.
USER_DAILY = "gold_state.user_daily"
HASHTAG_DAILY = "gold_state.hashtag_daily"
LANGUAGE_DAILY = "gold_state.language_daily"

THREAT_COUNTS = tuple(m for m in threat.MEASURES if m != "hate_share")
SENTIMENT_COUNTS = tuple(m for m in sentiment.MEASURES
                         if m not in ("positive_share", "negative_share", "net_sentiment"))


def language_key() -> Column:
    return F.coalesce(F.lower("language"), F.lit(UNKNOWN_LANGUAGE))


# --- what a change touches ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AffectedKeys:
    days: list  # datetime.date
    users: list[str | None]
    hashtags: list[str]
    languages: list[str]


def affected_keys(changes: DataFrame) -> AffectedKeys:
    """The keys carried by change-feed rows of silver/posts (any change type; tombstone rows too, since
    their pre-images carry the live post). One pass over the changes, collected on the driver: bounded by
    the batch, not the lake."""
    tags = F.filter(F.transform(F.coalesce("hashtags", F.array()), lambda t: F.lower(F.trim(t))),
                    lambda t: t.isNotNull() & (F.length(t) > 0))
    rows = (changes.where(F.col("created_at").isNotNull())
            .select(F.to_date("created_at").alias("day"), user_acct().alias("user"),
                    language_key().alias("language"), F.array_distinct(tags).alias("tags"))
            .distinct().collect())
    users = {r["user"] for r in rows}  # None too: a user-less group
    return AffectedKeys(sorted({r["day"] for r in rows}), sorted(users, key=lambda u: (u is None, u or "")),
                        sorted({tag for r in rows for tag in r["tags"]}),
                        sorted({r["language"] for r in rows}))


def on_days(posts: DataFrame, days: list) -> DataFrame:
    """The silver rows created on `days` (UTC), as ranges on created_at: Delta's file statistics skip the
    files of other days."""
    from datetime import UTC, datetime, time, timedelta

    if not days:
        return posts.where(F.lit(False))
    condition = None
    for day in days:
        start = datetime.combine(day, time(), tzinfo=UTC)
        one = (F.col("created_at") >= F.lit(start)) & (F.col("created_at") < F.lit(start + timedelta(days=1)))
        condition = one if condition is None else condition | one
    return posts.where(condition)


# --- partial tables at (key, day) grain --------------------------------------------------------------
def user_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per user and UTC day with >= 1 live post: what user_activity / user_post_length add up."""
    return live_posts(silver_posts).groupBy("user_acct", "post_date").agg(
        F.count("*").alias("posts"),
        F.min("created_at").alias("first_post_at"),
        F.max("created_at").alias("last_post_at"),
        F.sum("text_length").cast("long").alias("text_length_sum"),
        F.count("text_length").alias("text_length_n"),
        F.min("text_length").alias("min_text_length"),
        F.max("text_length").alias("max_text_length"),
    )


def _count_measures() -> list[Column]:
    named = dict(zip(threat.MEASURES, threat.threat_measures(), strict=True))
    counts = [named[m].alias(f"threat_{m}") for m in THREAT_COUNTS]
    named = dict(zip(sentiment.MEASURES, sentiment.sentiment_measures(), strict=True))
    return counts + [named[m].alias(f"sentiment_{m}") for m in SENTIMENT_COUNTS]


def hashtag_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per hashtag and UTC day: the threat and sentiment counts of the live posts carrying it."""
    return post_hashtags(silver_posts).groupBy("hashtag", "post_date").agg(*_count_measures())


def language_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per post language and UTC day: the threat and sentiment counts of its live posts."""
    return (live_posts(silver_posts).withColumn("language", language_key())
            .groupBy("language", "post_date").agg(*_count_measures()))


# (partial table, builder, its key column)
PARTIALS = (
    (USER_DAILY, user_daily, "user_acct"),
    (HASHTAG_DAILY, hashtag_daily, "hashtag"),
    (LANGUAGE_DAILY, language_daily, "language"),
)


# --- all-time tables from the partials ----------------------------------------------------------------
def user_activity_from(daily: DataFrame) -> DataFrame:
    return daily.groupBy("user_acct").agg(
        F.sum("posts").cast("long").alias("posts"),
        F.count("*").alias("active_days"),
        F.min("first_post_at").alias("first_post_at"),
        F.max("last_post_at").alias("last_post_at"),
    )


def user_post_length_from(daily: DataFrame) -> DataFrame:
    n = F.sum("text_length_n")
    return daily.groupBy("user_acct").agg(
        F.sum("posts").cast("long").alias("posts"),
        F.when(n > 0, F.sum("text_length_sum") / n).alias("avg_text_length"),
        F.min("min_text_length").alias("min_text_length"),
        F.max("max_text_length").alias("max_text_length"),
    )


def threat_from(daily: DataFrame, key: str) -> DataFrame:
    sums = {m: F.sum(f"threat_{m}").cast("long") for m in THREAT_COUNTS}
    share = F.when(sums["hate_scored_posts"] > 0, sums["hate_posts"] / sums["hate_scored_posts"])
    return daily.groupBy(key).agg(*[c.alias(m) for m, c in sums.items()], share.alias("hate_share"))


def sentiment_from(daily: DataFrame, key: str) -> DataFrame:
    sums = {m: F.sum(f"sentiment_{m}").cast("long") for m in SENTIMENT_COUNTS}
    scored, positive, negative = sums["scored_posts"], sums["positive_posts"], sums["negative_posts"]
    return daily.groupBy(key).agg(
        *[c.alias(m) for m, c in sums.items()],
        F.when(scored > 0, positive / scored).alias("positive_share"),
        F.when(scored > 0, negative / scored).alias("negative_share"),
        F.when(scored > 0, (positive - negative) / scored).alias("net_sentiment"),
    )


def active_users_from(daily: DataFrame, active_min: int) -> DataFrame:
    if active_min < 1:
        raise ValueError(f"active_min must be >= 1, got {active_min}")
    return (user_activity_from(daily).where(F.col("posts") >= F.lit(active_min))
            .withColumn("active_min", F.lit(active_min)))


# gold name -> (partial table, key column, function(partial rows of the affected keys, active_min))
ALL_TIME = {
    activity.USER_ACTIVITY.short_name: (USER_DAILY, "user_acct", lambda d, _: user_activity_from(d)),
    activity.ACTIVE_USERS.short_name: (USER_DAILY, "user_acct", active_users_from),
    activity.USER_POST_LENGTH.short_name: (USER_DAILY, "user_acct", lambda d, _: user_post_length_from(d)),
    threat.THREAT_BY_HASHTAG.short_name: (HASHTAG_DAILY, "hashtag", lambda d, _: threat_from(d, "hashtag")),
    sentiment.SENTIMENT_BY_HASHTAG.short_name: (HASHTAG_DAILY, "hashtag",
                                                lambda d, _: sentiment_from(d, "hashtag")),
    threat.THREAT_BY_LANGUAGE.short_name: (LANGUAGE_DAILY, "language",
                                           lambda d, _: threat_from(d, "language")),
    sentiment.SENTIMENT_BY_LANGUAGE.short_name: (LANGUAGE_DAILY, "language",
                                                 lambda d, _: sentiment_from(d, "language")),
}


def keys_of(affected: AffectedKeys, key: str) -> list:
    return {"user_acct": affected.users, "hashtag": affected.hashtags, "language": affected.languages}[key]
