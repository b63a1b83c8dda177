"""Shared building blocks of the gold tables: which silver rows count, and the derived keys.

Definitions every gold table shares (the tests recompute them independently):
- a *live post* is a silver row with `is_deleted = false` and a `created_at` (tombstones are ignored);
- `post_date` / `hour_start` are the UTC day / hour of `created_at` (silver stores UTC);
- `user_acct` is `account_acct`, qualified with `@<instance>` when it is a local acct without a domain, so
  that `alice` on two instances are two users;
- a post's hashtags are its distinct, lower-cased, non-empty `hashtags` (repeated in one post: counted once).
"""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.rules import aggregate_rules
from tootlake.catalog.table import Expectation, Table

UNKNOWN_LANGUAGE = "und"  # ISO 639 "undetermined": posts whose language is null


def user_acct() -> Column:
    acct = F.col("account_acct")
    return (
        F.when(acct.contains("@") | F.col("instance").isNull(), acct)
        .otherwise(F.concat(acct, F.lit("@"), F.col("instance")))
    )


def live_posts(silver_posts: DataFrame) -> DataFrame:
    """One row per live (not deleted) silver post, with post_date, hour_start and user_acct added."""
    if "scoring_note" not in silver_posts.columns:  # a silver table from before the column: no notes
        silver_posts = silver_posts.withColumn("scoring_note", F.lit(None).cast("string"))
    return (
        silver_posts.where(~F.col("is_deleted") & F.col("created_at").isNotNull())
        .withColumn("post_date", F.to_date("created_at"))
        .withColumn("hour_start", F.date_trunc("hour", "created_at"))
        .withColumn("user_acct", user_acct())
    )


def post_hashtags(silver_posts: DataFrame) -> DataFrame:
    """One row per live post and distinct hashtag; posts without hashtags have no row."""
    tags = F.array_distinct(
        F.filter(F.transform(F.coalesce("hashtags", F.array()), lambda t: F.lower(F.trim(t))),
                 lambda t: t.isNotNull() & (F.length(t) > 0))
    )
    return live_posts(silver_posts).withColumn("hashtag", F.explode(tags))


# The hop whose rules every batch gold table gets: checked around its overwrite by the gold job.
SILVER_TO_GOLD = "silver->gold"


def batch_table(name: str, grain: str, key: tuple[str, ...], columns: tuple[str, ...],
                suite: tuple[Expectation, ...] = ()) -> Table:
    """A batch gold table's declaration: rebuilt from silver each run, with the aggregate rules
    (tootlake.catalog.rules.aggregate_rules: counts not negative, size change) at silver -> gold."""
    return Table(name, grain, key, columns, rules={SILVER_TO_GOLD: aggregate_rules(key, columns)},
                 suite=suite)
