"""Data quality on a real temporary lake: silver's per-batch counts land in dq.metrics and match the
quarantine; a `fail` rule stops silver and gold before they publish (Delta history unchanged); the GX
suites run on the published tables; the HTML report renders in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from deltalake import DeltaTable

from tootlake.bronze.records import build_envelope, encode_record
from tootlake.catalog.rules import row
from tootlake.pipelines.jobs.gold import run_gold
from tootlake.pipelines.jobs.silver import POSTS_TABLE, QUARANTINE_TABLE, run_silver
from tootlake.pipelines.quality.guard import METRICS_TABLE, DataQualityError, Guard

pytestmark = pytest.mark.integration

FETCHED = datetime(2023, 10, 24, 12, 0, tzinfo=UTC)
CLOCK = lambda: datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # noqa: E731
BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")


def _statuses(shared_data, n):
    with open(shared_data / "mastodon-public-timeline-2023" / "statuses.dev.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def _record(instance, status):
    key, value = encode_record(build_envelope("status", instance, FETCHED, status))
    return key.decode(), value.decode()


def _append_bronze(spark, settings, records, first_offset):
    ts = datetime(2023, 10, 24, 12, 0, 1)
    rows = [(k, v, "mastodon-raw-posts", 0, first_offset + i, ts, ts, ts.date())
            for i, (k, v) in enumerate(records)]
    (spark.createDataFrame(rows, BRONZE_DDL).coalesce(1).write.format("delta").mode("append")
     .partitionBy("ingest_date").save(str(settings.table_path("bronze.posts_raw"))))


def _version(settings, table):
    return DeltaTable(str(settings.table_path(table))).version()


def _metrics(settings):
    return DeltaTable(str(settings.table_path(METRICS_TABLE))).to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def lake(spark, settings, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dq-lake")
    s = settings.model_copy(update={"lake_dir": root / "lake", "checkpoint_dir": root / "ck",
                                    "dq_enabled": True, "dq_gx_sample_rows": 500})
    statuses = _statuses(shared_data, 40)
    good = [_record("mastodon.social", st) for st in statuses[:30]]
    broken = [("mastodon.social/x1", "{not json"),
              _record("mastodon.social", {k: v for k, v in statuses[30].items() if k != "created_at"})]
    _append_bronze(spark, s, good + broken, 0)
    guard = Guard(s, "silver", clock=CLOCK)
    report = run_silver(s, spark, scorer=None, clock=CLOCK, dq=guard)
    return s, statuses, guard, report


def test_silver_metrics_match_the_batch_and_the_quarantine(lake, spark):
    s, _, guard, report = lake
    assert report["bronze_rows"] == 32 and report["quarantined"] == 2
    rows = [m for m in _metrics(s) if m["run_id"] == guard.run_id]
    by_rule = {}
    for m in rows:
        checked, failed = by_rule.get(m["rule"], (0, 0))
        by_rule[m["rule"]] = (checked + m["rows_checked"], failed + m["rows_failed"])
    quarantined = DeltaTable(str(s.table_path(QUARANTINE_TABLE))).to_pyarrow_table().to_pylist()
    per_rule = {}
    for q in quarantined:
        for name in q["rules"]:
            per_rule[name] = per_rule.get(name, 0) + 1
    assert per_rule == {"invalid_json": 1, "missing_created_at": 1}
    for name, count in per_rule.items():
        assert by_rule[name] == (32, count)
    assert by_rule["post_id_present"] == (30, 0)  # `where`: the 30 usable records
    assert {m["severity"] for m in rows} == {"drop", "warn", "fail"}


def test_fail_rule_stops_silver_before_it_publishes(lake, spark):
    s, statuses, _, _ = lake
    posts_before, quarantine_before = _version(s, POSTS_TABLE), _version(s, QUARANTINE_TABLE)
    rows_before = DeltaTable(str(s.table_path(POSTS_TABLE))).to_pyarrow_table().num_rows
    _append_bronze(spark, s, [_record("bad.example", st) for st in statuses[35:38]]
                   + [("mastodon.social/x2", "{still not json")], 100)
    guard = Guard(s, "silver", clock=CLOCK, extra_rules={"silver.posts": (
        row("instance_allowed", "instance <> 'bad.example'", "fail", "no posts from bad.example",
            where="size(rules) = 0"),)})
    with pytest.raises(DataQualityError) as excinfo:
        run_silver(s, spark, scorer=None, clock=CLOCK, dq=guard)
    message = str(excinfo.value)
    assert "instance_allowed" in message and "bad.example/" in message and "3 of 3 rows" in message
    # neither silver table got a commit: the MERGE and the quarantine append never ran
    assert _version(s, POSTS_TABLE) == posts_before
    assert _version(s, QUARANTINE_TABLE) == quarantine_before
    assert DeltaTable(str(s.table_path(POSTS_TABLE))).to_pyarrow_table().num_rows == rows_before
    failed = [m for m in _metrics(s) if m["run_id"] == guard.run_id and m["rule"] == "instance_allowed"]
    assert [(m["rows_checked"], m["rows_failed"]) for m in failed] == [(3, 3)]


def test_fail_rule_stops_a_gold_table_before_its_overwrite(lake, spark):
    s, _, _, _ = lake
    first = run_gold(s, spark, progress=False, dq=Guard(s, "gold", clock=CLOCK))
    assert first["posts_daily"] > 0
    daily_before, hourly_before = _version(s, "gold.posts_daily"), _version(s, "gold.posts_hourly")
    guard = Guard(s, "gold", clock=CLOCK, extra_rules={"gold.posts_daily": (
        row("at_most_one_post_a_day", "posts <= 1", "fail"),)})
    with pytest.raises(DataQualityError, match="at_most_one_post_a_day") as excinfo:
        run_gold(s, spark, tables=["posts_hourly", "posts_daily"], progress=False, dq=guard)
    assert "post_date" in str(excinfo.value)
    # posts_daily keeps its version; posts_hourly (checked and written before it) was published
    assert _version(s, "gold.posts_daily") == daily_before
    assert len(DeltaTable(str(s.table_path("gold.posts_daily"))).history()) == daily_before + 1
    assert _version(s, "gold.posts_hourly") == hourly_before + 1


def test_gx_suites_and_report_render_in_chromium(lake, tmp_path):
    from tootlake.pipelines.quality.gx import validate_layer
    from tootlake.pipelines.quality.report import write_report

    s, _, _, _ = lake
    silver = validate_layer(s, "silver")
    # no scorer ran: every live post is FAILED, which the suite allows; the quarantine has its 2 records
    assert silver.success, [o for t in silver.tables for o in t.outcomes if not o.success]
    assert silver.docs_index is not None and silver.docs_index.exists()
    out = write_report(s, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and "invalid_json" in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it): render not checked")
    # No background networking: this machine's closed network refuses Chromium's own connections.
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for table in ("silver.posts", "gold.posts_daily", "silver.posts_quarantine"):
        assert f"<h2 id=\"t-{table}\">{table}</h2>" in dom, table
    assert dom.count("<img") >= 3 and 'src="data:image/png;base64,' in dom
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120,
                   check=True)
    assert shot.stat().st_size > 20_000  # a blank page is a few KB
