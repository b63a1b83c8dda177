"""`tootlake status` on a tiny lake written with delta-rs and with no services running (fast, no JVM)."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from tootlake.pipelines.ops.status import collect_status, format_status
from tootlake.pipelines.settings import load_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path):
    # nothing listens on these ports: both services must show as down, quickly
    return load_settings(tootlake_home=tmp_path, state_dir=tmp_path / "state", log_dir=tmp_path / "log",
                         checkpoint_dir=tmp_path / "cp", lake_dir=tmp_path / "lake",
                         kafka_port=_free_port(), postgres_port=_free_port())


def test_status_when_everything_is_down_and_the_lake_is_empty(settings) -> None:
    started = time.monotonic()
    status = collect_status(settings)
    assert time.monotonic() - started < 5
    assert not status["healthy"]
    assert not status["services"]["kafka"]["up"] and not status["services"]["postgres"]["up"]
    text = format_status(status)
    assert "NOT HEALTHY" in text and "no Delta tables yet" in text and "no DQ runs yet" in text
    assert "unknown (broker down" in text
    json.dumps(status, default=str)  # --json never fails


def test_status_reads_tables_checkpoints_quarantine_and_dq(settings) -> None:
    lake = settings.path(settings.lake_dir)
    write_deltalake(str(lake / "bronze" / "posts_raw"), pa.table({"key": ["a", "b", "c"]}))
    write_deltalake(str(lake / "bronze" / "posts_raw"), pa.table({"key": ["d"]}), mode="append")
    write_deltalake(str(lake / "silver" / "posts_quarantine"), pa.table({
        "key": ["x", "y"], "rules": pa.array([["invalid_json"], ["invalid_json", "missing_id"]])}))
    now = datetime.now(UTC)
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    write_deltalake(str(lake / "dq" / "metrics"), pa.table({
        "run_id": ["old", "new", "new"], "job": ["silver"] * 3, "rule": ["r1", "r1", "r2"],
        "severity": ["warn", "warn", "drop"], "rows_failed": [9, 0, 2], "checked_at": [earlier, now, now]}))
    cp = settings.checkpoint_path("bronze")
    (cp / "offsets").mkdir(parents=True)
    (cp / "commits").mkdir()
    (cp / "offsets" / "0").write_text("v1\n{}\n" + json.dumps({settings.kafka_topic: {"0": 3, "1": 1}}))
    (cp / "commits" / "0").write_text("v1\n{}")
    log_dir = settings.path(settings.log_dir) / "run"
    log_dir.mkdir(parents=True)
    (log_dir / "bronze.log").write_text("[bronze] batch 0: 3 rows (5 rows/s), 3 rows so far\n"
                                        "[bronze] batch 1: 1 rows (2 rows/s), 4 rows so far\n")

    status = collect_status(settings)
    assert status["tables"]["bronze.posts_raw"]["version"] == 1
    assert status["tables"]["bronze.posts_raw"]["rows"] == 4
    assert status["quarantine"] == {"invalid_json": 2, "missing_id": 1}
    silver_dq = status["dq"]["runs"]["silver"]
    assert silver_dq["run_id"] == "new" and silver_dq["rules_checked"] == 2
    assert silver_dq["failed"] == {"r2": {"severity": "drop", "rows_failed": 2}}
    bronze = status["stages"]["bronze"]
    assert bronze["checkpoint"]["batch"] == 0 and bronze["last_logged_batch"] == {"batch": 1, "rows": 1}
    assert bronze["table"]["rows"] == 4
    text = format_status(status)
    assert "bronze.posts_raw" in text and "invalid_json 2" in text and "r2 [drop] 2 rows" in text
