"""produce_events without a broker: dry runs, filters, --max, the reporter, and the daemon's helpers."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tootlake.bronze.filters import FilterConfig
from tootlake.pipelines.mastodon_source import ReplaySource, SourceEvent
from tootlake.pipelines.producer import produce_events, producer_config
from tootlake.pipelines.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(tootlake_home=tmp_path, kafka_port=1999, producer_report_every_s=0.2)


@pytest.fixture
def no_kafka(monkeypatch):
    """Creating a producer or admin client fails the test: a dry run must not touch Kafka."""
    import confluent_kafka
    import confluent_kafka.admin

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a dry run created a Kafka client")

    monkeypatch.setattr(confluent_kafka, "Producer", forbidden)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", forbidden)


def test_dry_run_builds_counts_and_echoes_without_kafka(settings, no_kafka) -> None:
    lines: list[str] = []
    report = produce_events(settings, ReplaySource([FIXTURES]), dry_run=True, echo=lines.append)
    assert report.skipped_reasons == {"reblog": 7} and report.skipped_by_filter == 7
    assert report.produced == len(lines) == 422 - 7
    assert report.delivered == 0 and report.failed == 0 and report.malformed == 0
    key, kind, size = lines[0].split("\t")
    assert key.startswith("localhost:3000/") and kind == "status" and size.endswith(" bytes")
    assert "dry run: built 415 (status 415)" in report.summary()


def test_max_and_filters(settings, no_kafka) -> None:
    english = FilterConfig(languages=("en",))
    report = produce_events(settings, ReplaySource([TIMELINE]), dry_run=True, max_events=25, filters=english)
    assert report.produced == 25 and report.skipped_reasons.keys() <= {"language"}
    report = produce_events(settings, ReplaySource([TIMELINE]), dry_run=True, max_events=0)
    assert report.produced == 0


def test_deletes_pass_filters_and_malformed_counts_come_from_the_source(settings, no_kafka, tmp_path) -> None:
    events = [SourceEvent("delete", None, "42", "m.example", NOW)]
    report = produce_events(settings, events, dry_run=True,
                            filters=FilterConfig(include_keywords=("never-there",)))
    assert report.produced == 1 and report.events == {"delete": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + TIMELINE.read_text(encoding="utf-8").split("\n")[0] + "\n")
    report = produce_events(settings, ReplaySource([bad]), dry_run=True)
    assert (report.produced, report.malformed) == (1, 1)


def test_throughput_lines_also_while_the_source_is_quiet(settings, no_kafka, caplog) -> None:
    def slow():  # a quiet live stream: 0.3 s between posts, reports are due every 0.2 s
        for event in ReplaySource([TIMELINE]):
            yield event
            time.sleep(0.3)

    with caplog.at_level(logging.INFO, logger="tootlake.producer"):
        report = produce_events(settings, slow(), dry_run=True, max_events=4)
    lines = [r.getMessage() for r in caplog.records if "msg/s last" in r.getMessage()]
    assert len(lines) >= 3 and lines[-1].startswith(f"built {report.produced},")


def test_producer_config_is_idempotent_acks_all_and_compressed(settings) -> None:
    config = producer_config(settings)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["compression.type"] == "lz4"
    assert producer_config(settings.model_copy(update={"producer_compression": "zstd"}))[
        "compression.type"] == "zstd"


def test_envelope_value_is_compact_json_with_the_status_as_received(settings, no_kafka) -> None:
    from tootlake.bronze.records import encode_record

    raw = json.loads(TIMELINE.read_text(encoding="utf-8").split("\n")[0])
    event = next(iter(ReplaySource([TIMELINE], clock=lambda: NOW)))
    key, value = encode_record(event.envelope())
    assert key == f"mastodon.social/{raw['id']}".encode()
    assert json.loads(value) == {"schema_version": 1, "event": "status", "instance": "mastodon.social",
                                 "fetched_at": "2026-11-23T00:00:00.000Z", "status": raw}
    assert b'": ' not in value[:80]  # compact separators
