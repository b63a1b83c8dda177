"""Post volume and user activity tables (5SPAR's analytics, on live silver posts)."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.table import between, has_rows, not_null, unique_values
from tootlake.gold.base import batch_table, live_posts


def posts_hourly(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC hour that has at least one live post (hours without posts have no row)."""
    return (
        live_posts(silver_posts)
        .groupBy("hour_start")
        .agg(F.count("*").alias("posts"), F.countDistinct("user_acct").alias("users"))
        .withColumn("post_date", F.to_date("hour_start"))
        .select("post_date", "hour_start", "posts", "users")
    )


def posts_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC day that has at least one live post (an empty day has no row)."""
    return (
        live_posts(silver_posts)
        .groupBy("post_date")
        .agg(
            F.count("*").alias("posts"),
            F.countDistinct("user_acct").alias("users"),
            F.countDistinct("hour_start").alias("active_hours"),
        )
    )


def user_activity(silver_posts: DataFrame) -> DataFrame:
    """One row per user (user_acct) with at least one live post."""
    return (
        live_posts(silver_posts)
        .groupBy("user_acct")
        .agg(
            F.count("*").alias("posts"),
            F.countDistinct("post_date").alias("active_days"),
            F.min("created_at").alias("first_post_at"),
            F.max("created_at").alias("last_post_at"),
        )
    )


def active_users(silver_posts: DataFrame, active_min: int) -> DataFrame:
    """One row per user with at least `active_min` live posts (exactly `active_min` qualifies)."""
    if active_min < 1:
        raise ValueError(f"active_min must be >= 1, got {active_min}")
    return (
        user_activity(silver_posts)
        .where(F.col("posts") >= F.lit(active_min))
        .withColumn("active_min", F.lit(active_min))
        .select("user_acct", "posts", "active_days", "first_post_at", "last_post_at", "active_min")
    )


def user_post_length(silver_posts: DataFrame) -> DataFrame:
    """One row per user with at least one live post: average plain-text length of their posts.

    `avg_text_length` averages the non-null `text_length` values (null when none is known).
    """
    return (
        live_posts(silver_posts)
        .groupBy("user_acct")
        .agg(
            F.count("*").alias("posts"),
            F.avg("text_length").alias("avg_text_length"),
            F.min("text_length").alias("min_text_length"),
            F.max("text_length").alias("max_text_length"),
        )
    )


_USER_ACTIVITY = ("user_acct", "posts", "active_days", "first_post_at", "last_post_at")
POSTS_HOURLY = batch_table(
    "gold.posts_hourly", "one row per UTC hour with >= 1 live post", ("hour_start",),
    ("post_date", "hour_start", "posts", "users"),
    suite=(has_rows(), *not_null("hour_start"), unique_values("hour_start"), between("posts", 1)),
)
POSTS_DAILY = batch_table(
    "gold.posts_daily", "one row per UTC day with >= 1 live post", ("post_date",),
    ("post_date", "posts", "users", "active_hours"),
    suite=(has_rows(), *not_null("post_date"), unique_values("post_date"), between("posts", 1)),
)
USER_ACTIVITY = batch_table(
    "gold.user_activity", "one row per user (user_acct) with >= 1 live post", ("user_acct",), _USER_ACTIVITY,
    suite=(has_rows(), unique_values("user_acct"), between("posts", 1)),
)
ACTIVE_USERS = batch_table(
    "gold.active_users", "one row per user with >= ACTIVE_MIN live posts", ("user_acct",),
    (*_USER_ACTIVITY, "active_min"),
)
USER_POST_LENGTH = batch_table(
    "gold.user_post_length", "one row per user with >= 1 live post: average plain-text length",
    ("user_acct",), ("user_acct", "posts", "avg_text_length", "min_text_length", "max_text_length"),
)
