"""The rules every job checks, by hop, read from the tables' declarations (tootlake.catalog.registry).

- `posts_raw`          bronze.posts_raw, Kafka -> bronze (checked by `tootlake dq check`, the GX suite)
- `silver_posts`       silver.posts, bronze -> silver: silver's quarantine rules are its `drop` rules (one
                       definition: tootlake.silver.quarantine.rules), plus the declared warn / fail rules
- `gold_input`         silver.posts as gold reads it, silver -> gold
- `gold_rules`         each gold table gold writes (declared in gold/: counts not negative, size change)
- `sync_posts`         silver.posts' change feed as sync reads it, silver -> PostgreSQL / Oracle

The rules themselves are declared beside each table (bronze/posts_raw.py, silver/posts.py, gold/*.py).
Time (`now`) and limits come in as arguments: no clock, no settings, no I/O here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tootlake.bronze.posts_raw import POSTS_RAW
from tootlake.catalog.registry import table
from tootlake.catalog.rules import TableRules, aggregate_rules
from tootlake.gold.base import SILVER_TO_GOLD
from tootlake.silver import quarantine
from tootlake.silver.posts import POSTS


def posts_raw() -> TableRules:
    """bronze.posts_raw: one row per Kafka record."""
    return POSTS_RAW.rules_at("kafka->bronze")


def silver_posts(now: datetime, max_content_chars: int = quarantine.DEFAULT_MAX_CONTENT_CHARS,
                 future_tolerance: timedelta = quarantine.DEFAULT_FUTURE_TOLERANCE) -> TableRules:
    """silver.posts at bronze -> silver, checked on the judged batch (one row per bronze record, with the
    `rules` column of tootlake.silver.quarantine.with_rule_failures)."""
    return POSTS.rules_at("bronze->silver", *quarantine.rules(now, max_content_chars, future_tolerance))


def gold_input(now: datetime) -> TableRules:
    """silver.posts as the gold job reads it (one row per post) at silver -> gold."""
    return POSTS.rules_at(SILVER_TO_GOLD)


def gold_table(name: str, key: tuple[str, ...], columns: list[str], strict: bool = False) -> TableRules:
    """gold.<name> with the aggregate rules (tootlake.catalog.rules.aggregate_rules) for these columns:
    counted by the write itself; `strict` checks the key and negative counts before the write."""
    return TableRules(f"gold.{name}", SILVER_TO_GOLD, key, aggregate_rules(key, columns, strict))


def gold_rules(name: str) -> TableRules:
    """The declared rules of batch gold table `name` (e.g. "posts_daily") at silver -> gold."""
    return table(f"gold.{name}").rules_at(SILVER_TO_GOLD)


def sync_posts() -> TableRules:
    """silver.posts' change rows as sync stages them (silver -> PostgreSQL / Oracle)."""
    return POSTS.rules_at("silver->sync")


def by_job(job: str, now: datetime) -> list[TableRules]:
    """Every rule set a job checks (gold tables are listed by `gold_rules` per table at run time)."""
    return {
        "bronze": [posts_raw()],
        "silver": [silver_posts(now)],
        "gold": [gold_input(now)],
        "sync": [sync_posts()],
    }[job]
