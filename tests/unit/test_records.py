"""Post key rule, envelope, status normalisation — on the shared fixtures in both formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tootlake.bronze.records import (
    SCHEMA_VERSION,
    MalformedRecord,
    build_envelope,
    check_status,
    encode_record,
    infer_instance,
    instance_host,
    parse_datetime,
    post_key,
    status_id_str,
    to_jsonable,
    unwrap,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
SERIALIZED = DATA / "mastodon-mastodonpy-serialized-2023" / "statuses.dev.jsonl"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"
FETCHED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _statuses(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.mark.parametrize(
    ("instance", "host"),
    [("https://mastodon.social", "mastodon.social"), ("https://Mastodon.Social/", "mastodon.social"),
     ("http://localhost:3000/api", "localhost:3000"), ("hachyderm.io", "hachyderm.io")],
)
def test_instance_host(instance: str, host: str) -> None:
    assert instance_host(instance) == host


def test_post_key_is_host_and_id_and_never_goes_through_float() -> None:
    big = 111263101595545554  # > 2**53: a float would round it
    assert post_key("https://mastodon.social", big) == "mastodon.social/111263101595545554"
    assert post_key("mastodon.social", "111263101595545554") == post_key("https://mastodon.social/", big)
    for bad in (None, "", True, 1.5, {"id": 1}):
        with pytest.raises(MalformedRecord):
            status_id_str(bad)


def test_keys_unique_across_instances_and_stable_across_edits() -> None:
    statuses = _statuses(FIXTURES)
    by_key: dict[str, set[str]] = {}
    for status in statuses:
        by_key.setdefault(post_key("localhost:3000", status["id"]), set()).add(status["uri"])
    # several states (edits, favourites) of one post share one key, and one key is one post
    assert len(by_key) == len({s["id"] for s in statuses}) < len(statuses)
    assert all(len(uris) == 1 for uris in by_key.values())
    edited = [s for s in statuses if s.get("edited_at")]
    assert edited, "fixtures contain edits"
    assert post_key("a.example", "1") != post_key("b.example", "1")


def test_delete_event_key_matches_the_post_key() -> None:
    """A streaming delete carries only the id: the key rule must still land on the post's key."""
    status = _statuses(TIMELINE)[0]
    key_post, _ = encode_record(build_envelope("status", "mastodon.social", FETCHED, status))
    key_delete, _ = encode_record(build_envelope("delete", "mastodon.social", FETCHED, {"id": status["id"]}))
    assert key_post == key_delete == f"mastodon.social/{status['id']}".encode()


@pytest.mark.parametrize("path", [TIMELINE, SERIALIZED, FIXTURES], ids=["rest-api", "mastodonpy", "fixtures"])
def test_envelope_keeps_the_status_exactly_as_received(path: Path) -> None:
    for status in _statuses(path):
        key, value = encode_record(build_envelope("status", "https://mastodon.social", FETCHED, status))
        envelope = json.loads(value)
        assert envelope == {
            "schema_version": SCHEMA_VERSION,
            "event": "status",
            "instance": "mastodon.social",
            "fetched_at": "2026-01-02T03:04:05.678Z",
            "status": status,  # ids stay ints (Mastodon.py dumps) or strings (REST API)
        }
        assert key.decode() == f"mastodon.social/{status['id']}"


def test_envelope_rules() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        build_envelope("favourite", "m.s", FETCHED, {"id": "1"})
    with pytest.raises(ValueError, match="timezone"):
        build_envelope("status", "m.s", datetime(2026, 1, 1), {"id": "1"})
    paris = FETCHED.astimezone(timezone(timedelta(hours=1)))
    assert build_envelope("delete", "m.s", paris, {"id": "1"})["fetched_at"] == "2026-01-02T03:04:05.678Z"


def test_mastodonpy_objects_serialise_datetimes_as_iso_and_keep_ids() -> None:
    from mastodon.return_types import Status
    from mastodon.types_base import try_cast_recurse

    for raw in _statuses(FIXTURES)[:50]:
        status = try_cast_recurse(Status, raw)
        assert isinstance(status["created_at"], datetime)
        plain = to_jsonable(status)
        assert plain["id"] == raw["id"]
        assert parse_datetime(plain["created_at"]) == parse_datetime(raw["created_at"])
        json.dumps(plain)  # plain JSON now
        _, value = encode_record(build_envelope("status", "localhost:3000", FETCHED, status))
        assert json.loads(value)["status"]["created_at"] == status["created_at"].isoformat()


def test_unwrap_handles_mastodonpy_wrappers_envelopes_and_bare_statuses() -> None:
    from mastodon.return_types import Status
    from mastodon.types_base import try_cast_recurse

    raw = _statuses(FIXTURES)[0]
    wrapped = json.loads(try_cast_recurse(Status, raw).to_json(pretty=False))
    assert wrapped["_mastopy_type"] == "Status"
    kind, status = unwrap(wrapped)
    assert kind is None and status["id"] == raw["id"] and status["content"] == raw["content"]
    envelope = build_envelope("status.update", "m.s", FETCHED, raw)
    assert unwrap(envelope) == ("status.update", raw)
    assert unwrap(raw) == (None, raw)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [([1, 2], "JSON object"), ("text", "JSON object"), ({"content": "x"}, "without id"),
     ({"id": "1", "created_at": "2023-01-01T00:00:00Z", "content": "x"}, "without account"),
     ({"id": "1", "created_at": "2023-01-01T00:00:00Z", "account": {"id": "2"}}, "without content"),
     ({"id": 1.5, "created_at": "2023-01-01T00:00:00Z", "account": {}, "content": ""}, "bad status id")],
)
def test_check_status_rejects_what_is_not_a_status(obj: object, reason: str) -> None:
    with pytest.raises(MalformedRecord, match=reason):
        check_status(obj)


def test_check_status_accepts_every_shared_status() -> None:
    for path in (TIMELINE, SERIALIZED, FIXTURES):
        for status in _statuses(path):
            assert check_status(status) == status


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2023-10-20T15:55:35.889Z", datetime(2023, 10, 20, 15, 55, 35, 889000, tzinfo=UTC)),
     ("2023-10-19T18:29:55+00:00", datetime(2023, 10, 19, 18, 29, 55, tzinfo=UTC)),
     ("2023-10-19T18:29:57.331000+00:00", datetime(2023, 10, 19, 18, 29, 57, 331000, tzinfo=UTC)),
     ("2023-10-19T20:29:55+02:00", datetime(2023, 10, 19, 18, 29, 55, tzinfo=UTC)),
     ("2023-10-19T00:00:00", datetime(2023, 10, 19, tzinfo=UTC)),
     ("2026-08-01", datetime(2026, 8, 1, tzinfo=UTC)),
     (None, None), ("", None)],
)
def test_parse_datetime_accepts_every_form_in_the_samples(value: str | None,
                                                          expected: datetime | None) -> None:
    assert parse_datetime(value) == expected


def test_parse_datetime_on_all_samples_and_rejects_garbage() -> None:
    for path in (TIMELINE, SERIALIZED, FIXTURES):
        for status in _statuses(path):
            assert parse_datetime(status["created_at"]).tzinfo is UTC
            parse_datetime(status["account"].get("last_status_at"))
            parse_datetime(status.get("edited_at"))
    with pytest.raises(MalformedRecord):
        parse_datetime("yesterday")


def test_infer_instance_from_local_accounts() -> None:
    assert infer_instance(_statuses(TIMELINE)) == "mastodon.social"
    assert infer_instance(_statuses(FIXTURES)) == "localhost:3000"
    assert infer_instance([{"account": {"acct": "a@b.c", "url": "https://b.c/@a"}}]) is None
