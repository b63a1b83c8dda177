"""Great Expectations suites of the published tables, by layer (pure data: run by pipelines/quality/gx.py).

Each expectation is (GX class name in great_expectations.expectations, keyword arguments). The suites
describe a table as it is published (a whole-table sample), where the per-batch rules of tables.py guard
each hop: `tootlake dq check --layer silver` runs them on demand, the jobs once per run.
"""

from __future__ import annotations

from tootlake.expectations.tables import PLATFORMS, SENTIMENT_LABELS, THREAT_LEVELS

Expectation = tuple[str, dict]


def _not_null(*columns: str) -> list[Expectation]:
    return [("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns]


def _unique(column: str) -> Expectation:
    return ("ExpectColumnValuesToBeUnique", {"column": column})


def _at_least(column: str, low: float, high: float | None = None) -> Expectation:
    return ("ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high})


_ROWS = ("ExpectTableRowCountToBeBetween", {"min_value": 1})

SUITES: dict[str, dict[str, list[Expectation]]] = {
    "bronze": {
        "bronze.posts_raw": [
            _ROWS,
            *_not_null("topic", "partition", "offset", "value", "ingested_at"),
            ("ExpectCompoundColumnsToBeUnique", {"column_list": ["topic", "partition", "offset"]}),
        ],
    },
    "silver": {
        "silver.posts": [
            _ROWS,
            *_not_null("post_id", "is_deleted", "updated_at"),
            _unique("post_id"),
            ("ExpectColumnValuesToBeInSet", {"column": "threat_level", "value_set": list(THREAT_LEVELS)}),
            ("ExpectColumnValuesToBeInSet",
             {"column": "sentiment_label", "value_set": list(SENTIMENT_LABELS)}),
            ("ExpectColumnValuesToBeInSet", {"column": "platform", "value_set": list(PLATFORMS)}),
            ("ExpectColumnValuesToBeInSet",
             {"column": "processing_status", "value_set": ["SUCCESS", "FAILED", "RETRY"]}),
            _at_least("threat_score", 0.0, 1.0),
            _at_least("sentiment_score", 0.0, 1.0),
            _at_least("text_length", 0),
        ],
        "silver.posts_quarantine": [
            *_not_null("rules", "reason", "quarantined_at"),
        ],
    },
    "gold": {
        "gold.posts_daily": [_ROWS, *_not_null("post_date"), _unique("post_date"), _at_least("posts", 1)],
        "gold.posts_hourly": [_ROWS, *_not_null("hour_start"), _unique("hour_start"), _at_least("posts", 1)],
        "gold.user_activity": [_ROWS, _unique("user_acct"), _at_least("posts", 1)],
        "gold.hashtags_daily": [
            ("ExpectCompoundColumnsToBeUnique", {"column_list": ["post_date", "hashtag"]}),
            _at_least("posts", 1),
        ],
        "gold.top_hashtag_daily": [_unique("post_date")],
        "gold.threat_daily": [_ROWS, _unique("post_date"), _at_least("posts", 0)],
        "gold.sentiment_daily": [_unique("post_date"), _at_least("positive_share", 0.0, 1.0)],
    },
}

LAYERS = tuple(SUITES)
