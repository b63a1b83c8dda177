"""silver/posts: one row per post (post_id), latest edit wins; a deleted post stays as a tombstone.

The pure steps the silver job chains for each micro-batch (see pipelines/jobs/silver.py):
    parse_records -> with_rule_failures -> post_versions -> latest_per_post -> plan_scoring
    -> (score the rows that need it) -> to_posts_rows -> MERGE (MERGE_* conditions below)

Delete policy (the sync stage follows it): a `delete` event turns the row into a tombstone
(`is_deleted = true`, `deleted_at` set, content, text and scores nulled; ids, account and timestamps
kept). A tombstone is final: a late or replayed status for the same key does not bring the post back.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from tootlake.bronze.text import hashtags, html_to_text
from tootlake.catalog.rules import freshness, null_or_in, row, unique
from tootlake.catalog.table import Table, between, has_rows, not_null, one_of, unique_values
from tootlake.catalog.vocab import (
    PLATFORMS,
    PROCESSING_STATUSES,
    SENTIMENT_LABELS,
    SILVER_POSTS,
    THREAT_LEVELS,
)
from tootlake.silver.coverage import Languages, scoring_note
from tootlake.silver.schema import PLATFORM_MASTODON, POSTS_SCHEMA

SCORE_COLUMNS = [
    "threat_label",
    "threat_score",
    "threat_level",
    "contains_hate_speech",
    "threat_model_version",
    "sentiment_label",
    "sentiment_score",
    "sentiment_model_version",
    "processing_status",
    "scoring_note",
]
# Content columns a tombstone nulls (with SCORE_COLUMNS except the model versions).
CONTENT_COLUMNS = ["spoiler_text", "content_html", "text", "text_length", "hashtags"]
SUCCESS, FAILED = "SUCCESS", "FAILED"

_TEXT_TYPE = StructType([StructField("text", StringType()), StructField("hashtags", ArrayType(StringType()))])


@F.pandas_udf(_TEXT_TYPE)
def text_and_hashtags(content_html: pd.Series, tag_names: pd.Series) -> pd.DataFrame:
    """Plain text (the producer's `html_to_text`, one copy of the rule) + lower-cased hashtags."""
    texts = [html_to_text(html) if isinstance(html, str) else "" for html in content_html]
    tags = [
        hashtags(list(names) if names is not None else None, text)
        for names, text in zip(tag_names, texts, strict=True)
    ]
    return pd.DataFrame({"text": texts, "hashtags": tags})


def version_at() -> Column:
    """When this version of the post was written: the last edit, else creation."""
    return F.coalesce(F.col("edited_at"), F.col("created_at"))


def post_versions(judged: DataFrame) -> DataFrame:
    """One row per usable bronze record (status, edit or delete) in silver/posts' shape, unscored.

    Adds `version_at` (edited_at or created_at) and `is_delete_event` for deduplication and MERGE.
    """
    usable = judged.where(F.size("rules") == 0)
    is_delete = F.col("event") == "delete"
    parts = F.when(~is_delete, text_and_hashtags(F.col("content_html"), F.col("tag_names")))
    return usable.select(
        "post_id",
        "instance",
        "status_id",
        "url",
        "account_id",
        "account_acct",
        "account_username",
        "account_display_name",
        "created_at",
        "edited_at",
        "language",
        "visibility",
        "sensitive",
        "spoiler_text",
        "content_html",
        parts["text"].alias("text"),
        F.length(parts["text"]).cast("int").alias("text_length"),
        parts["hashtags"].alias("hashtags"),
        "is_reblog",
        "replies_count",
        "reblogs_count",
        "favourites_count",
        F.lit(PLATFORM_MASTODON).alias("platform"),
        is_delete.alias("is_deleted"),
        F.when(is_delete, F.coalesce("fetched_at", "ingested_at")).alias("deleted_at"),
        F.col("event").alias("event_kind"),
        "bronze_partition",
        "bronze_offset",
        "ingested_at",
        F.coalesce("fetched_at", "ingested_at").alias("fetched_at"),
    ).withColumn("version_at", version_at())


def latest_per_post(versions: DataFrame) -> DataFrame:
    """One row per post_id within a batch: a delete wins (it is final), else the latest edit, then the
    latest fetch, then the highest bronze offset (same key -> same Kafka partition, so offsets compare)."""
    order = Window.partitionBy("post_id").orderBy(
        F.col("is_deleted").desc(),
        F.col("version_at").desc_nulls_last(),
        F.col("fetched_at").desc_nulls_last(),
        F.col("bronze_offset").desc(),
    )
    return versions.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def plan_scoring(
    latest: DataFrame,
    current: DataFrame,
    threat_model_version: str | None,
    sentiment_model_version: str | None,
    retry_failed: bool = True,
    coverage: Languages | None = None,
) -> DataFrame:
    """Adds `needs_scoring` and `is_new_post` (silver has no row for it yet) and carries the stored
    scores over when the post need not be scored again.

    A post is scored when it is new, its text changed, a model version changed, or its last scoring
    failed (unless `retry_failed` is false: no models this run), or (with `coverage`: the languages each
    model of this run covers) its stored `scoring_note` is not the one the coverage gives now (the
    coverage changed, or the row predates the note); tombstones are never scored.
    `current` is silver/posts as it stands (any superset of post_id, text, created_at, edited_at,
    is_deleted and SCORE_COLUMNS).
    """
    stored = current.select(
        "post_id",
        F.col("text").alias("_stored_text"),
        F.coalesce("edited_at", "created_at").alias("_stored_version_at"),
        F.col("is_deleted").alias("_stored_is_deleted"),
        *[F.col(c).alias(f"_stored_{c}") for c in SCORE_COLUMNS],
    )
    joined = latest.join(stored, on="post_id", how="left")
    # MERGE will ignore these rows (older than the stored version, or the post is a tombstone): do not
    # spend model time on them.
    ignored = F.coalesce(F.col("_stored_is_deleted"), F.lit(False)) | F.coalesce(
        F.col("version_at") < F.col("_stored_version_at"), F.lit(False)
    )
    changed = (
        F.col("_stored_processing_status").isNull()
        | ((F.col("_stored_processing_status") != SUCCESS) & F.lit(retry_failed))
        | ~F.col("text").eqNullSafe(F.col("_stored_text"))
        | ~F.col("_stored_threat_model_version").eqNullSafe(F.lit(threat_model_version))
        | ~F.col("_stored_sentiment_model_version").eqNullSafe(F.lit(sentiment_model_version))
    )
    if coverage is not None:
        expected = scoring_note(F.col("language"), coverage)
        changed = changed | ~F.col("_stored_scoring_note").eqNullSafe(expected)
    needs = ~F.col("is_deleted") & ~ignored & changed
    # silver has no row for this post yet (is_deleted is never null in a stored row)
    out = joined.withColumns({"needs_scoring": needs, "is_new_post": F.col("_stored_is_deleted").isNull()})
    for column in SCORE_COLUMNS:
        out = out.withColumn(
            column,
            F.when(~F.col("needs_scoring") & ~F.col("is_deleted"), F.col(f"_stored_{column}")),
        )
    return out.drop("_stored_text", "_stored_version_at", "_stored_is_deleted",
                    *[f"_stored_{c}" for c in SCORE_COLUMNS])


def to_posts_rows(scored: DataFrame, updated_at: Column) -> DataFrame:
    """silver/posts columns in contract order (POSTS_SCHEMA) + `version_at`, `needs_scoring` for MERGE and
    `is_new_post` (true when the planner said so; rows not planned against silver count as existing)."""
    tomb = F.col("is_deleted")
    columns = []
    for field in POSTS_SCHEMA.fields:
        if field.name == "updated_at":
            col = updated_at
        elif field.name in CONTENT_COLUMNS or field.name in SCORE_COLUMNS:
            col = F.when(~tomb, F.col(field.name))
        else:
            col = F.col(field.name)
        columns.append(col.cast(field.dataType).alias(field.name))
    needs = F.coalesce("needs_scoring", F.lit(False)).alias("needs_scoring")
    is_new = (F.coalesce("is_new_post", F.lit(False)) if "is_new_post" in scored.columns
              else F.lit(False)).alias("is_new_post")
    return scored.select(*columns, "version_at", needs, is_new)


# --- MERGE into silver/posts (t = target, s = to_posts_rows output) ----------------------------------
MERGE_ON = "t.post_id = s.post_id"
_T_VERSION = "coalesce(t.edited_at, t.created_at)"
# A delete turns a live row into a tombstone; tombstones never change again.
MERGE_DELETE_WHEN = "s.is_deleted AND NOT t.is_deleted"
MERGE_DELETE_SET = {
    **{c: "NULL" for c in CONTENT_COLUMNS},
    **{c: "NULL" for c in SCORE_COLUMNS if not c.endswith("model_version")},
    "is_deleted": "true",
    "deleted_at": "s.deleted_at",
    "event_kind": "s.event_kind",
    "bronze_partition": "s.bronze_partition",
    "bronze_offset": "s.bronze_offset",
    "ingested_at": "s.ingested_at",
    "updated_at": "s.updated_at",
}
# A status updates a live row only when it is a newer version, or the same version re-scored (model
# version changed / last scoring failed). A replayed record is neither, so it changes nothing.
MERGE_UPDATE_WHEN = (
    f"NOT s.is_deleted AND NOT t.is_deleted AND (s.version_at > {_T_VERSION} "
    f"OR (s.version_at = {_T_VERSION} AND s.needs_scoring))"
)
MERGE_UPDATE_SET = {field.name: f"s.{field.name}" for field in POSTS_SCHEMA.fields}
MERGE_INSERT_VALUES = {field.name: f"s.{field.name}" for field in POSTS_SCHEMA.fields}


# --- the table, and what is checked on it at each hop -------------------------------------------------
# bronze -> silver runs on the judged batch (one row per bronze record, `rules` = the quarantine rules it
# failed): its `drop` rules ARE silver's quarantine rules (tootlake.silver.quarantine.rules: they need the
# time of processing, so expectations.tables.silver_posts adds them at run time); below, the rules on the
# records silver can use (passed every quarantine rule) and, of those, statuses (not deletes).
_USABLE = "size(rules) = 0"
_USABLE_STATUS = "size(rules) = 0 AND event <> 'delete'"
_LIVE = "NOT is_deleted"
_LIVE_CHANGE = "NOT is_deleted AND _change_type <> 'delete'"

POSTS = Table(
    SILVER_POSTS,
    grain="one row per post (post_id), latest edit wins; a deleted post stays as a tombstone (is_deleted)",
    key=("post_id",),
    columns=tuple(POSTS_SCHEMA.fieldNames()),
    schema=POSTS_SCHEMA,
    rules={
        "bronze->silver": (
            row("post_id_present", "post_id IS NOT NULL AND trim(post_id) <> ''", "fail",
                "a usable record has a post key", where=_USABLE),
            row("language_present", "language IS NOT NULL", "warn", "a status names its language",
                where=_USABLE_STATUS),
            row("content_present", "content_html IS NOT NULL AND trim(content_html) <> ''", "warn",
                "a status has content", where=_USABLE_STATUS),
        ),
        # as the gold job reads it (one row per post)
        "silver->gold": (
            unique("post_id_unique", ("post_id",), "fail"),
            row("threat_level_known", null_or_in("threat_level", THREAT_LEVELS, "upper"), "fail",
                f"threat_level is null or one of {THREAT_LEVELS}"),
            row("sentiment_label_known", null_or_in("sentiment_label", SENTIMENT_LABELS, "lower"), "fail",
                f"sentiment_label is null or one of {SENTIMENT_LABELS}"),
            row("live_post_has_created_at", "created_at IS NOT NULL", "warn",
                "a live post has created_at (gold leaves it out otherwise)", where=_LIVE),
            row("live_post_scored", "processing_status = 'SUCCESS'", "warn",
                "a live post was scored by both models", where=_LIVE),
            row("text_length_not_negative", "text_length IS NULL OR text_length >= 0", "warn"),
            freshness("updated_recently", "updated_at", timedelta(days=7), "warn"),
        ),
        # its change rows as the sync stages them (silver -> PostgreSQL / Oracle)
        "silver->sync": (
            row("post_id_present", "post_id IS NOT NULL AND trim(post_id) <> ''", "fail",
                "every synced row has its primary key"),
            row("platform_known", null_or_in("platform", PLATFORMS, "lower"), "drop",
                f"platform is one of the PLATFORMS rows {PLATFORMS} (the FK would refuse it)",
                where=_LIVE_CHANGE),
            row("threat_level_known", null_or_in("threat_level", THREAT_LEVELS, "upper"), "fail",
                f"threat_level is null or one of {THREAT_LEVELS}"),
            row("live_post_has_created_at", "created_at IS NOT NULL", "warn",
                "RAWPOSTS.created_at is filled", where=_LIVE_CHANGE),
        ),
    },
    suite=(
        has_rows(),
        *not_null("post_id", "is_deleted", "updated_at"),
        unique_values("post_id"),
        one_of("threat_level", THREAT_LEVELS),
        one_of("sentiment_label", SENTIMENT_LABELS),
        one_of("platform", PLATFORMS),
        one_of("processing_status", PROCESSING_STATUSES),
        between("threat_score", 0.0, 1.0),
        between("sentiment_score", 0.0, 1.0),
        between("text_length", 0),
    ),
)
