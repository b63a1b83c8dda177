"""A tiny demo-like lake written with delta-rs (no Spark) for the analysis tests and the notebook test.

Versions of silver.posts (hand-checked answers live in the tests):
- v0: a/1 alice en [Python, python , data] 10:05 NONE positive; a/2 bob de [python] 10:45 HIGH hate negative;
      a/3 alice (no language) [] 11:10 LOW neutral; a/4 a tombstone (is_deleted, ignored everywhere).
- v1: a/2 re-scored NONE / not hate; a/3 gone; a/5 carol@other.example en [data] 12:00 unscored.
Also silver.posts_quarantine (3 records, 4 rule hits), bronze.posts_raw (2 records) and
gold.sentiment_by_hashtag (3 hashtags, written once).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake
from pyspark.sql.pandas.types import to_arrow_schema

from tootlake.silver.schema import POSTS_SCHEMA, QUARANTINE_SCHEMA

POSTS_ARROW = to_arrow_schema(POSTS_SCHEMA, timezone="UTC")
QUARANTINE_ARROW = to_arrow_schema(QUARANTINE_SCHEMA, timezone="UTC")
UPDATED = datetime(2023, 5, 2, tzinfo=UTC)


def at(hour: int, minute: int) -> datetime:
    return datetime(2023, 5, 1, hour, minute, tzinfo=UTC)


def post(post_id: str, acct: str, created_at: datetime, **fields: Any) -> dict[str, Any]:
    row = {name: None for name in POSTS_ARROW.names}
    row.update(post_id=post_id, account_acct=acct, instance="mastodon.social", created_at=created_at,
               is_deleted=False, updated_at=UPDATED, platform="mastodon", text_length=10, hashtags=[])
    row.update(fields)
    return row


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


V0 = [
    post("a/1", "alice", at(10, 5), language="en", hashtags=["Python", "python ", "data"],
         threat_level="NONE", contains_hate_speech=0, sentiment_label="positive"),
    post("a/2", "bob", at(10, 45), language="de", hashtags=["python"], threat_level="HIGH",
         contains_hate_speech=1, sentiment_label="negative"),
    post("a/3", "alice", at(11, 10), language=None, threat_level="LOW", contains_hate_speech=0,
         sentiment_label="neutral", text_length=30),
    post("a/4", "dave", at(11, 20), is_deleted=True, hashtags=None),
]
V1 = [
    V0[0],
    {**V0[1], "threat_level": "NONE", "contains_hate_speech": 0},
    V0[3],
    post("a/5", "carol@other.example", at(12, 0), language="en", hashtags=["data"]),
]


def build_lake(lake: Path) -> Path:
    """Write the tables above under `lake` (<lake>/<layer>/<table>) and return `lake`."""
    posts = lake / "silver" / "posts"
    write_deltalake(posts, rows_to_table(V0, POSTS_ARROW))
    write_deltalake(posts, rows_to_table(V1, POSTS_ARROW), mode="overwrite")
    quarantined = datetime(2023, 5, 1, 13, 0, tzinfo=UTC)
    write_deltalake(lake / "silver" / "posts_quarantine", rows_to_table([
        {"key": "k1", "value": "{", "rules": ["envelope_corrupt"], "reason": "bad json",
         "bronze_partition": 0, "bronze_offset": 7, "quarantined_at": quarantined},
        {"key": "k2", "value": "{}", "rules": ["missing_status", "missing_key"], "reason": "no status",
         "bronze_partition": 1, "bronze_offset": 3, "quarantined_at": quarantined},
        {"key": "k3", "value": "{}", "rules": ["missing_status"], "reason": "no status",
         "bronze_partition": 2, "bronze_offset": 9, "quarantined_at": quarantined},
    ], QUARANTINE_ARROW))
    write_deltalake(lake / "bronze" / "posts_raw", pa.table({
        "key": ["a/1", "a/2"], "value": ["{}", "{}"], "topic": ["t", "t"],
        "partition": pa.array([0, 1], pa.int32()), "offset": pa.array([5, 6], pa.int64())}))
    write_deltalake(lake / "gold" / "sentiment_by_hashtag", pa.table({
        "hashtag": ["python", "data", "rare"], "posts": [10, 6, 2],
        "negative_posts": [2, 3, 0], "neutral_posts": [3, 0, 1], "positive_posts": [5, 3, 1],
        "scored_posts": [10, 6, 2], "unscored_posts": [0, 0, 0],
        "positive_share": [0.5, 0.5, 0.5], "negative_share": [0.2, 0.5, 0.0],
        "net_sentiment": [0.3, 0.0, 0.5]}))
    return lake
