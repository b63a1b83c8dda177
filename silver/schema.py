"""Column contracts of the silver tables, shared by silver, gold and sync.

`silver/posts`: one row per post (post_id), latest edit wins. A deleted post stays as a tombstone row
with `is_deleted = true` (its content columns nulled) so that the sync stage and gold can follow the
delete; gold ignores tombstones, sync deletes the post downstream.
"""

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

PLATFORM_MASTODON = "mastodon"

POSTS_SCHEMA = StructType(
    [
        StructField("post_id", StringType(), False),  # Kafka key: <instance host>/<status id>
        StructField("instance", StringType(), True),  # e.g. mastodon.social
        StructField("status_id", StringType(), True),  # the instance-local id, as a string
        StructField("url", StringType(), True),
        StructField("account_id", StringType(), True),
        StructField("account_acct", StringType(), True),  # user@instance or user for local accounts
        StructField("account_username", StringType(), True),
        StructField("account_display_name", StringType(), True),
        StructField("created_at", TimestampType(), True),  # UTC
        StructField("edited_at", TimestampType(), True),  # UTC, null when never edited
        StructField("language", StringType(), True),
        StructField("visibility", StringType(), True),  # public|unlisted|private|direct|limited
        StructField("sensitive", BooleanType(), True),
        StructField("spoiler_text", StringType(), True),  # content warning, kept apart from text
        StructField("content_html", StringType(), True),
        StructField("text", StringType(), True),  # plain text from content_html
        StructField("text_length", IntegerType(), True),
        StructField("hashtags", ArrayType(StringType()), True),  # lower-cased, no '#'
        StructField("is_reblog", BooleanType(), True),
        StructField("replies_count", LongType(), True),
        StructField("reblogs_count", LongType(), True),
        StructField("favourites_count", LongType(), True),
        StructField("platform", StringType(), True),  # always "mastodon" for now
        StructField("threat_label", StringType(), True),  # none|offensive|hate
        StructField("threat_score", DoubleType(), True),  # probability of threat_label
        StructField("threat_level", StringType(), True),  # NONE|LOW|MEDIUM|HIGH
        StructField("contains_hate_speech", IntegerType(), True),  # 0/1
        StructField("threat_model_version", StringType(), True),
        StructField("sentiment_label", StringType(), True),  # negative|neutral|positive
        StructField("sentiment_score", DoubleType(), True),
        StructField("sentiment_model_version", StringType(), True),
        StructField("processing_status", StringType(), True),  # SUCCESS|FAILED (scoring failed); a post
        # left unscored on purpose (language outside a model's coverage) is SUCCESS with a scoring_note
        StructField("is_deleted", BooleanType(), False),
        StructField("deleted_at", TimestampType(), True),
        StructField("event_kind", StringType(), True),  # status|status.update|delete (last applied)
        StructField("bronze_partition", IntegerType(), True),  # lineage: the Kafka record applied last
        StructField("bronze_offset", LongType(), True),
        StructField("ingested_at", TimestampType(), True),
        StructField("updated_at", TimestampType(), False),  # when silver last changed the row
        # why a live post's scores are null on purpose (tootlake.models.coverage: `language_not_covered:ja`,
        # `language_unknown`, `threat:...`/`sentiment:...` when one model declined); null when every model
        # covers the post's language. Last, so an older table gets it by ADD COLUMNS (silver ensure_tables).
        StructField("scoring_note", StringType(), True),
    ]
)

QUARANTINE_SCHEMA = StructType(
    [
        StructField("key", StringType(), True),
        StructField("value", StringType(), True),  # the raw Kafka value, verbatim
        StructField("rules", ArrayType(StringType()), False),  # every rule the record failed
        StructField("reason", StringType(), True),  # a human-readable detail of the first failure
        StructField("bronze_partition", IntegerType(), True),
        StructField("bronze_offset", LongType(), True),
        StructField("quarantined_at", TimestampType(), False),
    ]
)

# Longest value (characters, UTF-8 bytes) each silver column may hold so that every sync target stores it
# without truncation: Oracle's VARCHAR2(n CHAR) columns (sql/oracle/020_rawposts.sql) and PostgreSQL's
# btree limit on the text primary key (~2,700 bytes) and varchar(32) visibility. A record over a limit is
# quarantined by silver (rule `field_too_long`); the sync checks the same limits again before writing.
TARGET_LIMITS: dict[str, tuple[int, int]] = {
    "post_id": (1000, 2000),
    "instance": (255, 1020),
    "status_id": (64, 256),
    "account_id": (64, 256),
    "account_acct": (500, 2000),
    "account_username": (255, 1020),
    "account_display_name": (500, 2000),
    "language": (35, 140),
    "url": (1000, 4000),
    "visibility": (32, 32),
}
