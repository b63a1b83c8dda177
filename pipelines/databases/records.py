"""Pure mapping from silver `posts` rows to the sync staging rows (one row per post, latest wins).

No I/O here: the PostgreSQL and Oracle writers both stage exactly these columns, so the two targets
get the same values and the same text policy.

Text policy (both targets):
- U+0000 (NUL) is removed from every string: PostgreSQL `text` cannot hold it, and keeping the two
  targets identical matters more than a character no reader can display.
- Lone UTF-16 surrogates (not valid UTF-8) become U+FFFD.
- Everything else (quotes, backslashes, tabs/newlines, emoji, RTL marks, SQL-looking text) is stored verbatim.

Order: a post's rows are ordered by the Delta commit of silver/posts that wrote them (the change data
feed's `_commit_version`), not by silver's wall-clock `updated_at` (a clock stepping back would make a
newer row look older). Within one commit a physical `delete` loses to the row inserted beside it: that
pair is a file rewrite (e.g. `restore`), not a delete of the post. Rows without a version (or from another
silver table: a new lake) fall back to `updated_at`, a tombstone winning a tie.

Limits: values longer than a target column (silver.schema.TARGET_LIMITS) are rejected before any
database sees them (`too_long`), never truncated.

Delete policy: a silver tombstone (`is_deleted = true`) becomes a staging row with `is_deleted = True`;
the writers then delete the PROCESSEDPOSTS row and then the RAWPOSTS row of that post, if the tombstone
is at least as new as what the target holds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")

# platform name (silver `platform`, lower-case) -> PLATFORMS.platform_id; matches the seed scripts
# sql/postgres/010_platforms.sql and sql/oracle/010_platforms.sql (a test checks both).
PLATFORM_IDS = {"mastodon": 1, "bluesky": 2, "telegram": 3}
DEFAULT_PLATFORM = "mastodon"
PROCESSING_STATUSES = ("SUCCESS", "FAILED", "RETRY")

# (column, kind) of the staging table, in COPY / bind order. kind drives encoding and DDL per target.
STAGE_COLUMNS: list[tuple[str, str]] = [
    ("post_id", "key"),
    ("is_deleted", "bool"),
    ("platform_id", "int"),
    ("hashtag", "text"),
    ("username", "text"),
    ("display_name", "text"),
    ("post_content", "clob"),
    ("created_at", "ts"),
    ("language", "text"),
    ("url", "text"),
    ("visibility", "text"),
    ("collected_at", "ts"),
    ("instance", "text"),
    ("status_id", "text"),
    ("account_id", "text"),
    ("account_acct", "text"),
    ("edited_at", "ts"),
    ("sensitive", "bool"),
    ("spoiler_text", "clob"),
    ("content_html", "clob"),
    ("text_length", "int"),
    ("is_reblog", "bool"),
    ("replies_count", "int"),
    ("reblogs_count", "int"),
    ("favourites_count", "int"),
    ("threat_level", "text"),
    ("threat_label", "text"),
    ("threat_score", "float"),
    ("contains_hate_speech", "int"),
    ("sentiment_label", "text"),
    ("sentiment_score", "float"),
    ("threat_model_version", "text"),
    ("sentiment_model_version", "text"),
    ("processing_status", "text"),
    ("scoring_note", "text"),  # why the scores are null on purpose (language outside a model's coverage)
    ("processed_at", "ts"),
    ("deleted_at", "ts"),
    ("updated_at", "ts"),
    ("source_table", "text"),  # the Delta table id of silver/posts
    ("source_version", "int"),  # the change data feed's _commit_version: the order key (see below)
]
STAGE_NAMES = [name for name, _ in STAGE_COLUMNS]

# RAWPOSTS / PROCESSEDPOSTS columns filled from the staging row of the same name (besides the keys).
RAW_COLUMNS = [
    "post_id", "platform_id", "hashtag", "username", "display_name", "post_content", "created_at",
    "language", "url", "visibility", "collected_at", "instance", "status_id", "account_id",
    "account_acct", "edited_at", "sensitive", "spoiler_text", "content_html", "text_length", "is_reblog",
    "replies_count", "reblogs_count", "favourites_count", "updated_at", "source_table", "source_version",
]
PROCESSED_COLUMNS = [
    "platform_id", "hashtag", "post_content", "created_at", "language", "url", "threat_level",
    "contains_hate_speech", "processed_at", "processing_status", "threat_score", "threat_label",
    "sentiment_label", "sentiment_score", "threat_model_version", "sentiment_model_version", "updated_at",
    "source_table", "source_version", "scoring_note",
]

# silver columns the sync reads (the rest of POSTS_SCHEMA stays in the lake)
SILVER_COLUMNS = [
    "post_id", "is_deleted", "platform", "hashtags", "account_username", "account_display_name", "text",
    "created_at", "language", "url", "visibility", "ingested_at", "instance", "status_id", "account_id",
    "account_acct", "edited_at", "sensitive", "spoiler_text", "content_html", "text_length", "is_reblog",
    "replies_count", "reblogs_count", "favourites_count", "threat_level", "threat_label", "threat_score",
    "contains_hate_speech", "sentiment_label", "sentiment_score", "threat_model_version",
    "sentiment_model_version", "processing_status", "deleted_at", "updated_at", "scoring_note",
]


def clean_text(value: str | None) -> str | None:
    """Apply the text policy: drop U+0000, replace lone surrogates with U+FFFD, keep the rest verbatim."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps as aware UTC datetimes (naive input is UTC: Spark's session time zone is UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def platform_id(platform: str | None) -> int:
    name = (platform or DEFAULT_PLATFORM).strip().lower()
    try:
        return PLATFORM_IDS[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {platform!r}: add it to PLATFORMS (sql/*/010_platforms.sql) and PLATFORM_IDS"
        ) from None


def processing_status(value: str | None) -> str:
    """SUCCESS|FAILED from silver; a row silver has not scored yet (null) is RETRY."""
    if value is None:
        return "RETRY"
    status = value.strip().upper()
    if status not in PROCESSING_STATUSES:
        raise ValueError(f"unexpected processing_status {value!r} (expected one of {PROCESSING_STATUSES})")
    return status


def stage_row(post: Mapping[str, Any]) -> tuple:
    """One silver `posts` row (a mapping of POSTS_SCHEMA columns) -> a staging tuple in STAGE_NAMES order."""
    hashtags = post.get("hashtags") or []
    deleted = bool(post.get("is_deleted"))
    updated_at = as_utc(post["updated_at"])
    values = {
        "post_id": clean_text(post["post_id"]),
        "is_deleted": deleted,
        "platform_id": platform_id(post.get("platform")),
        # the older system's single `hashtag` column: every tag, comma-separated, in silver's order
        "hashtag": clean_text(",".join(hashtags)) if hashtags else None,
        "username": post.get("account_username"),
        "display_name": post.get("account_display_name"),
        "post_content": post.get("text"),
        "created_at": as_utc(post.get("created_at")),
        "language": post.get("language"),
        "url": post.get("url"),
        "visibility": post.get("visibility"),
        "collected_at": as_utc(post.get("ingested_at")),
        "instance": post.get("instance"),
        "status_id": post.get("status_id"),
        "account_id": post.get("account_id"),
        "account_acct": post.get("account_acct"),
        "edited_at": as_utc(post.get("edited_at")),
        "sensitive": post.get("sensitive"),
        "spoiler_text": post.get("spoiler_text"),
        "content_html": post.get("content_html"),
        "text_length": post.get("text_length"),
        "is_reblog": post.get("is_reblog"),
        "replies_count": post.get("replies_count"),
        "reblogs_count": post.get("reblogs_count"),
        "favourites_count": post.get("favourites_count"),
        "threat_level": post.get("threat_level"),
        "threat_label": post.get("threat_label"),
        "threat_score": post.get("threat_score"),
        "contains_hate_speech": post.get("contains_hate_speech"),
        "sentiment_label": post.get("sentiment_label"),
        "sentiment_score": post.get("sentiment_score"),
        "threat_model_version": post.get("threat_model_version"),
        "sentiment_model_version": post.get("sentiment_model_version"),
        "processing_status": None if deleted else processing_status(post.get("processing_status")),
        "scoring_note": None if deleted else post.get("scoring_note"),
        # silver's updated_at is when the row (and its scores) last changed: the processing time
        "processed_at": updated_at,
        "deleted_at": as_utc(post.get("deleted_at")),
        "updated_at": updated_at,
        "source_table": post.get("_table_id"),
        "source_version": post.get("_commit_version"),
    }
    row = []
    for name, kind in STAGE_COLUMNS:
        value = values[name]
        if kind in ("text", "clob", "key") and value is not None:
            value = clean_text(value)
        row.append(value)
    return tuple(row)


_KEY = STAGE_NAMES.index("post_id")
_UPDATED = STAGE_NAMES.index("updated_at")
_DELETED = STAGE_NAMES.index("is_deleted")
_VERSION = STAGE_NAMES.index("source_version")
PHYSICAL_DELETE = "delete"  # the change data feed's _change_type of a row removed from the table

# silver column -> staging column checked against TARGET_LIMITS
_LIMITED = {"account_username": "username", "account_display_name": "display_name"}


def too_long(post: Mapping[str, Any]) -> str | None:
    """The first silver column whose value does not fit its sync column, as `column (n chars / m bytes,
    limit ...)`; None when all fit."""
    from tootlake.silver.schema import TARGET_LIMITS

    # a delete writes nothing but its key
    limits = {"post_id": TARGET_LIMITS["post_id"]} if post.get("is_deleted") else TARGET_LIMITS
    for name, (chars, octets) in limits.items():
        value = post.get(name)
        if not isinstance(value, str):
            continue
        size = len(value.encode("utf-8", "replace"))
        if len(value) > chars or size > octets:
            return (f"{_LIMITED.get(name, name)} is {len(value)} chars / {size} bytes, the column holds "
                    f"{chars} chars / {octets} bytes")
    return None


def _order(row: tuple, change_type: str | None) -> tuple:
    # (commit, live beats a physical delete in the same commit, wall clock, tombstone wins a tie)
    version = row[_VERSION] if row[_VERSION] is not None else -1
    return version, change_type != PHYSICAL_DELETE, row[_UPDATED], row[_DELETED]


def latest_per_post(rows: Iterable[tuple | tuple[tuple, str | None]]) -> list[tuple]:
    """Keep one staging row per post_id: the latest silver commit; within a commit a live row beats a
    physical delete; then the newest updated_at, a tombstone winning a tie. Items are staging tuples or
    (staging tuple, change type) pairs.

    The SQL on each target deduplicates again (a MERGE/ON CONFLICT refuses two source rows per key);
    doing it here too keeps the staged batch small.
    """
    best: dict[str, tuple[tuple, tuple]] = {}
    for item in rows:
        row, change = item if len(item) == 2 and isinstance(item[0], tuple) else (item, None)
        key, order = row[_KEY], _order(row, change)
        current = best.get(key)
        if current is None or order > current[1]:
            best[key] = (row, order)
    return [row for row, _ in best.values()]


def stage_rows(posts: Iterable[Mapping[str, Any]]) -> list[tuple]:
    """Silver rows (any order, repeats allowed) -> deduplicated staging tuples."""
    return latest_per_post((stage_row(post), post.get("_change_type")) for post in posts)


def stage_rows_checked(posts: Iterable[Mapping[str, Any]]) -> tuple[list[tuple], list[tuple[Mapping, str]]]:
    """Like `stage_rows`, but a row that cannot be staged (too long for a column, an unknown platform or
    status) is returned apart with the reason instead of failing the batch."""
    staged: list[tuple[tuple, str | None]] = []
    rejected: list[tuple[Mapping, str]] = []
    for post in posts:
        reason = too_long(post)
        if reason is None:
            try:
                staged.append((stage_row(post), post.get("_change_type")))
                continue
            except (ValueError, TypeError, KeyError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
        rejected.append((post, reason))
    return latest_per_post(staged), rejected


def is_deleted(row: tuple) -> bool:
    return bool(row[_DELETED])
