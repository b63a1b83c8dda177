"""`tootlake bench freshness`: the pure parts (percentiles, backlog series, fresh posts, the summary)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tootlake.bronze.records import build_envelope, encode_record
from tootlake.pipelines.bench.freshness import (
    backlog_series,
    build_parser,
    cores,
    fresh_status,
    latency_stats,
    percentile,
    summary,
)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # unsorted input
    assert percentile([], 50) is None


def test_latency_stats_count_only_posts_that_were_seen() -> None:
    sent = {"a": 100.0, "b": 101.0, "c": 102.0}
    seen = {"a": 104.0, "b": 111.0, "x": 50.0}  # c never arrived; x was not sent in the measured window
    stats = latency_stats(sent, seen)
    assert stats == {"sent": 3, "arrived": 2, "p50_s": 4.0, "p95_s": 10.0, "max_s": 10.0}
    assert latency_stats({}, {}) == {"sent": 0, "arrived": 0, "p50_s": None, "p95_s": None, "max_s": None}


def test_backlog_series_every_interval_and_at_the_end() -> None:
    sent = [1.0, 2.0, 31.0, 32.0, 61.0]
    arrived = [25.0, 40.0, 41.0, 70.0]
    series = backlog_series(sent, arrived, start=0.0, end=75.0, every_s=30.0)
    assert series == [
        {"t": 30.0, "sent": 2, "arrived": 1, "backlog": 1},
        {"t": 60.0, "sent": 4, "arrived": 3, "backlog": 1},
        {"t": 75.0, "sent": 5, "arrived": 4, "backlog": 1},
    ]
    # an end on a tick is not repeated; a run shorter than one interval still has its end point
    assert [p["t"] for p in backlog_series(sent, arrived, 0.0, 60.0, 30.0)] == [30.0, 60.0]
    assert backlog_series([], [], 0.0, 10.0, 30.0) == [{"t": 10.0, "sent": 0, "arrived": 0, "backlog": 0}]


def test_cores() -> None:
    assert cores(30.0, 60.0) == 0.5
    assert cores(1.0, 0.0) is None


def test_fresh_status_is_a_new_post_with_the_same_content() -> None:
    template = {"id": "111268156924856347", "created_at": "2023-10-20T15:55:35.889Z",
                "edited_at": "2023-10-21T00:00:00Z", "content": "<p>hi</p>", "account": {"id": "1"},
                "uri": "https://mastodon.social/users/u/statuses/111268156924856347",
                "url": "https://mastodon.social/@u/111268156924856347"}
    now = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)
    status = fresh_status(template, "42", now)
    assert status["id"] == "42" and status["content"] == "<p>hi</p>"
    assert status["uri"] == "https://mastodon.social/users/u/statuses/42"
    assert status["url"] == "https://mastodon.social/@u/42"
    assert status["created_at"] == "2026-12-03T10:00:00.123Z" and status["edited_at"] is None
    assert template["id"] == "111268156924856347"  # the template is not changed
    key, _value = encode_record(build_envelope("status", "mastodon.social", now, status))
    assert key == b"mastodon.social/42"


def _figures() -> dict:
    return {
        "rate": 5.0, "minutes": 2.0, "warmup_posts": 20, "ready_s": 250.0, "produced": 600, "delivered": 600,
        "delivery_errors": 0, "kafka_timestamp_types": [1],
        "processedposts": {"sent": 600, "arrived": 599, "p50_s": 30.0, "p95_s": 55.5, "max_s": 70.1},
        "silver": {"sent": 600, "arrived": 600, "p50_s": 20.0, "p95_s": 40.0, "max_s": 50.0},
        "quarantined": 0, "backlog_every_s": 30.0,
        "backlog": [{"t": 30.0, "sent": 150, "arrived": 20, "backlog": 130}],
        "backlog_silver": [], "backlog_at_end_of_feed": 130, "fed_s": 120.0, "drain_s": 70.0, "idle_s": 30.0,
        "peak_rss_stack_bytes": 6 * 2**30, "peak_rss_run_bytes": 5 * 2**30, "peak_rss_kafka_bytes": 2**29,
        "peak_rss_postgres_bytes": None, "peak_rss_bench_bytes": 2**27,
        "cpu_cores_fed": 1.5, "cpu_cores_idle": 0.25, "cpu_cores_bench_fed": 0.05,
        "restarts": {"bronze": 0}, "probe_errors": {}, "shutdown_s": 4.2, "run_exit": 0,
    }


def test_summary_lines_and_json_line() -> None:
    figures = _figures()
    lines = summary(figures)
    text = "\n".join(lines)
    assert "PROCESSEDPOSTS: 599/600 arrived; latency p50 30.0 s, p95 55.5 s, max 70.1 s" in text
    assert "backlog (sent - in PROCESSEDPOSTS), s after the clock started: 30s 130" in text
    assert "stack 6.00 GiB" in text and "PostgreSQL -" in text
    assert "1.50 cores" in text and "0.25 cores (25 % of one core) idle" in text
    assert "1 post(s) not in PROCESSEDPOSTS" in lines[-1]
    assert json.loads(json.dumps(figures)) == figures  # the last line of the benchmark: plain JSON


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["--rate", "50", "--minutes", "10"])
    assert (args.rate, args.minutes, args.warmup, args.idle_s, args.keep) == (50.0, 10.0, 20, 30.0, False)
