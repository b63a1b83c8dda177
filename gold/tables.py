"""The batch gold tables by name: `name -> function(silver_posts, active_min) -> DataFrame`.

Logical names are `gold.<name>`; every function is pure and documents its grain.
"""

from collections.abc import Callable

from pyspark.sql import DataFrame

from tootlake.gold import activity, hashtags, sentiment, threat

GoldBuilder = Callable[[DataFrame, int], DataFrame]

BATCH_TABLES: dict[str, GoldBuilder] = {
    "posts_hourly": lambda posts, _: activity.posts_hourly(posts),
    "posts_daily": lambda posts, _: activity.posts_daily(posts),
    "user_activity": lambda posts, _: activity.user_activity(posts),
    "active_users": lambda posts, active_min: activity.active_users(posts, active_min),
    "user_post_length": lambda posts, _: activity.user_post_length(posts),
    "hashtags_daily": lambda posts, _: hashtags.hashtags_daily(posts),
    "top_hashtag_daily": lambda posts, _: hashtags.top_hashtag_daily(posts),
    "threat_daily": lambda posts, _: threat.threat_daily(posts),
    "threat_by_hashtag": lambda posts, _: threat.threat_by_hashtag(posts),
    "threat_by_language": lambda posts, _: threat.threat_by_language(posts),
    "sentiment_daily": lambda posts, _: sentiment.sentiment_daily(posts),
    "sentiment_by_hashtag": lambda posts, _: sentiment.sentiment_by_hashtag(posts),
}

# Written by the streaming job (pipelines/jobs/gold_stream.py), not by the batch run.
STREAM_TABLES = ("posts_per_minute", "late_events")
