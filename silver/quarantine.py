"""Quarantine rules: each one a `drop` rule (tootlake.catalog.rules.Rule, built with `fails_when`: a
predicate on a parsed record, true = the record FAILS) with a name and a detail.

`with_rule_failures(parsed, now)` adds `rules` (every rule the record failed, in the order below; empty
when usable) and `reason` (the detail of the first failure). `quarantine(judged, quarantined_at)` shapes
the failed records for `silver/posts_quarantine`: one row per rejected bronze record, never dropped.
"""

from __future__ import annotations

import operator
from datetime import datetime, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.rules import Rule, fails_when
from tootlake.catalog.table import Table, not_null
from tootlake.catalog.vocab import EVENT_KINDS, SILVER_POSTS_QUARANTINE
from tootlake.silver.schema import QUARANTINE_SCHEMA, TARGET_LIMITS
from tootlake.silver.timestamps import MASTODON_EPOCH, spark_literal, utc_timestamp

SUPPORTED_SCHEMA_VERSIONS = (1,)
# HTML `content` above this many characters is not a post we can use (Mastodon's default limit is 500
# characters of text; servers that allow long posts stay far below this even with markup).
DEFAULT_MAX_CONTENT_CHARS = 50_000
# Instance clocks drift: a post a few minutes "in the future" is clock skew, not a bad record.
DEFAULT_FUTURE_TOLERANCE = timedelta(minutes=5)

# JSON types an id may have: a string (REST API) or an integer (Mastodon.py dumps).
_ID_TYPES = r"^(STRING|BIGINT|INT|SMALLINT|TINYINT|DECIMAL\([0-9]+,0\))$"


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def _is_status_event(df: DataFrame) -> Column:
    # Rules about content only apply to status events: a delete carries nothing but the id.
    return F.coalesce(df["event"] != "delete", F.lit(True))


def _bad_id_type(type_col: Column) -> Column:
    return type_col.isNotNull() & ~type_col.rlike(_ID_TYPES)


def _too_long(df: DataFrame) -> Column:
    over = [
        F.coalesce((F.length(df[name]) > chars) | (F.octet_length(df[name]) > octets), F.lit(False))
        for name, (chars, octets) in TARGET_LIMITS.items()
    ]
    return reduce(operator.or_, over)


def _outside(col: Column, earliest: Column, latest: Column) -> Column:
    return F.coalesce((col < earliest) | (col > latest), F.lit(False))


def rules(now: datetime | Column, max_content_chars: int, future_tolerance: timedelta) -> list[Rule]:
    """The rules, in the order they are reported. `now` is passed in: the transform holds no clock. It is
    an instant, or a timestamp Column (a stream's `current_timestamp()`, which each micro-batch fixes to
    its own trigger time, the same again when the batch is replayed)."""
    now_col = spark_literal(now) if isinstance(now, datetime) else now
    latest = F.timestamp_micros(F.unix_micros(now_col) + F.lit(future_tolerance // timedelta(microseconds=1)))
    earliest = spark_literal(MASTODON_EPOCH)
    valid = lambda df: df["is_valid_json"] & df["value_type"].startswith("OBJECT")  # noqa: E731
    status = lambda df: valid(df) & _is_status_event(df)  # noqa: E731
    return [
        fails_when("invalid_utf8", lambda df: ~df["is_valid_utf8"],
             "the Kafka key or value is not valid UTF-8 (the quarantined copy shows U+FFFD for the bad "
             "bytes; bronze keeps them as received)"),
        fails_when("invalid_json", lambda df: ~F.coalesce(valid(df), F.lit(False)),
             "the Kafka value is not a JSON object"),
        fails_when("unknown_schema_version",
             lambda df: valid(df)
             & ~F.coalesce(df["schema_version"].isin(*SUPPORTED_SCHEMA_VERSIONS), F.lit(False)),
             f"envelope schema_version is missing or not one of {SUPPORTED_SCHEMA_VERSIONS}"),
        fails_when("unknown_event",
             lambda df: valid(df) & ~F.coalesce(df["event"].isin(*EVENT_KINDS), F.lit(False)),
             f"envelope event is missing or not one of {EVENT_KINDS}"),
        fails_when("wrong_type",
             lambda df: valid(df) & (
                 df["envelope_corrupt"]
                 | df["status_corrupt"]
                 | ~F.coalesce(df["status_type"].startswith("OBJECT"), F.lit(False))
                 | _bad_id_type(df["id_type"])
                 | (df["account_type"].isNotNull() & ~df["account_type"].startswith("OBJECT"))
                 | _bad_id_type(df["account_id_type"])
                 | df["bad_text_field"].isNotNull()
             ),
             "a field has the wrong JSON type (status not an object, id not a string/integer, "
             "boolean/count/account fields of another type, an object/array/boolean where text belongs)"),
        fails_when("missing_id", lambda df: valid(df) & (_blank(df["status_id"]) | _blank(df["post_id"])),
             "status.id is missing, so the post key cannot be built"),
        fails_when("missing_created_at", lambda df: status(df) & _blank(df["created_at_raw"]),
             "status.created_at is missing"),
        fails_when("missing_account", lambda df: status(df) & _blank(df["account_id"]),
             "status.account (with an id) is missing"),
        fails_when("invalid_timestamp",
             lambda df: status(df) & (
                 (~_blank(df["created_at_raw"]) & df["created_at"].isNull())
                 | (~_blank(df["edited_at_raw"]) & df["edited_at"].isNull())
             ) | (valid(df) & ~_blank(df["fetched_at_raw"]) & df["fetched_at"].isNull()),
             "created_at, edited_at or fetched_at is not a timestamp in any known form (or is outside "
             "years 1-9999)"),
        fails_when("field_too_long", lambda df: valid(df) & _too_long(df),
             "a field is longer than its column in the sync targets allows: "
             + ", ".join(f"{name} {chars} chars/{octets} bytes" for name, (chars, octets)
                         in TARGET_LIMITS.items())),
        fails_when("oversized_content",
             lambda df: status(df) & F.coalesce(F.length("content_html") > max_content_chars, F.lit(False)),
             f"status.content is longer than {max_content_chars} characters"),
        fails_when("created_at_in_future",
             lambda df: status(df) & F.coalesce(df["created_at"] > latest, F.lit(False)),
             f"created_at is more than {future_tolerance} after the time of processing"),
        fails_when("created_at_before_mastodon",
             lambda df: status(df) & F.coalesce(df["created_at"] < earliest, F.lit(False)),
             f"created_at is before Mastodon existed ({MASTODON_EPOCH.date()})"),
        # A far-future edit would become the row's version and make every later genuine edit lose.
        fails_when("edited_at_out_of_range",
             lambda df: status(df) & _outside(df["edited_at"], earliest, latest),
             f"edited_at is before Mastodon existed or more than {future_tolerance} after processing"),
        # fetched_at orders versions and dates deletes: it must be a real instant too.
        fails_when("fetched_at_out_of_range",
             lambda df: valid(df) & _outside(df["fetched_at"], earliest, latest),
             f"envelope fetched_at is before Mastodon existed or more than {future_tolerance} after "
             "processing"),
    ]


RULE_NAMES = (
    "invalid_utf8",
    "invalid_json",
    "unknown_schema_version",
    "unknown_event",
    "wrong_type",
    "missing_id",
    "missing_created_at",
    "missing_account",
    "invalid_timestamp",
    "field_too_long",
    "oversized_content",
    "created_at_in_future",
    "created_at_before_mastodon",
    "edited_at_out_of_range",
    "fetched_at_out_of_range",
)
# Not a rule of the judged frame: the silver job sets it on a record that made its micro-batch fail.
PROCESSING_ERROR = "processing_error"


def with_rule_failures(
    parsed: DataFrame,
    now: datetime | Column,
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
) -> DataFrame:
    """Same grain as `parsed` (one row per bronze record) + post_id, UTC created_at/edited_at, rules,
    reason."""
    df = parsed.withColumns(
        {
            # The post key is the Kafka key; a record without one gets the same rule's key rebuilt.
            "post_id": F.coalesce(
                F.when(~_blank(F.col("key")), F.col("key")),
                F.when(~_blank(F.col("instance")) & ~_blank(F.col("status_id")),
                       F.concat_ws("/", "instance", "status_id")),
            ),
            "created_at": utc_timestamp(F.col("created_at_raw")),
            "edited_at": utc_timestamp(F.col("edited_at_raw")),
        }
    )
    checks = rules(now, max_content_chars, future_tolerance)
    failed = [F.when(rule.fails(df), F.lit(rule.name)) for rule in checks]  # a null predicate passes
    details = {rule.name: rule.detail for rule in checks}
    df = df.withColumn("rules", F.filter(F.array(*failed), lambda name: name.isNotNull()))
    # A map lookup keeps the plan small (a CASE per rule would repeat the `rules` expression).
    detail_of = F.create_map(*[F.lit(x) for pair in details.items() for x in pair])
    return df.withColumn("reason", detail_of[F.get(F.col("rules"), 0)])


def quarantine(judged: DataFrame, quarantined_at: Column) -> DataFrame:
    """One row per rejected bronze record (QUARANTINE_SCHEMA): raw key/value, failed rules, lineage."""
    failed = judged.where(F.size("rules") > 0)
    special = {
        "quarantined_at": quarantined_at,
        # readers of the quarantine (DuckDB, delta-rs, pandas) need valid UTF-8; bronze keeps the bytes
        "key": F.make_valid_utf8("key"),
        "value": F.make_valid_utf8("value"),
    }
    return failed.select(
        *[
            special.get(field.name, F.col(field.name)).cast(field.dataType).alias(field.name)
            for field in QUARANTINE_SCHEMA.fields
        ]
    )


POSTS_QUARANTINE = Table(
    SILVER_POSTS_QUARANTINE,
    grain="one row per rejected bronze record (never dropped), with every rule it failed",
    key=("bronze_partition", "bronze_offset"),
    columns=tuple(QUARANTINE_SCHEMA.fieldNames()),
    schema=QUARANTINE_SCHEMA,
    suite=not_null("rules", "reason", "quarantined_at"),
)
