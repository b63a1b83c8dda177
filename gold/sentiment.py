"""Sentiment summaries from silver's sentiment model (sentiment_label negative|neutral|positive).

Shared measures: `posts` live posts; `<label>_posts` per label; `scored_posts` with a label and
`unscored_posts` with a null one; `language_unscored_posts` those of them the sentiment model left unscored
on purpose because their language is outside its validated coverage (or unknown; silver's scoring_note,
tootlake.models.coverage); `positive_share` / `negative_share` over scored posts; `net_sentiment` =
(positive - negative) / scored (each null when no post is scored).
"""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.table import between, unique_values
from tootlake.catalog.vocab import SENTIMENT_LABELS
from tootlake.gold.base import UNKNOWN_LANGUAGE, batch_table, live_posts, post_hashtags
from tootlake.silver.coverage import declined_by

# The columns sentiment_measures() adds.
MEASURES = ("posts", *[f"{name}_posts" for name in SENTIMENT_LABELS], "scored_posts", "unscored_posts",
            "language_unscored_posts", "positive_share", "negative_share", "net_sentiment")


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


def sentiment_measures() -> list[Column]:
    label = F.lower(F.col("sentiment_label"))
    scored = F.count("sentiment_label")
    positive = _count_if(label == "positive")
    negative = _count_if(label == "negative")
    return [
        F.count("*").alias("posts"),
        *[_count_if(label == name).alias(f"{name}_posts") for name in SENTIMENT_LABELS],
        scored.alias("scored_posts"),
        (F.count("*") - scored).alias("unscored_posts"),
        _count_if(declined_by("sentiment") & F.col("sentiment_label").isNull())
        .alias("language_unscored_posts"),
        F.when(scored > 0, positive / scored).alias("positive_share"),
        F.when(scored > 0, negative / scored).alias("negative_share"),
        F.when(scored > 0, (positive - negative) / scored).alias("net_sentiment"),
    ]


def sentiment_daily(silver_posts: DataFrame) -> DataFrame:
    """One row per UTC day with at least one live post: posts per sentiment label and shares."""
    return live_posts(silver_posts).groupBy("post_date").agg(*sentiment_measures())


def sentiment_by_hashtag(silver_posts: DataFrame) -> DataFrame:
    """One row per hashtag (all time): sentiment label counts and shares of live posts carrying it."""
    return post_hashtags(silver_posts).groupBy("hashtag").agg(*sentiment_measures())


def sentiment_by_language(silver_posts: DataFrame) -> DataFrame:
    """One row per post language (all time; null language is 'und'): sentiment label counts and shares,
    and how many posts were left unscored because the model does not cover the language."""
    return (
        live_posts(silver_posts)
        .withColumn("language", F.coalesce(F.lower("language"), F.lit(UNKNOWN_LANGUAGE)))
        .groupBy("language")
        .agg(*sentiment_measures())
    )


SENTIMENT_DAILY = batch_table(
    "gold.sentiment_daily", "one row per UTC day with >= 1 live post: posts per sentiment label and shares",
    ("post_date",), ("post_date", *MEASURES),
    suite=(unique_values("post_date"), between("positive_share", 0.0, 1.0)),
)
SENTIMENT_BY_HASHTAG = batch_table(
    "gold.sentiment_by_hashtag", "one row per hashtag (all time)", ("hashtag",), ("hashtag", *MEASURES),
)
SENTIMENT_BY_LANGUAGE = batch_table(
    "gold.sentiment_by_language", "one row per post language ('und' = unknown, all time)", ("language",),
    ("language", *MEASURES),
)
