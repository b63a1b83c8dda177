"""`tootlake maintain` on a real Delta table: small files compacted (no change-feed rows), old files vacuumed,
never-seen tombstones expired after their age and nothing else, retention properties set, state for status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import types as T

from tootlake.catalog.vocab import SILVER_POSTS
from tootlake.pipelines.jobs.silver import ensure_tables
from tootlake.pipelines.lake import Lake
from tootlake.pipelines.ops.maintain import file_stats, maintain, read_state, table_properties
from tootlake.silver.schema import POSTS_SCHEMA

NOW = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
FILLER = {T.StringType: "x", T.BooleanType: False, T.TimestampType: NOW, T.IntegerType: 0, T.LongType: 0,
          T.DoubleType: 0.0, T.FloatType: 0.0, T.ArrayType: []}


def post(post_id: str, **values) -> dict:
    """A silver/posts row: the given values, a filler in every other non-nullable column, else null."""
    row = {f.name: (FILLER[type(f.dataType)] if not f.nullable else None) for f in POSTS_SCHEMA.fields}
    row.update({"post_id": post_id, "is_deleted": False, "created_at": NOW - timedelta(days=5), **values})
    return row


@pytest.mark.integration
def test_maintain_compacts_vacuums_and_expires_only_old_never_seen_tombstones(spark, settings, tmp_path):
    conf = settings.model_copy(update={
        "lake_dir": tmp_path / "lake", "state_dir": tmp_path / "state", "maintain_vacuum_retain_hours": 0,
        "maintain_tombstone_days": 1.0, "maintain_log_retention_days": 7})
    ensure_tables(spark, conf)
    lake = Lake(conf, spark)
    old, recent = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    rows = [
        post("never-seen-old", is_deleted=True, created_at=None, deleted_at=old),  # expires
        post("never-seen-recent", is_deleted=True, created_at=None, deleted_at=recent),  # too young
        post("seen-and-deleted", is_deleted=True, deleted_at=old),  # silver had the status: final
        *[post(f"live-{n}") for n in range(9)],
    ]
    for start in range(0, len(rows), 2):  # six appends: six small files, as a 1-second stream writes them
        lake.append(SILVER_POSTS, spark.createDataFrame(rows[start:start + 2], POSTS_SCHEMA).coalesce(1))
    before_version = lake.table(SILVER_POSTS).version()
    assert file_stats(conf, SILVER_POSTS).files == 6

    results = maintain(spark, conf, [SILVER_POSTS], log=lambda _line: None)

    (result,) = results
    assert "error" not in result, result["error"]
    assert result["files_before"] == 6 and result["files_after"] == 1 and result["tombstones_expired"] == 1
    kept = {r.post_id for r in lake.read(SILVER_POSTS).select("post_id").collect()}
    assert kept == {r["post_id"] for r in rows} - {"never-seen-old"}
    # VACUUM (retention 0 h here) left only the files the current version uses
    table_dir = tmp_path / "lake" / "silver" / "posts"
    on_disk = [f for f in table_dir.rglob("*.parquet") if "_delta_log" not in f.parts]
    assert len(on_disk) == 1
    # what downstream readers of the change feed get: the expiry (a DELETE), then commits without data
    # changes (OPTIMIZE is dataChange=false; properties; VACUUM)
    operations = [c.operation for c in reversed(lake.history(SILVER_POSTS)) if c.version > before_version]
    assert operations[0] == "DELETE" and "OPTIMIZE" in operations and operations[-1] == "VACUUM END"
    properties = lake.detail(SILVER_POSTS)["properties"]
    assert all(properties.get(k) == v for k, v in table_properties(conf).items())
    state = read_state(conf)
    assert state is not None and state["tables"][0]["files_after"] == 1
    # a second run has nothing left to do
    (again,) = maintain(spark, conf, [SILVER_POSTS], log=lambda _line: None)
    assert again["files_before"] == 1 and again["tombstones_expired"] == 0 and again["properties_set"] == []
