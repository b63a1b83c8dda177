"""Independent (DuckDB SQL) computations of every gold table, and silver-like test data, for the gold tests.

The gold definitions are restated here in SQL from their docstrings, so a Spark bug does not hide itself.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from tootlake.silver.schema import POSTS_SCHEMA

_ARROW = {"StringType": pa.string(), "TimestampType": pa.timestamp("us"), "BooleanType": pa.bool_(),
          "IntegerType": pa.int32(), "LongType": pa.int64(), "DoubleType": pa.float64()}


def arrow_schema() -> pa.Schema:
    fields = []
    for field in POSTS_SCHEMA.fields:
        name = type(field.dataType).__name__
        arrow_type = pa.list_(pa.string()) if name == "ArrayType" else _ARROW[name]
        fields.append(pa.field(field.name, arrow_type))
    return pa.schema(fields)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def connect(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    table = pa.Table.from_pylist([{k: _naive_utc(v) for k, v in row.items()} for row in rows], arrow_schema())
    con = duckdb.connect()
    con.register("silver_arrow", table)
    con.execute("CREATE TABLE silver AS SELECT * FROM silver_arrow")
    con.execute("""
        CREATE VIEW live AS
        SELECT *, CAST(created_at AS DATE) AS post_date, date_trunc('hour', created_at) AS hour_start,
               CASE WHEN strpos(account_acct, '@') > 0 OR instance IS NULL THEN account_acct
                    ELSE account_acct || '@' || instance END AS user_acct
        FROM silver WHERE NOT is_deleted AND created_at IS NOT NULL""")
    con.execute("""
        CREATE VIEW tagged AS
        SELECT l.*, t.hashtag FROM live l JOIN (
            SELECT DISTINCT post_id, lower(trim(tag)) AS hashtag
            FROM (SELECT post_id, unnest(hashtags) AS tag FROM live)
            WHERE tag IS NOT NULL AND length(trim(tag)) > 0) t ON l.post_id = t.post_id""")
    return con


THREAT = """count(*) AS posts,
    count(*) FILTER (WHERE upper(threat_level) = 'NONE') AS none_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'LOW') AS low_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'MEDIUM') AS medium_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'HIGH') AS high_posts,
    count(*) FILTER (WHERE threat_level IS NULL) AS unscored_posts,
    count(*) FILTER (WHERE threat_level IS NULL AND scoring_note IS NOT NULL
                     AND scoring_note NOT LIKE 'sentiment:%') AS language_unscored_posts,
    count(contains_hate_speech) AS hate_scored_posts,
    count(*) FILTER (WHERE contains_hate_speech = 1) AS hate_posts,
    CASE WHEN count(contains_hate_speech) > 0
         THEN (count(*) FILTER (WHERE contains_hate_speech = 1)) / count(contains_hate_speech)
    END AS hate_share"""

SENTIMENT = """count(*) AS posts,
    count(*) FILTER (WHERE lower(sentiment_label) = 'negative') AS negative_posts,
    count(*) FILTER (WHERE lower(sentiment_label) = 'neutral') AS neutral_posts,
    count(*) FILTER (WHERE lower(sentiment_label) = 'positive') AS positive_posts,
    count(sentiment_label) AS scored_posts,
    count(*) - count(sentiment_label) AS unscored_posts,
    count(*) FILTER (WHERE sentiment_label IS NULL AND scoring_note IS NOT NULL
                     AND scoring_note NOT LIKE 'threat:%') AS language_unscored_posts,
    CASE WHEN count(sentiment_label) > 0 THEN
        (count(*) FILTER (WHERE lower(sentiment_label) = 'positive')) / count(sentiment_label)
    END AS positive_share,
    CASE WHEN count(sentiment_label) > 0 THEN
        (count(*) FILTER (WHERE lower(sentiment_label) = 'negative')) / count(sentiment_label)
    END AS negative_share,
    CASE WHEN count(sentiment_label) > 0 THEN
        ((count(*) FILTER (WHERE lower(sentiment_label) = 'positive'))
         - (count(*) FILTER (WHERE lower(sentiment_label) = 'negative'))) / count(sentiment_label)
    END AS net_sentiment"""

HASHTAGS_DAILY = """SELECT post_date, hashtag, count(*) AS posts, count(DISTINCT user_acct) AS users
    FROM tagged GROUP BY post_date, hashtag"""


def reference_sql(active_min: int) -> dict[str, str]:
    return {
        "posts_hourly": """SELECT CAST(hour_start AS DATE) AS post_date, hour_start, count(*) AS posts,
            count(DISTINCT user_acct) AS users FROM live GROUP BY hour_start""",
        "posts_daily": """SELECT post_date, count(*) AS posts, count(DISTINCT user_acct) AS users,
            count(DISTINCT hour_start) AS active_hours FROM live GROUP BY post_date""",
        "user_activity": """SELECT user_acct, count(*) AS posts, count(DISTINCT post_date) AS active_days,
            min(created_at) AS first_post_at, max(created_at) AS last_post_at FROM live GROUP BY user_acct""",
        "active_users": f"""SELECT user_acct, count(*) AS posts, count(DISTINCT post_date) AS active_days,
            min(created_at) AS first_post_at, max(created_at) AS last_post_at, {int(active_min)} AS active_min
            FROM live GROUP BY user_acct HAVING count(*) >= {int(active_min)}""",
        "user_post_length": """SELECT user_acct, count(*) AS posts, avg(text_length) AS avg_text_length,
            min(text_length) AS min_text_length, max(text_length) AS max_text_length
            FROM live GROUP BY user_acct""",
        "hashtags_daily": HASHTAGS_DAILY,
        "top_hashtag_daily": f"""WITH d AS ({HASHTAGS_DAILY}),
            m AS (SELECT post_date, max(posts) AS top FROM d GROUP BY post_date),
            c AS (SELECT d.post_date, min(d.hashtag) AS hashtag, count(*) AS tied_hashtags
                  FROM d JOIN m ON d.post_date = m.post_date AND d.posts = m.top GROUP BY d.post_date)
            SELECT c.post_date, c.hashtag, d.posts, d.users, c.tied_hashtags
            FROM c JOIN d ON c.post_date = d.post_date AND c.hashtag = d.hashtag""",
        "threat_daily": f"SELECT post_date, {THREAT} FROM live GROUP BY post_date",
        "threat_by_hashtag": f"SELECT hashtag, {THREAT} FROM tagged GROUP BY hashtag",
        "threat_by_language": f"""SELECT coalesce(lower(language), 'und') AS language, {THREAT}
            FROM live GROUP BY coalesce(lower(language), 'und')""",
        "sentiment_daily": f"SELECT post_date, {SENTIMENT} FROM live GROUP BY post_date",
        "sentiment_by_hashtag": f"SELECT hashtag, {SENTIMENT} FROM tagged GROUP BY hashtag",
        "sentiment_by_language": f"""SELECT coalesce(lower(language), 'und') AS language, {SENTIMENT}
            FROM live GROUP BY coalesce(lower(language), 'und')""",
        "posts_per_minute": """SELECT date_trunc('minute', created_at) AS window_start,
            date_trunc('minute', created_at) + INTERVAL 1 MINUTE AS window_end, count(*) AS posts
            FROM live GROUP BY 1, 2""",
    }


def _norm(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return _naive_utc(value).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def normalise(columns: list[str], rows: list[tuple]) -> list[tuple]:
    """Rows as comparable tuples (ISO times, rounded floats, None for null), sorted."""
    cleaned = [tuple(_norm(v) for v in row) for row in rows]
    return sorted(cleaned, key=lambda row: tuple((v is None, str(v)) for v in row))


def spark_rows(df) -> tuple[list[str], list[tuple]]:
    pdf = df.toPandas()  # Arrow path: timestamps come back naive in the session time zone (UTC)
    return list(pdf.columns), normalise(list(pdf.columns), list(pdf.itertuples(index=False, name=None)))


def duckdb_rows(con: duckdb.DuckDBPyConnection, sql: str, columns: list[str]) -> list[tuple]:
    relation = con.sql(sql)
    missing = set(columns) ^ set(relation.columns)
    assert not missing, f"column sets differ: {sorted(missing)}"
    picked = con.sql(f"SELECT {', '.join(columns)} FROM ({sql})").fetchall()
    return normalise(columns, picked)


# ---- crafted silver rows ------------------------------------------------------------------------

def post(post_id: str, created_at: datetime, **overrides: Any) -> dict[str, Any]:
    """A full silver/posts row with plain defaults; override any column."""
    row = {field.name: None for field in POSTS_SCHEMA.fields}
    row.update(
        post_id=post_id, instance="mastodon.social", status_id=post_id, account_acct="alice",
        created_at=created_at, language="en", text="x", text_length=1, hashtags=[], is_reblog=False,
        platform="mastodon", threat_level="NONE", threat_label="none", threat_score=0.9,
        contains_hate_speech=0, sentiment_label="neutral", sentiment_score=0.8, processing_status="SUCCESS",
        is_deleted=False, event_kind="status", updated_at=created_at,
    )
    row.update(overrides)
    return row


DAY_A = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
DAY_B = DAY_A + timedelta(days=1)  # only a tombstone: an empty day
DAY_C = DAY_A + timedelta(days=2)  # posts, none with hashtags
DAY_D = DAY_A + timedelta(days=3)  # posts left unscored on purpose (language coverage), and a failure


def crafted_rows(active_min: int = 5) -> list[dict[str, Any]]:
    """Edge cases: users at exactly active_min and one below, tombstones, an empty day, a day without
    hashtags, hashtag ties (and case/duplicate variants), null language / text length / scores."""
    rows = []
    minute = timedelta(minutes=1)
    # alice@mastodon.social: exactly active_min live posts (+ one tombstone that must not count)
    for i in range(active_min):
        rows.append(post(f"a{i}", DAY_A + i * 7 * minute, text_length=10 * (i + 1),
                         hashtags=["alpha"] if i < 2 else (["Zeta", "zeta"] if i < 4 else [])))
    rows.append(post("a-deleted", DAY_A + 30 * minute, is_deleted=True, text=None, text_length=None,
                     hashtags=None, deleted_at=DAY_A + 40 * minute))
    # bob@other.example: active_min - 1 live posts (+ a tombstone)
    bob_tags = [["beta"], ["beta"], ["ALPHA", "gamma", " "], ["gamma"]]
    for i in range(active_min - 1):
        rows.append(post(f"b{i}", DAY_A + (i * 13 + 61) * minute, account_acct="bob@other.example",
                         hashtags=bob_tags[i % 4], language=None,
                         threat_level="HIGH" if i == 0 else "LOW", contains_hate_speech=1 if i == 0 else 0,
                         sentiment_label="negative"))
    rows.append(post("b-deleted", DAY_A + 5 * minute, account_acct="bob@other.example", is_deleted=True,
                     hashtags=["beta"]))
    # alice on another instance is another user; unscored post, unknown length
    rows.append(post("c0", DAY_A + 200 * minute, instance="other.example", hashtags=["zeta"],
                     text_length=None, threat_level=None, threat_label=None, contains_hate_speech=None,
                     sentiment_label=None, sentiment_score=None, processing_status="FAILED"))
    # day B: only a tombstone
    rows.append(post("d0", DAY_B, is_deleted=True, hashtags=["alpha"]))
    # day C: posts without hashtags (null and empty array), a positive and a MEDIUM one
    rows.append(post("e0", DAY_C, account_acct="dave@y.example", hashtags=None, sentiment_label="positive",
                     language="DE"))
    rows.append(post("e1", DAY_C + 90 * minute, account_acct="carol@x.example", threat_level="MEDIUM",
                     contains_hate_speech=1, language="de"))
    # day D: silver's language coverage (tootlake.models.coverage): unscored on purpose by both models, by
    # one of them, and a scoring failure (unscored, but not on purpose)
    # one user per post (users of their own: nobody reaches active_min, alice's and bob's counts unchanged)
    threat_null = dict(threat_level=None, threat_label=None, threat_score=None, contains_hate_speech=None)
    sentiment_null = dict(sentiment_label=None, sentiment_score=None)
    rows.append(post("f0", DAY_D, language="ja", scoring_note="language_not_covered:ja",
                     account_acct="f0@z.example", **threat_null, **sentiment_null))
    rows.append(post("f1", DAY_D + minute, language=None, scoring_note="language_unknown",
                     account_acct="f1@z.example", **threat_null, **sentiment_null))
    rows.append(post("f2", DAY_D + 2 * minute, language="fr", threat_level="LOW", account_acct="f2@z.example",
                     scoring_note="sentiment:language_not_covered:fr", **sentiment_null))
    rows.append(post("f3", DAY_D + 3 * minute, language="pt-BR", sentiment_label="positive",
                     account_acct="f3@z.example", scoring_note="threat:language_not_covered:pt",
                     **threat_null))
    rows.append(post("f4", DAY_D + 4 * minute, language="es", processing_status="FAILED",
                     account_acct="f4@z.example", **threat_null, **sentiment_null))
    return rows
