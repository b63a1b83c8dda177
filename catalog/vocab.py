"""Values more than one layer agrees on: defined here once, imported everywhere else."""

from __future__ import annotations

from typing import Literal, get_args

# silver/posts.threat_level (the threat model's score bucketed; gold counts posts per level).
THREAT_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
# silver/posts.sentiment_label: the sentiment model's classes, in its output order.
SENTIMENT_LABELS = ("negative", "neutral", "positive")
# silver/posts.threat_label: the threat model's classes, in its output order.
THREAT_LABELS = ("none", "offensive", "hate")
# silver/posts.platform: the rows of the sync targets' PLATFORMS table (sql/*/010_platforms.sql).
PLATFORMS = ("mastodon", "bluesky", "telegram")
# silver/posts.processing_status.
PROCESSING_STATUSES = ("SUCCESS", "FAILED", "RETRY")

# The Kafka envelope's `event` (bronze/records.py builds it, silver's quarantine checks it).
EventKind = Literal["status", "status.update", "delete"]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)

# The lake's layers, in data-flow order (`<lake>/<layer>/<table>`).
LAYERS = ("bronze", "silver", "gold", "dq")

# Logical names of the tables that light processes (status, drill, the supervisor, benchmarks) name without
# importing the Spark-side declarations; each declaration takes its name from here.
BRONZE_POSTS_RAW = "bronze.posts_raw"
SILVER_POSTS = "silver.posts"
SILVER_POSTS_QUARANTINE = "silver.posts_quarantine"
GOLD_POSTS_PER_MINUTE = "gold.posts_per_minute"
DQ_METRICS = "dq.metrics"
