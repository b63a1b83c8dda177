"""Every table's declaration, in data-flow order: the one list the derived views read.

Derived from it: the rules per hop (tootlake.expectations.tables), the Great Expectations suites
(tootlake.expectations.suites), the diff keys (tootlake.pipelines.lake.table_keys), and the names the jobs,
`tootlake status` and the DQ report use.
"""

from __future__ import annotations

from tootlake.bronze.posts_raw import POSTS_RAW
from tootlake.catalog.table import Table
from tootlake.expectations.metrics import METRICS
from tootlake.gold import activity, hashtags, sentiment, threat, windowed
from tootlake.silver.posts import POSTS
from tootlake.silver.quarantine import POSTS_QUARANTINE

TABLES: tuple[Table, ...] = (
    POSTS_RAW,
    POSTS,
    POSTS_QUARANTINE,
    activity.POSTS_HOURLY,
    activity.POSTS_DAILY,
    activity.USER_ACTIVITY,
    activity.ACTIVE_USERS,
    activity.USER_POST_LENGTH,
    hashtags.HASHTAGS_DAILY,
    hashtags.TOP_HASHTAG_DAILY,
    threat.THREAT_DAILY,
    threat.THREAT_BY_HASHTAG,
    threat.THREAT_BY_LANGUAGE,
    sentiment.SENTIMENT_DAILY,
    sentiment.SENTIMENT_BY_HASHTAG,
    sentiment.SENTIMENT_BY_LANGUAGE,
    windowed.POSTS_PER_MINUTE,
    windowed.LATE_EVENTS,
    METRICS,
)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
assert len(BY_NAME) == len(TABLES), "a table is declared twice"


def table(name: str) -> Table:
    """The declaration of logical table `name` (KeyError naming the declared tables when unknown)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no declared table {name!r}; declared: {', '.join(BY_NAME)}") from None


def in_layer(layer: str) -> tuple[Table, ...]:
    return tuple(t for t in TABLES if t.layer == layer)
