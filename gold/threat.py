"""Threat summaries from silver's scoring (threat_level NONE|LOW|MEDIUM|HIGH, contains_hate_speech 0/1).

Shared measures: `posts` live posts; `<level>_posts` posts per threat level; `unscored_posts` posts whose
threat_level is null (scoring failed or pending, or left unscored on purpose); `language_unscored_posts`
those of them the threat model left unscored on purpose because their language is outside its validated
coverage (or unknown; silver's scoring_note, tootlake.models.coverage); `hate_scored_posts` posts whose
contains_hate_speech is known; `hate_posts` posts with contains_hate_speech = 1; `hate_share` =
hate_posts / hate_scored_posts (null when no post is scored). Shares are kept with their numerator and
denominator so they can be re-aggregated.
"""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.table import between, has_rows, unique_values
from tootlake.catalog.vocab import THREAT_LEVELS
from tootlake.gold.base import UNKNOWN_LANGUAGE, batch_table, live_posts, post_hashtags
from tootlake.silver.coverage import declined_by

# The columns threat_measures() adds.
MEASURES = ("posts", *[f"{name.lower()}_posts" for name in THREAT_LEVELS], "unscored_posts",
            "language_unscored_posts", "hate_scored_posts", "hate_posts", "hate_share")


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


def threat_measures() -> list[Column]:
    level = F.upper(F.col("threat_level"))
    hate_known = F.count("contains_hate_speech")
    hate = _count_if(F.col("contains_hate_speech") == 1)
    return [
        F.count("*").alias("posts"),
        *[_count_if(level == name).alias(f"{name.lower()}_posts") for name in THREAT_LEVELS],
        _count_if(F.col("threat_level").isNull()).alias("unscored_posts"),
        _count_if(declined_by("threat") & F.col("threat_level").isNull()).alias("language_unscored_posts"),
        hate_known.alias("hate_scored_posts"),
        hate.alias("hate_posts"),
        F.when(hate_known > 0, hate / hate_known).alias("hate_share"),
    ]


def threat_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC day with at least one live post: posts per threat level and hate-speech share."""
    return live_posts(silver_posts).groupBy("post_date").agg(*threat_measures())


def threat_by_hashtag(silver_posts: DataFrame) -> DataFrame:
    """One row per hashtag (all time): posts per threat level and hate-speech share of posts carrying it."""
    return post_hashtags(silver_posts).groupBy("hashtag").agg(*threat_measures())


def threat_by_language(silver_posts: DataFrame) -> DataFrame:
    """One row per post language (all time; null language is 'und'): threat levels and hate-speech share."""
    return (
        live_posts(silver_posts)
        .withColumn("language", F.coalesce(F.lower("language"), F.lit(UNKNOWN_LANGUAGE)))
        .groupBy("language")
        .agg(*threat_measures())
    )


THREAT_DAILY = batch_table(
    "gold.threat_daily", "one row per UTC day with >= 1 live post: posts per threat level, hate share",
    ("post_date",), ("post_date", *MEASURES),
    suite=(has_rows(), unique_values("post_date"), between("posts", 0)),
)
THREAT_BY_HASHTAG = batch_table(
    "gold.threat_by_hashtag", "one row per hashtag (all time)", ("hashtag",), ("hashtag", *MEASURES),
)
THREAT_BY_LANGUAGE = batch_table(
    "gold.threat_by_language", "one row per post language ('und' = unknown, all time)", ("language",),
    ("language", *MEASURES),
)
