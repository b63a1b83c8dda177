"""The rules of every table, by hop; each function is named after the table it guards.

- `posts_raw`          bronze.posts_raw, Kafka -> bronze (checked by `tootlake dq check`, the GX suite)
- `silver_posts`       silver.posts, bronze -> silver: silver's quarantine rules are its `drop` rules (one
                       definition: tootlake.silver.quarantine.rules), plus warn / fail rules on usable records
- `gold_input`         silver.posts as gold reads it, silver -> gold
- `gold_table`         each gold table gold writes (key unique, counts not negative, size change)
- `sync_posts`         silver.posts' change feed as sync reads it, silver -> PostgreSQL / Oracle

Time (`now`) and limits come in as arguments: no clock, no settings, no I/O here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tootlake.expectations.rules import Rule, TableRules, freshness, row, row_count_change, unique
from tootlake.silver import quarantine

THREAT_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
PLATFORMS = ("mastodon", "bluesky", "telegram")


def _in(column: str, values: tuple[str, ...], fold: str = "") -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IS NULL OR {fold}({column}) IN ({listed})"


def posts_raw() -> TableRules:
    """bronze.posts_raw: one row per Kafka record."""
    return TableRules("bronze.posts_raw", "kafka->bronze", ("partition", "offset"), (
        row("value_present", "value IS NOT NULL", "warn", "the Kafka record has a value"),
        row("key_present", "key IS NOT NULL AND trim(key) <> ''", "warn", "the Kafka record has a key"),
        unique("position_unique", ("topic", "partition", "offset"), "fail"),
    ))


# Records silver can use (passed every quarantine rule) and, of those, statuses (not deletes).
_USABLE = "size(rules) = 0"
_USABLE_STATUS = "size(rules) = 0 AND event <> 'delete'"


def silver_posts(now: datetime, max_content_chars: int = quarantine.DEFAULT_MAX_CONTENT_CHARS,
                 future_tolerance: timedelta = quarantine.DEFAULT_FUTURE_TOLERANCE) -> TableRules:
    """silver.posts at bronze -> silver, checked on the judged batch (one row per bronze record, with the
    `rules` column of tootlake.silver.quarantine.with_rule_failures)."""
    drops = tuple(
        Rule(q.name, (lambda df, q=q: ~q.fails(df)), "drop", q.detail)
        for q in quarantine.rules(now, max_content_chars, future_tolerance)
    )
    return TableRules("silver.posts", "bronze->silver", ("post_id",), drops + (
        row("post_id_present", "post_id IS NOT NULL AND trim(post_id) <> ''", "fail",
            "a usable record has a post key", where=_USABLE),
        row("language_present", "language IS NOT NULL", "warn", "a status names its language",
            where=_USABLE_STATUS),
        row("content_present", "content_html IS NOT NULL AND trim(content_html) <> ''", "warn",
            "a status has content", where=_USABLE_STATUS),
    ))


def gold_input(now: datetime) -> TableRules:
    """silver.posts as the gold job reads it (one row per post) at silver -> gold."""
    live = "NOT is_deleted"
    return TableRules("silver.posts", "silver->gold", ("post_id",), (
        unique("post_id_unique", ("post_id",), "fail"),
        row("threat_level_known", _in("threat_level", THREAT_LEVELS, "upper"), "fail",
            f"threat_level is null or one of {THREAT_LEVELS}"),
        row("sentiment_label_known", _in("sentiment_label", SENTIMENT_LABELS, "lower"), "fail",
            f"sentiment_label is null or one of {SENTIMENT_LABELS}"),
        row("live_post_has_created_at", "created_at IS NOT NULL", "warn",
            "a live post has created_at (gold leaves it out otherwise)", where=live),
        row("live_post_scored", "processing_status = 'SUCCESS'", "warn",
            "a live post was scored by both models", where=live),
        row("text_length_not_negative", "text_length IS NULL OR text_length >= 0", "warn"),
        freshness("updated_recently", "updated_at", timedelta(days=7), "warn"),
    ))


# Count-like columns of the gold tables: never negative.
_COUNT_SUFFIXES = ("posts", "users", "_days", "_hours")


def gold_table(name: str, key: tuple[str, ...], columns: list[str], strict: bool = False) -> TableRules:
    """gold.<name> as gold writes it (overwrite): counts not negative, size change vs the previous version.

    These are `warn` rules, counted by the write itself (no extra pass). `strict` adds the key's uniqueness
    and makes negative counts `fail`, checked before the write at the price of a pass per table; by default
    the hop's fail rules are on gold's input (`gold_input`) and the GX suites check the keys once per run.
    """
    counts = [c for c in columns if c.endswith(_COUNT_SUFFIXES)]
    severity = "fail" if strict else "warn"
    rules: list[Rule] = [row_count_change("row_count_change", 0.5, "warn")]
    if key and strict:
        rules.insert(0, unique("key_unique", key, "fail"))
    if counts:
        predicate = " AND ".join(f"coalesce({c}, 0) >= 0" for c in counts)
        rules.append(row("counts_not_negative", predicate, severity, f"{', '.join(counts)} >= 0"))
    return TableRules(f"gold.{name}", "silver->gold", key, tuple(rules))


def sync_posts() -> TableRules:
    """silver.posts' change rows as sync stages them (silver -> PostgreSQL / Oracle)."""
    live = "NOT is_deleted AND _change_type <> 'delete'"
    return TableRules("silver.posts", "silver->sync", ("post_id",), (
        row("post_id_present", "post_id IS NOT NULL AND trim(post_id) <> ''", "fail",
            "every synced row has its primary key"),
        row("platform_known", _in("platform", PLATFORMS, "lower"), "drop",
            f"platform is one of the PLATFORMS rows {PLATFORMS} (the FK would refuse it)", where=live),
        row("threat_level_known", _in("threat_level", THREAT_LEVELS, "upper"), "fail",
            f"threat_level is null or one of {THREAT_LEVELS}"),
        row("live_post_has_created_at", "created_at IS NOT NULL", "warn",
            "RAWPOSTS.created_at is filled", where=live),
    ))


def by_job(job: str, now: datetime) -> list[TableRules]:
    """Every rule set a job checks (gold tables are listed by `gold_table` per table at run time)."""
    return {
        "bronze": [posts_raw()],
        "silver": [silver_posts(now)],
        "gold": [gold_input(now)],
        "sync": [sync_posts()],
    }[job]
