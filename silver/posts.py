"""silver/posts: one row per post (post_id), latest edit wins; a deleted post stays as a tombstone.

The pure steps the silver job chains for each micro-batch (see pipelines/jobs/silver.py):
    parse_records -> with_rule_failures -> post_versions -> latest_per_post -> plan_scoring
    -> (score the rows that need it) -> to_posts_rows -> MERGE (MERGE_* conditions below)

Delete policy (the sync stage follows it): a `delete` event turns the row into a tombstone
(`is_deleted = true`, `deleted_at` set, content, text and scores nulled; ids, account and timestamps
kept). A tombstone is final: a late or replayed status for the same key does not bring the post back.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from tootlake.bronze.text import hashtags, html_to_text
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
) -> DataFrame:
    """Adds `needs_scoring` and `is_new_post` (silver has no row for it yet) and carries the stored
    scores over when the post need not be scored again.

    A post is scored when it is new, its text changed, a model version changed, or its last scoring
    failed (unless `retry_failed` is false: no models this run); tombstones are never scored.
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
