"""The batch gold tables by name: `name -> function(silver_posts, active_min) -> DataFrame`.

Names are the declarations' short names (`gold.<name>`, declared beside each function with its grain).
"""

from collections.abc import Callable

from pyspark.sql import DataFrame

from tootlake.gold import activity, hashtags, sentiment, threat, windowed

GoldBuilder = Callable[[DataFrame, int], DataFrame]

BATCH_TABLES: dict[str, GoldBuilder] = {
    activity.POSTS_HOURLY.short_name: lambda posts, _: activity.posts_hourly(posts),
    activity.POSTS_DAILY.short_name: lambda posts, _: activity.posts_daily(posts),
    activity.USER_ACTIVITY.short_name: lambda posts, _: activity.user_activity(posts),
    activity.ACTIVE_USERS.short_name: lambda posts, active_min: activity.active_users(posts, active_min),
    activity.USER_POST_LENGTH.short_name: lambda posts, _: activity.user_post_length(posts),
    hashtags.HASHTAGS_DAILY.short_name: lambda posts, _: hashtags.hashtags_daily(posts),
    hashtags.TOP_HASHTAG_DAILY.short_name: lambda posts, _: hashtags.top_hashtag_daily(posts),
    threat.THREAT_DAILY.short_name: lambda posts, _: threat.threat_daily(posts),
    threat.THREAT_BY_HASHTAG.short_name: lambda posts, _: threat.threat_by_hashtag(posts),
    threat.THREAT_BY_LANGUAGE.short_name: lambda posts, _: threat.threat_by_language(posts),
    sentiment.SENTIMENT_DAILY.short_name: lambda posts, _: sentiment.sentiment_daily(posts),
    sentiment.SENTIMENT_BY_HASHTAG.short_name: lambda posts, _: sentiment.sentiment_by_hashtag(posts),
    sentiment.SENTIMENT_BY_LANGUAGE.short_name: lambda posts, _: sentiment.sentiment_by_language(posts),
}

# Written by the streaming job (pipelines/jobs/gold_stream.py), not by the batch run.
STREAM_TABLES = (windowed.POSTS_PER_MINUTE.short_name, windowed.LATE_EVENTS.short_name)
