"""The drill's plan: which events the producer sends and which posts PostgreSQL must hold at the end."""

from __future__ import annotations

from datetime import UTC, datetime

from tootlake.pipelines.drill import DrillReport, expected_keys
from tootlake.pipelines.mastodon_source import SourceEvent, delete_event

AT = datetime(2026, 11, 23, tzinfo=UTC)


def _status(status_id: str, kind: str = "status") -> SourceEvent:
    return SourceEvent(kind, {"id": status_id}, status_id, "mastodon.social", AT)


def test_expected_keys_follow_the_last_event_per_post() -> None:
    events = [_status("1"), _status("2"), _status("1", "status.update"),
              delete_event("2", "mastodon.social", AT), _status("3"),
              delete_event("4", "mastodon.social", AT), _status("4")]
    # 2 was deleted last; 4 was deleted, then appeared again (a replay in another order): it is expected
    assert expected_keys(events) == {"mastodon.social/1", "mastodon.social/3", "mastodon.social/4"}


def test_report_fails_on_missing_or_duplicated_posts() -> None:
    report = DrillReport(rawposts=3, rawposts_distinct=3, processedposts=3, processedposts_distinct=3)
    assert report.passed and "PASSED" in report.summary()
    report.problems.append("1 produced post(s) missing from RAWPOSTS")
    assert not report.passed and "FAILED" in report.summary()
