"""The Kafka record contract: post key rule, JSON envelope, status normalisation.

Pure functions (no I/O, no pyspark, no clock): the producer builds records with them and silver reuses
`post_key` / `parse_datetime` so keys and timestamps agree across layers.

Post key rule (one rule, everywhere): ``"<instance host>/<status id>"``, e.g. ``mastodon.social/1112631``.
- The status id is the id *on the instance we read from*, so host + id is unique across instances.
- An edit (`status.update`) keeps its id, so the key is stable across edits.
- A streaming `delete` event carries only the bare id, never the `uri`: with this rule its key is built
  from the same two parts and lands on the same key (hence the same Kafka partition) as the post.
  A `uri`-based key could not match deletes, which is why we do not use it.
The same remote post seen through two instances gets two keys; silver can group on `uri` when it needs
the global identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from tootlake.catalog.vocab import EVENT_KINDS

SCHEMA_VERSION = 1

# Mastodon.py 2.x `Entity.to_json()` wraps objects like this; its data holds the wire field names.
_MASTOPY_WRAPPER_KEYS = ("_mastopy_version", "_mastopy_type", "_mastopy_data")


class MalformedRecord(ValueError):
    """A replayed or streamed record that is not a usable Mastodon status / event."""


def instance_host(instance: str) -> str:
    """`https://Mastodon.Social/` → `mastodon.social` (a bare host is accepted; a port is kept)."""
    instance = instance.strip()
    netloc = urlsplit(instance).netloc if "://" in instance else instance.split("/", 1)[0]
    if not netloc:
        raise ValueError(f"not an instance URL or host: {instance!r}")
    return netloc.lower()


def status_id_str(status_id: object) -> str:
    """A status id as text. Mastodon.py dumps ids as JSON integers (> 2^53): never go through float."""
    if isinstance(status_id, bool) or status_id is None:
        raise MalformedRecord(f"bad status id: {status_id!r}")
    if isinstance(status_id, int):
        return str(status_id)
    if isinstance(status_id, str) and status_id.strip():
        return status_id.strip()
    raise MalformedRecord(f"bad status id: {status_id!r}")


def post_key(instance: str, status_id: object) -> str:
    """The post key: ``"<instance host>/<status id>"`` (see the module docstring for why)."""
    return f"{instance_host(instance)}/{status_id_str(status_id)}"


def unwrap(obj: object) -> tuple[str | None, object]:
    """Peel known containers off a replayed JSON value.

    Returns ``(event kind or None, payload)``:
    - a Mastodon.py 2.x serialised entity ``{"_mastopy_type": …, "_mastopy_data": {…}}`` → its data;
    - one of our own envelopes (a dump of the topic) → its event kind and status;
    - anything else is returned unchanged (a bare status as the REST API or Mastodon.py 1.x gave it).
    """
    if isinstance(obj, Mapping) and all(k in obj for k in _MASTOPY_WRAPPER_KEYS):
        return None, obj["_mastopy_data"]
    if isinstance(obj, Mapping) and "schema_version" in obj and "event" in obj and "status" in obj:
        return str(obj["event"]), obj["status"]
    return None, obj


def check_status(obj: object) -> dict[str, Any]:
    """Return the status if it looks like a Mastodon Status, else raise `MalformedRecord` with why."""
    if not isinstance(obj, Mapping):
        raise MalformedRecord(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("id", "created_at", "account") if obj.get(k) in (None, "")]
    if missing:
        raise MalformedRecord("status without " + ", ".join(missing))
    if "content" not in obj and not obj.get("reblog"):
        raise MalformedRecord("status without content")
    status_id_str(obj["id"])
    return dict(obj)


def json_default(value: object) -> object:
    """`json.dumps` hook for Mastodon.py objects: datetimes/dates → ISO 8601 (offset kept when known)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_jsonable(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status as plain JSON types, ids unchanged (strings stay strings, ints stay ints)."""
    return json.loads(json.dumps(status, default=json_default))


def build_envelope(event: str, instance: str, fetched_at: datetime, status: Mapping[str, Any]) -> dict:
    """The Kafka value: ``{schema_version, event, instance, fetched_at, status}``.

    `status` is the status as received (for `delete`: ``{"id": …}``); `fetched_at` must be aware and is
    written in UTC as ISO 8601 with a `Z`; `instance` is the host we read from.
    """
    if event not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event!r}; expected one of {EVENT_KINDS}")
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    return {
        "schema_version": SCHEMA_VERSION,
        "event": event,
        "instance": instance_host(instance),
        "fetched_at": fetched_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "status": status,
    }


def encode_record(envelope: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) bytes for Kafka: the post key and the compact UTF-8 JSON envelope."""
    status = envelope["status"]
    key = post_key(envelope["instance"], status["id"])
    value = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), default=json_default)
    return key.encode("utf-8"), value.encode("utf-8")


def parse_datetime(value: object) -> datetime | None:
    """Any Mastodon timestamp form → aware UTC datetime (None for null/empty).

    Accepts the REST API's `2023-10-20T15:55:35.889Z`, Python isoformat `2023-10-19T18:29:55+00:00`
    (microseconds optional), naive `2023-10-19T00:00:00` and date-only `2026-08-01` (both taken as UTC),
    and datetime objects from Mastodon.py.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise MalformedRecord(f"bad timestamp: {value!r}") from exc
    else:
        raise MalformedRecord(f"bad timestamp: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def infer_instance(statuses: list[Mapping[str, Any]]) -> str | None:
    """The instance a batch of statuses was read from, or None if it cannot be told.

    Local accounts (`acct` without `@`) live on the instance that served the statuses, so the most
    common host of their profile URLs is that instance.
    """
    counts: dict[str, int] = {}
    for status in statuses:
        account = status.get("account") if isinstance(status, Mapping) else None
        if not isinstance(account, Mapping):
            continue
        acct, url = account.get("acct"), account.get("url")
        if isinstance(acct, str) and "@" not in acct and isinstance(url, str) and "://" in url:
            host = instance_host(url)
            counts[host] = counts.get(host, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None
