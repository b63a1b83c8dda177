"""Parse bronze records: the JSON envelope, then the Mastodon status inside it, with explicit schemas.

`parse_records(bronze)` keeps one row per bronze record (nothing is dropped here): the raw key/value and
Kafka coordinates, the envelope fields, the status fields the silver tables use (ids and timestamps as
text, exactly as received) and what the quarantine rules need to judge the record (`envelope_corrupt`,
`status_corrupt`, JSON type names of the id fields).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from tootlake.silver.timestamps import utc_timestamp

CORRUPT = "_corrupt_record"

# `status` is kept as raw JSON text here and parsed on its own below, so a broken status and a broken
# envelope are told apart, and Mastodon.py 2.x wrappers can be peeled off first.
ENVELOPE_SCHEMA = StructType(
    [
        StructField("schema_version", LongType()),
        StructField("event", StringType()),
        StructField("instance", StringType()),
        StructField("fetched_at", StringType()),
        StructField("status", StringType()),
        StructField(CORRUPT, StringType()),
    ]
)

ACCOUNT_SCHEMA = StructType(
    [
        # Ids and timestamps are StringType: JSON integers (Mastodon.py) come through as their exact
        # digits (never via double: they exceed 2^53), strings stay strings.
        StructField("id", StringType()),
        StructField("acct", StringType()),
        StructField("username", StringType()),
        StructField("display_name", StringType()),
    ]
)

STATUS_SCHEMA = StructType(
    [
        StructField("id", StringType()),
        StructField("uri", StringType()),
        StructField("url", StringType()),
        StructField("created_at", StringType()),
        StructField("edited_at", StringType()),
        StructField("language", StringType()),
        StructField("visibility", StringType()),
        StructField("sensitive", BooleanType()),
        StructField("spoiler_text", StringType()),
        StructField("content", StringType()),
        StructField("reblog", StringType()),  # raw JSON of the reblogged status; only null-ness is used
        StructField("replies_count", LongType()),
        StructField("reblogs_count", LongType()),
        StructField("favourites_count", LongType()),
        StructField("account", ACCOUNT_SCHEMA),
        StructField("tags", ArrayType(StructType([StructField("name", StringType())]))),
        StructField(CORRUPT, StringType()),
    ]
)

_JSON_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}

# JSON escapes of lone UTF-16 surrogates (`"\ud83d"` without its pair) are legal JSON but no character:
# Java would turn them into `?`. They become U+FFFD before parsing, as the producer and the sync do.
# The prefix keeps an escaped backslash (`\\ud83d` is text, not an escape) as it is.
_LONE_HIGH = r"(?<!\\)((?:\\\\)*)\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
_LONE_LOW = r"(?<!\\)((?:\\\\)*)(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_REPLACEMENT = "$1\\\\ufffd"

# Text fields (JSON path -> allowed JSON types): an object, array or boolean there is a wrong type, not
# text to store. Timestamps may also be epoch numbers.
_TEXT = r"^STRING$"
_TIME = r"^(STRING|BIGINT|INT|SMALLINT|TINYINT|DOUBLE|FLOAT|DECIMAL\([0-9]+,[0-9]+\))$"
ENVELOPE_TEXT_FIELDS = {"$.event": _TEXT, "$.instance": _TEXT, "$.fetched_at": _TIME}
STATUS_TEXT_FIELDS = {
    "$.uri": _TEXT, "$.url": _TEXT, "$.created_at": _TIME, "$.edited_at": _TIME, "$.language": _TEXT,
    "$.visibility": _TEXT, "$.spoiler_text": _TEXT, "$.content": _TEXT, "$.account.acct": _TEXT,
    "$.account.username": _TEXT, "$.account.display_name": _TEXT,
}


def _json_type(variant: Column, path: str) -> Column:
    """The JSON type of a field as variant names it (`STRING`, `BIGINT`, `OBJECT<...>`...); null if absent."""
    value = F.try_variant_get(variant, path, "variant")
    return F.when(
        value.isNotNull() & ~F.is_variant_null(value), F.schema_of_variant(value)
    )


def _variant_type(variant: Column) -> Column:
    return F.when(variant.isNotNull(), F.schema_of_variant(variant))


def _first_bad_text_field(variant: Column, fields: dict[str, str], prefix: str) -> Column:
    """The first of `fields` whose JSON type is not allowed (e.g. `status.content: OBJECT<...>`)."""
    return F.coalesce(*[
        F.when(~_json_type(variant, path).rlike(allowed), F.lit(f"{prefix}{path[2:]}"))
        for path, allowed in fields.items()
    ])


def parse_records(bronze: DataFrame) -> DataFrame:
    """One row per bronze record: raw record + envelope + status fields (ids/timestamps as text)."""
    # Kafka bytes become text without validation: a record that is not UTF-8 is judged, never parsed.
    utf8 = F.coalesce(F.is_valid_utf8("key"), F.lit(True)) & F.coalesce(F.is_valid_utf8("value"), F.lit(True))
    value = F.when(utf8, F.regexp_replace(F.regexp_replace("value", _LONE_HIGH, _REPLACEMENT),
                                          _LONE_LOW, _REPLACEMENT))
    df = bronze.select(
        "key",
        "value",
        utf8.alias("is_valid_utf8"),
        F.col("partition").alias("bronze_partition"),
        F.col("offset").alias("bronze_offset"),
        "ingested_at",
        F.try_parse_json(value).alias("_value_variant"),
        F.from_json(value, ENVELOPE_SCHEMA, _JSON_OPTIONS).alias("env"),
    )
    # Mastodon.py 2.x `Entity.to_json()` wraps the status: {"_mastopy_type":..., "_mastopy_data": {...}}.
    status_json = F.coalesce(F.get_json_object("env.status", "$._mastopy_data"), F.col("env.status"))
    df = df.withColumn("_status_json", status_json).withColumn(
        "st", F.from_json("_status_json", STATUS_SCHEMA, _JSON_OPTIONS)
    ).withColumn("_status_variant", F.try_parse_json("_status_json"))
    return df.select(
        "key",
        "value",
        "is_valid_utf8",
        "bronze_partition",
        "bronze_offset",
        "ingested_at",
        F.col("_value_variant").isNotNull().alias("is_valid_json"),
        _variant_type(F.col("_value_variant")).alias("value_type"),
        F.col(f"env.{CORRUPT}").isNotNull().alias("envelope_corrupt"),
        F.col("env.schema_version").alias("schema_version"),
        F.col("env.event").alias("event"),
        F.lower(F.trim("env.instance")).alias("instance"),
        F.col("env.fetched_at").alias("fetched_at_raw"),
        utc_timestamp(F.col("env.fetched_at")).alias("fetched_at"),
        F.col("_status_variant").isNotNull().alias("status_is_json"),
        _variant_type(F.col("_status_variant")).alias("status_type"),
        (F.col(f"st.{CORRUPT}").isNotNull() & F.col("_status_variant").isNotNull()).alias("status_corrupt"),
        _json_type(F.col("_status_variant"), "$.id").alias("id_type"),
        F.coalesce(_first_bad_text_field(F.col("_value_variant"), ENVELOPE_TEXT_FIELDS, ""),
                   _first_bad_text_field(F.col("_status_variant"), STATUS_TEXT_FIELDS, "status."))
        .alias("bad_text_field"),
        F.trim("st.id").alias("status_id"),
        F.col("st.uri").alias("uri"),
        F.col("st.url").alias("url"),
        F.col("st.created_at").alias("created_at_raw"),
        F.col("st.edited_at").alias("edited_at_raw"),
        F.col("st.language").alias("language"),
        F.col("st.visibility").alias("visibility"),
        F.col("st.sensitive").alias("sensitive"),
        F.col("st.spoiler_text").alias("spoiler_text"),
        F.col("st.content").alias("content_html"),
        F.col("st.reblog").isNotNull().alias("is_reblog"),
        F.col("st.replies_count").alias("replies_count"),
        F.col("st.reblogs_count").alias("reblogs_count"),
        F.col("st.favourites_count").alias("favourites_count"),
        _json_type(F.col("_status_variant"), "$.account").alias("account_type"),
        _json_type(F.col("_status_variant"), "$.account.id").alias("account_id_type"),
        F.trim("st.account.id").alias("account_id"),
        F.col("st.account.acct").alias("account_acct"),
        F.col("st.account.username").alias("account_username"),
        F.col("st.account.display_name").alias("account_display_name"),
        F.transform("st.tags", lambda tag: tag["name"]).alias("tag_names"),
    )
