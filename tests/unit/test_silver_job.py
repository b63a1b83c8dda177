"""pipelines.silver_job helpers that need no Spark: the writer id kept with the checkpoint, the summary."""

from __future__ import annotations

from tootlake.pipelines.silver_job import format_summary, txn_app_id


def test_txn_app_id_lives_and_dies_with_the_checkpoint(tmp_path):
    first = txn_app_id(tmp_path / "cp")
    assert first.startswith("tootlake-silver-") and txn_app_id(tmp_path / "cp") == first
    # a fresh checkpoint restarts batch ids at 0, so it must not reuse the old writer id
    assert txn_app_id(tmp_path / "other") != first


def test_format_summary_lists_every_distribution():
    text = format_summary({
        "silver_rows": 10, "live_posts": 9, "tombstones": 1,
        "processing_status": {"SUCCESS": 9}, "threat_level": {"NONE": 7, "LOW": 2},
        "sentiment": {"neutral": 5, "positive": 4}, "quarantine_rows": 3,
        "quarantine_by_rule": {"invalid_json": 2, "missing_id": 1},
    })
    assert "10 rows (9 live, 1 deleted)" in text
    assert "NONE 7, LOW 2" in text and "neutral 5, positive 4" in text
    assert "3 records" in text and "invalid_json 2, missing_id 1" in text
