"""Sync staging rows: mapping from silver, text policy, dedup, COPY encoding (no database needed)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from tootlake.pipelines.databases import records
from tootlake.pipelines.databases.postgres import copy_payload, copy_value
from tootlake.pipelines.databases.records import (
    STAGE_NAMES,
    clean_text,
    latest_per_post,
    stage_row,
    stage_rows,
    stage_rows_checked,
    too_long,
)
from tootlake.silver.schema import POSTS_SCHEMA

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def silver(post_id: str = "https://m.example/users/a/statuses/1", updated_at=T0, **overrides) -> dict:
    row = {field.name: None for field in POSTS_SCHEMA.fields}
    row.update(post_id=post_id, is_deleted=False, platform="mastodon", hashtags=["news", "art"],
               account_username="alice", text="hello", created_at=T0, updated_at=updated_at,
               processing_status="SUCCESS", threat_score=0.25, contains_hate_speech=0)
    row.update(overrides)
    return row


def col(row: tuple, name: str):
    return row[STAGE_NAMES.index(name)]


def test_every_silver_column_read_by_sync_exists_in_the_contract():
    assert set(records.SILVER_COLUMNS) <= set(POSTS_SCHEMA.fieldNames())


def test_stage_row_maps_the_older_systems_columns():
    row = stage_row(silver(account_display_name="Alice", ingested_at=dt.datetime(2026, 1, 1, 13)))
    assert col(row, "platform_id") == 1
    assert col(row, "hashtag") == "news,art"
    assert col(row, "username") == "alice"
    assert col(row, "display_name") == "Alice"
    assert col(row, "post_content") == "hello"
    # naive timestamps are UTC (Spark session time zone)
    assert col(row, "collected_at") == dt.datetime(2026, 1, 1, 13, tzinfo=dt.UTC)
    assert col(row, "processing_status") == "SUCCESS"
    assert col(row, "processed_at") == T0


def test_failed_scoring_is_kept_as_failed_and_unscored_is_retry():
    failed = stage_row(silver(processing_status="FAILED", threat_score=None))
    assert col(failed, "processing_status") == "FAILED"
    assert col(stage_row(silver(processing_status=None)), "processing_status") == "RETRY"
    with pytest.raises(ValueError, match="processing_status"):
        stage_row(silver(processing_status="MAYBE"))


def test_unknown_platform_is_an_error_that_says_what_to_do():
    with pytest.raises(ValueError, match="PLATFORMS"):
        stage_row(silver(platform="myspace"))


def test_nul_is_stripped_everything_else_verbatim():
    text = "a\x00b 'q' \"dq\" \\ \t\n\r 😀 \u200f\u202e DROP TABLE rawposts;-- \\N"
    row = stage_row(silver(text=text, account_display_name="x\x00y", hashtags=["a\x00b"]))
    assert col(row, "post_content") == text.replace("\x00", "")
    assert col(row, "display_name") == "xy"
    assert col(row, "hashtag") == "ab"
    assert clean_text("\ud800x") == "\ufffdx"  # a lone surrogate cannot be UTF-8


def test_latest_per_post_keeps_the_newest_and_a_tombstone_wins_a_tie():
    later = T0 + dt.timedelta(minutes=1)
    rows = stage_rows([
        silver("p1", T0, text="old"), silver("p1", later, text="new"), silver("p1", T0, text="older again"),
        silver("p2", later, text="live"), silver("p2", later, is_deleted=True, text=None),
    ])
    by_key = {col(r, "post_id"): r for r in rows}
    assert len(rows) == 2
    assert col(by_key["p1"], "post_content") == "new"
    assert col(by_key["p2"], "is_deleted") is True
    assert latest_per_post([]) == []


def test_copy_value_escapes_copy_text_format():
    assert copy_value(None) == "\\N"
    assert copy_value("\\N") == "\\\\N"  # the literal text \N, not NULL
    assert copy_value("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_value(True) == "t" and copy_value(False) == "f"
    assert copy_value(float("nan")) == "NaN"
    assert copy_value(dt.datetime(2026, 1, 1)) == "2026-01-01T00:00:00+00:00"
    payload = copy_payload([("x", None, 3), ("y\n", 1.5, 4)])
    assert payload == b"x\t\\N\t3\ny\\n\t1.5\t4\n"
    assert b"\x00" not in copy_payload([stage_row(silver(text="a\x00"))])


def test_platform_ids_match_both_seed_scripts():
    for target in ("postgres", "oracle"):
        text = (SQL_DIR / target / "010_platforms.sql").read_text()
        pairs = re.findall(r"(\d+)(?: AS PLATFORM_ID)?, '(\w+)'", text)
        seeded = {name.lower(): int(pid) for pid, name in pairs}
        assert seeded == records.PLATFORM_IDS, target


def _versioned(post_id, version, change, updated, **kw):
    # as runner.silver_rows gives them: a physical delete arrives as a tombstone
    deleted = {"is_deleted": True} if change == "delete" else {}
    return {**silver(post_id, updated, **kw, **deleted), "_commit_version": version, "_change_type": change,
            "_table_id": "lake-1"}


def test_the_commit_version_orders_rows_not_the_wall_clock():
    # silver's clock stepped back: the later commit carries an older updated_at, and still wins
    rows = stage_rows([_versioned("p1", 5, "update_postimage", T0, text="newer commit"),
                       _versioned("p1", 4, "insert", T0 + dt.timedelta(hours=1), text="older commit")])
    assert [col(r, "post_content") for r in rows] == ["newer commit"]
    assert col(rows[0], "source_version") == 5 and col(rows[0], "source_table") == "lake-1"


def test_a_restore_is_not_a_delete_of_a_live_post():
    # `restore` shows in the change feed as delete + insert of one row in one commit (equal updated_at)
    rows = stage_rows([_versioned("p1", 9, "delete", T0), _versioned("p1", 9, "insert", T0, text="live")])
    assert len(rows) == 1 and col(rows[0], "is_deleted") is False and col(rows[0], "post_content") == "live"
    # a real delete in a later commit still wins
    rows = stage_rows([_versioned("p1", 9, "insert", T0), _versioned("p1", 10, "delete", T0)])
    assert col(rows[0], "is_deleted") is True


def test_values_too_long_for_a_target_column_are_rejected_not_truncated():
    fine = silver("p1", T0, visibility="x" * 32, status_id="9" * 64)
    long_visibility = silver("p2", T0, visibility="x" * 33)
    long_key = silver("é" * 1001, T0)
    wide_key = silver("😀" * 600, T0)  # 600 chars, 2,400 bytes: over PostgreSQL's index limit
    unknown_platform = silver("p5", T0, platform="myspace")
    staged, rejected = stage_rows_checked([fine, long_visibility, long_key, wide_key, unknown_platform])
    assert [col(r, "post_id") for r in staged] == ["p1"]
    reasons = {post["post_id"][:3]: reason for post, reason in rejected}
    assert reasons["p2"].startswith("visibility is 33 chars")
    assert reasons["é" * 3].startswith("post_id is 1001 chars")
    assert "2400 bytes" in reasons["😀" * 3]
    assert "myspace" in reasons["p5"]
    assert too_long(fine) is None
