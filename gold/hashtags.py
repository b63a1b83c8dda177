"""Hashtag usage tables."""

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from tootlake.catalog.table import between, unique_together, unique_values
from tootlake.gold.base import batch_table, post_hashtags


def hashtags_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC day and hashtag: live posts using the tag and distinct users who did."""
    return (
        post_hashtags(silver_posts)
        .groupBy("post_date", "hashtag")
        .agg(F.count("*").alias("posts"), F.countDistinct("user_acct").alias("users"))
    )


def top_hashtag_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC day that has at least one hashtag: the day's most used hashtag.

    Most used = most live posts carrying the tag that day. Ties are broken deterministically by the
    smallest hashtag in binary (code point) string order, so reruns always pick the same tag;
    `tied_hashtags` says how many tags shared the top count (1 = no tie).
    """
    daily = hashtags_daily(silver_posts)
    by_day = Window.partitionBy("post_date")
    ranked = Window.partitionBy("post_date").orderBy(F.col("posts").desc(), F.col("hashtag").asc())
    return (
        daily.withColumn("top_posts", F.max("posts").over(by_day))
        .withColumn("tied_hashtags", F.sum(F.when(F.col("posts") == F.col("top_posts"), 1).otherwise(0))
                    .over(by_day).cast("int"))
        .withColumn("rank", F.row_number().over(ranked))
        .where(F.col("rank") == 1)
        .select("post_date", "hashtag", "posts", "users", "tied_hashtags")
    )


HASHTAGS_DAILY = batch_table(
    "gold.hashtags_daily", "one row per UTC day and hashtag", ("post_date", "hashtag"),
    ("post_date", "hashtag", "posts", "users"),
    suite=(unique_together("post_date", "hashtag"), between("posts", 1)),
)
TOP_HASHTAG_DAILY = batch_table(
    "gold.top_hashtag_daily", "one row per UTC day with >= 1 hashtag: its most used tag (ties: smallest tag)",
    ("post_date",), ("post_date", "hashtag", "posts", "users", "tied_hashtags"),
    suite=(unique_values("post_date"),),
)
