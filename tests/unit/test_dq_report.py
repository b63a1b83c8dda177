"""dq report and dq check without Spark: metrics summed per run, latest run wins, the page lists every
table with a plot; `dq check` exits 2 naming what to run when the tables are missing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tootlake.pipelines.quality.guard import append_metrics
from tootlake.pipelines.quality.report import latest, load_metrics, per_run, summary_lines, write_report


def _row(run, table, rule, severity, checked, failed, batch, minute):
    return {"run_id": run, "job": "silver", "table": table, "hop": "bronze->silver", "rule": rule,
            "severity": severity, "rows_checked": checked, "rows_failed": failed, "batch_id": batch,
            "checked_at": datetime(2026, 11, 23, 12, minute, tzinfo=UTC), "note": ""}


@pytest.fixture
def lake_settings(settings, tmp_path):
    s = settings.model_copy(update={"lake_dir": tmp_path / "lake"})
    append_metrics(s, [
        _row("r1", "silver.posts", "invalid_json", "drop", 100, 3, 0, 0),
        _row("r1", "silver.posts", "invalid_json", "drop", 50, 1, 1, 1),
        _row("r1", "silver.posts", "language_present", "warn", 150, 0, 0, 1),
        _row("r2", "silver.posts", "invalid_json", "drop", 80, 0, 0, 5),
        _row("r2", "silver.posts", "language_present", "warn", 80, 7, 0, 5),
        {**_row("r3", "gold.posts_daily", "key_unique", "fail", 4, 0, None, 6), "job": "gold"},
    ])
    return s


def test_runs_are_summed_over_batches_and_the_latest_run_wins(lake_settings):
    runs = per_run(load_metrics(lake_settings))
    r1 = runs[(runs["run_id"] == "r1") & (runs["rule"] == "invalid_json")].iloc[0]
    assert (r1["rows_checked"], r1["rows_failed"], r1["batches"]) == (150, 4, 2)
    now = {(r["table"], r["rule"]): (r["run_id"], r["rows_failed"]) for _, r in latest(runs).iterrows()}
    assert now == {("silver.posts", "invalid_json"): ("r2", 0),
                   ("silver.posts", "language_present"): ("r2", 7),
                   ("gold.posts_daily", "key_unique"): ("r3", 0)}
    lines = "\n".join(summary_lines(lake_settings))
    assert "language_present (warn) 7" in lines and "all passed" in lines


def test_report_lists_tables_with_a_plot_each(lake_settings, tmp_path):
    out = write_report(lake_settings, tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "<h2 id='t-silver.posts'>silver.posts</h2>" in page and "gold.posts_daily" in page
    assert page.count("<img") == 2 and page.count("data:image/png;base64,") == 2
    assert "warning" in page and "No quarantined records" in page and "dq check" in page


def test_dq_check_exits_2_when_tables_are_missing(monkeypatch, tmp_path, capsys):
    from tootlake.pipelines.cli import main

    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "empty-lake"))
    assert main(["dq", "check", "--layer", "gold"]) == 2
    captured = capsys.readouterr()
    assert "FAIL gold.posts_daily: no Delta table" in captured.out
    assert "run `tootlake gold`" in captured.err


def test_a_replayed_stream_batch_appends_its_metrics_once(settings, tmp_path):
    s = settings.model_copy(update={"lake_dir": tmp_path / "lake"})
    rows = [_row("run-before-crash", "silver.posts", "invalid_json", "drop", 100, 3, 7, 0)]
    assert append_metrics(s, rows, txn=("stream-a/silver.posts/bronze->silver", 7))
    replayed = [{**rows[0], "run_id": "run-after-restart"}]  # the restarted job sees batch 7 again
    assert not append_metrics(s, replayed, txn=("stream-a/silver.posts/bronze->silver", 7))
    assert append_metrics(s, replayed, txn=("stream-a/silver.posts/bronze->silver", 8))
    assert append_metrics(s, rows, txn=("stream-b/silver.posts/bronze->silver", 7))  # another stream
    metrics = load_metrics(s)
    assert len(metrics) == 3 and list(metrics["run_id"]).count("run-before-crash") == 2
