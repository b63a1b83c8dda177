"""The drill's plan: which events the producer sends and which posts PostgreSQL must hold at the end."""

from __future__ import annotations

from datetime import UTC, datetime

from tootlake.pipelines.ops.drill import DrillReport, expected_keys
from tootlake.pipelines.source.mastodon import SourceEvent, delete_event

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


def test_arrival_is_compared_row_for_row_so_duplicates_and_changed_text_fail() -> None:
    from tootlake.pipelines.ops.drill import compare_arrival, expected_contents

    events = [
        SourceEvent("status", {"id": "1", "content": "<p>first</p>", "created_at": "2024-01-01T00:00:00Z"},
                    None, "mastodon.social", AT),
        SourceEvent("status.update", {"id": "1", "content": "<p>edited</p>",
                                      "created_at": "2024-01-01T00:00:00Z",
                                      "edited_at": "2024-01-02T00:00:00Z"}, None, "mastodon.social", AT),
        SourceEvent("status", {"id": "2", "content": "<p>x\x00y</p>", "created_at": "2024-01-01T00:00:00Z"},
                    None, "mastodon.social", AT),
    ]
    contents = expected_contents(events)
    assert contents == {"mastodon.social/1": "edited", "mastodon.social/2": "xy"}
    expected = expected_keys(events)
    good = [("mastodon.social/1", "mastodon.social", "1", "edited"),
            ("mastodon.social/2", "mastodon.social", "2", "xy")]
    ids = ["mastodon.social/1", "mastodon.social/2"]
    clean = compare_arrival(expected, contents, ids, good, ids, set())
    assert clean == {"missing": [], "unexpected": [], "mismatched": [], "duplicated": []}
    # the count-vs-distinct check of before passed all of these
    stale = [good[0][:3] + ("first",), good[1]]
    assert compare_arrival(expected, contents, ids, stale, ids, set())["mismatched"] == ["mastodon.social/1"]
    twice_in_silver = compare_arrival(expected, contents, ids + ids[:1], good, ids, set())
    assert twice_in_silver["duplicated"] == ["mastodon.social/1"]
    two_keys = good + [("https://mastodon.social/users/a/statuses/2", "mastodon.social", "2", "xy")]
    found = compare_arrival(expected, contents, ids, two_keys, ids + [two_keys[2][0]], set())
    assert "mastodon.social/2" in found["duplicated"] and found["unexpected"] == [two_keys[2][0]]
    assert compare_arrival(expected, contents, ids, good[:1], ids[:1], set())["missing"] == ids[1:]
