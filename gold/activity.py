"""Post volume and user activity tables (5SPAR's analytics, on live silver posts)."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tootlake.gold.base import live_posts


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
