"""ReplaySource on the shared files, in every format; malformed lines reported with their line number."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tootlake.pipelines.source.mastodon import MastodonSource, ReplaySource, SourceEvent

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
SERIALIZED = DATA / "mastodon-mastodonpy-serialized-2023" / "statuses.dev.jsonl"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"
SSE_DOCS = DATA / "mastodon-streaming-sse" / "mastodon_docs.dev.sse"
SSE_CASSETTES = DATA / "mastodon-streaming-sse" / "mastodonpy_cassettes.dev.sse"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _lines(path: Path) -> list[str]:
    # not splitlines(): real posts hold U+2028 and friends, which are not JSON Lines separators
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _replay(*files: Path, **kwargs: object) -> tuple[ReplaySource, list[SourceEvent]]:
    source = ReplaySource(files=list(files), clock=lambda: NOW, **kwargs)
    return source, list(source)


def test_is_a_mastodon_source() -> None:
    assert isinstance(ReplaySource(files=[]), MastodonSource)


def test_rest_api_file_replays_every_status_as_received() -> None:
    raw = [json.loads(line) for line in _lines(TIMELINE)]
    source, events = _replay(TIMELINE)
    assert len(events) == len(raw) == 928
    assert [e.status for e in events] == raw  # unchanged, in file order
    assert {e.kind for e in events} == {"status"}
    assert {e.instance for e in events} == {"mastodon.social"}  # inferred from local accounts
    assert [e.key for e in events] == [f"mastodon.social/{s['id']}" for s in raw]
    assert len({e.key for e in events}) == 928
    assert all(e.fetched_at == NOW for e in events)
    assert source.malformed == 0


def test_mastodonpy_file_keeps_int_ids_and_isoformat_datetimes() -> None:
    raw = [json.loads(line) for line in _lines(SERIALIZED)]
    _, events = _replay(SERIALIZED)
    assert len(events) == 32
    assert all(isinstance(e.status["id"], int) for e in events)
    assert [e.status for e in events] == raw
    assert events[0].key == f"mastodon.social/{raw[0]['id']}"  # exact: no float on the way
    assert events[0].status_id == str(raw[0]["id"])


def test_api_fixtures_cover_reblogs_polls_edits_cw_and_every_visibility() -> None:
    _, events = _replay(FIXTURES)
    statuses = [e.status for e in events]
    assert len(events) == 422
    assert {e.instance for e in events} == {"localhost:3000"}
    assert {s["visibility"] for s in statuses} == {"public", "unlisted", "private", "direct"}
    counts = Counter()
    for s in statuses:
        counts["reblog"] += bool(s.get("reblog"))
        counts["poll"] += bool(s.get("poll"))
        counts["edited"] += bool(s.get("edited_at"))
        counts["cw"] += bool(s.get("spoiler_text"))
    assert counts == {"reblog": 7, "poll": 9, "edited": 14, "cw": 8}  # the README's dev counts
    # several states of one post (before/after an edit or a favourite) share its key
    assert len({e.key for e in events}) == 269


def test_explicit_instance_wins() -> None:
    _, events = _replay(FIXTURES, instance="https://example.social")
    assert events[0].key.startswith("example.social/")


def test_mastodonpy_to_json_wrappers_and_envelopes(tmp_path: Path) -> None:
    from mastodon.return_types import Status
    from mastodon.types_base import try_cast_recurse

    raw = [json.loads(line) for line in _lines(FIXTURES)[:5]]
    wrapped = tmp_path / "wrapped.jsonl"
    wrapped.write_text("".join(try_cast_recurse(Status, s).to_json(pretty=False) + "\n" for s in raw))
    _, events = _replay(wrapped, instance="localhost:3000")
    assert [e.status_id for e in events] == [s["id"] for s in raw]
    assert [e.status["content"] for e in events] == [s["content"] for s in raw]

    dump = tmp_path / "topic-dump.jsonl"
    envelopes = [SourceEvent("status.update", raw[0], raw[0]["id"], "localhost:3000", NOW).envelope(),
                 SourceEvent("delete", None, raw[1]["id"], "localhost:3000", NOW).envelope()]
    dump.write_text("".join(json.dumps(e) + "\n" for e in envelopes))
    _, events = _replay(dump, instance="localhost:3000")
    assert [(e.kind, e.status_id) for e in events] == [("status.update", raw[0]["id"]),
                                                        ("delete", raw[1]["id"])]
    assert events[1].status is None


def test_sse_recordings_give_updates_edits_and_deletes() -> None:
    source, events = _replay(SSE_DOCS)
    assert Counter(e.kind for e in events) == {"status.update": 5, "status": 3, "delete": 2}
    assert source.ignored == 4  # notification, filters_changed, announcement.* events
    deletes = [e for e in events if e.kind == "delete"]
    posted = {e.key for e in events if e.kind != "delete"}
    assert all(e.status is None and e.status_id.isdigit() for e in deletes)
    assert {e.key for e in deletes} <= posted  # a delete lands on the deleted post's key

    source, events = _replay(SSE_CASSETTES)
    assert Counter(e.kind for e in events) == {"status": 3, "status.update": 1, "delete": 1}
    assert source.malformed == 0


def test_malformed_lines_are_reported_with_file_and_line_and_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _lines(TIMELINE)[:6]
    bad = tmp_path / "mixed.jsonl"
    bad.write_text("\n".join([
        good[0],
        good[1],
        good[2][:-40],  # line 3: truncated JSON
        good[3],
        "[1, 2, 3]",  # line 5: not an object
        "",  # blank lines are not errors
        json.dumps({"content": "<p>no id</p>"}),  # line 7: not a status
        good[4],
        good[5],
    ]) + "\n")
    with caplog.at_level(logging.WARNING, logger="tootlake.source"):
        source, events = _replay(bad)
    expected = [good[0], good[1], good[3], good[4], good[5]]
    assert [e.status_id for e in events] == [json.loads(line)["id"] for line in expected]
    assert source.malformed == 3
    assert [(m.line, m.file) for m in source.malformed_lines] == [(3, str(bad)), (5, str(bad)), (7, str(bad))]
    assert f"{bad}:3: malformed record skipped (invalid JSON" in caplog.text
    assert f"{bad}:7: malformed record skipped (status without id" in caplog.text
    assert "no id" not in caplog.text.replace("without id", "")  # the record itself is never logged


def test_malformed_sse_event_reports_the_data_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.sse"
    path.write_text(":)\n\nevent: update\ndata: {not json\n\nevent: delete\ndata: 42\n\n")
    source, events = _replay(path, instance="m.example")
    assert [(e.kind, e.key) for e in events] == [("delete", "m.example/42")]
    assert [(m.line, m.reason.split(":")[0]) for m in source.malformed_lines] == [(4, "invalid JSON")]


def test_several_files_in_order_and_missing_file(tmp_path: Path) -> None:
    _, events = _replay(SERIALIZED, SSE_CASSETTES)
    assert len(events) == 32 + 5
    with pytest.raises(FileNotFoundError, match="replay file not found"):
        list(ReplaySource(files=[tmp_path / "nope.jsonl"]))


def test_rate_limit_and_close() -> None:
    source = ReplaySource(files=[SERIALIZED], rate=100.0)
    started = time.monotonic()
    events = list(source)
    elapsed = time.monotonic() - started
    assert len(events) == 32
    assert elapsed >= 31 / 100 * 0.95  # 32 events at 100/s take at least 0.31 s
    source = ReplaySource(files=[TIMELINE], rate=20.0)
    taken = []
    for event in source:
        taken.append(event)
        if len(taken) == 3:
            source.close()
    assert len(taken) == 3


def test_skip_resumes_at_an_event_position_without_waiting_or_recounting(tmp_path: Path) -> None:
    lines = _lines(TIMELINE)[:40]
    replay = tmp_path / "with-bad-lines.jsonl"
    replay.write_text("\n".join(lines[:5] + ["not json"] + lines[5:35] + ["{oops"] + lines[35:]) + "\n")
    _, everything = _replay(replay)
    source = ReplaySource(files=[replay], clock=lambda: NOW, rate=20.0, skip=30)
    started = time.monotonic()
    events = list(source)
    assert time.monotonic() - started < 1.5  # 10 events at 20/s; the 30 skipped ones are not paced
    assert [e.key for e in events] == [e.key for e in everything[30:]]
    assert source.skipped == 30
    assert source.malformed == 1 and source.malformed_lines[0].line == 37  # only the one after the skip
    assert list(ReplaySource(files=[replay], skip=100)) == []
