"""Hostile input for the poison-pill campaign: Kafka records as the wild fediverse (or a broken client) may
send them, with what the pipeline must make of each, and the check of what arrived.

Pure (no I/O, no clock): `hostile_records(n, templates, seed, now)` gives raw key/value bytes written
straight into a topic (no project code on the way in), mixing valid posts (odd but legal text, edits,
replays, out-of-order edits, deletes and edits of posts never seen) with records that must be
quarantined (wrong types at every level, missing fields, overflowing and impossible timestamps, invalid
UTF-8, huge and deeply nested values, keys that are null, empty or huge). `expected_posts` says which
posts PostgreSQL must hold and with which text; `judge` compares that with what arrived.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tootlake.bronze.text import html_to_text
from tootlake.pipelines.databases.records import clean_text

INSTANCE = "fuzz.example"
VALID, INVALID, EITHER = "valid", "invalid", "either"  # EITHER: arrives or is quarantined, never lost

# Legal text that breaks naive code: quotes, escapes, SQL and HTML injection, bidi and control
# characters, 4-byte emoji, combining marks, NUL (PostgreSQL drops it by the text policy).
ODD_TEXTS = [
    "it's a \"quoted\" 'text' \\ back\\slash \\N \\t",
    "'); DROP TABLE rawposts; -- SELECT * FROM processedposts WHERE '1'='1",
    "Robert'); DELETE FROM silver.posts;-- ${jndi:ldap://x/a} {{7*7}} %s%n",
    "rtl \u200f\u202eعربي עברית\u202c \u2066isolate\u2069 mixed",
    "emoji 😀🔥👩\u200d👩\u200d👧 𝕏 🏳️\u200d🌈 and Z\u0351\u0352\u0353algo",
    "control \x01\x02\x07\x1b[31mred\x1b[0m \x7f end",
    "nul\x00inside\x00twice",
    "tab\there\nnew line\r\ncarriage\u2028line sep",
    "\ufeffBOM first and \ufffd replacement",
    "漢字かなカナ 한국어 ελληνικά кириллица हिन्दी",
]
ODD_HTML = [
    "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp; &#39;x&#39;</p>",
    '<p><a href="javascript:alert(1)">click</a> <img src=x onerror=alert(1) alt=":emoji:"></p>',
    "<p>unclosed <b>bold <i>italic",
    "<p>" + "&#x1F600;" * 3 + "</p><p></p>",
]


@dataclass
class HostileRecord:
    key: bytes | None
    value: bytes | None
    expect: str  # VALID / INVALID / EITHER
    case: str  # generator case, for reports
    post_key: str | None = None  # the post this record is about (valid records)
    event: str | None = None  # status | status.update | delete (valid records)
    status: dict[str, Any] | None = None  # the status as sent (valid records)
    order: int = 0  # send order (offsets grow with it within a key's partition)


@dataclass
class Verdict:
    records: int = 0
    valid: int = 0
    invalid: int = 0
    expected_posts: int = 0
    arrived: int = 0
    quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # expected posts not in PostgreSQL
    unquarantined: list[str] = field(default_factory=list)  # invalid records neither quarantined nor kept
    misjudged: list[str] = field(default_factory=list)  # valid records sent to the quarantine
    duplicated: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # arrived with other text than sent
    unexpected: list[str] = field(default_factory=list)  # in PostgreSQL but never a valid post

    def ok(self) -> bool:
        return not (self.lost or self.unquarantined or self.misjudged or self.duplicated or self.mismatched
                    or self.unexpected)


def _envelope(event: str, status: Any, fetched_at: str, **overrides: Any) -> dict[str, Any]:
    env = {"schema_version": 1, "event": event, "instance": INSTANCE, "fetched_at": fetched_at,
           "status": status}
    env.update(overrides)
    return env


def _dump(obj: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\udXXX escapes: legal JSON text, hostile content
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


_NESTED = "__nested_placeholder__"


def _nested(depth: int) -> bytes:
    """JSON text of `depth` nested arrays (Python's json cannot write thousands of levels)."""
    return b"[" * depth + b'"deep"' + b"]" * depth


class _Builder:
    def __init__(self, templates: Sequence[Mapping[str, Any]], rng: random.Random, now: datetime) -> None:
        self.templates = templates
        self.rng = rng
        self.now = now
        self.next_id = 10**17
        self.order = 0
        self.out: list[HostileRecord] = []
        self.fetched = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def status(self, **overrides: Any) -> dict[str, Any]:
        status = copy.deepcopy(dict(self.rng.choice(self.templates)))
        self.next_id += self.rng.randint(1, 1000)
        status_id = str(self.next_id)
        status.update(id=status_id, uri=f"https://{INSTANCE}/users/u/statuses/{status_id}",
                      url=f"https://{INSTANCE}/@u/{status_id}", edited_at=None, reblog=None)
        status.update(overrides)
        return status

    def add(self, key: bytes | None, value: bytes | None, expect: str, case: str, **about: Any) -> None:
        self.order += 1
        self.out.append(HostileRecord(key, value, expect, case, order=self.order, **about))

    def valid(self, case: str, event: str, status: dict[str, Any], key: str | None = None,
              **env_overrides: Any) -> None:
        post = f"{INSTANCE}/{status['id']}"
        self.add((key if key is not None else post).encode("utf-8"),
                 _dump(_envelope(event, status, self.fetched, **env_overrides)), VALID, case,
                 post_key=post, event=event, status=status)

    def invalid(self, case: str, value: bytes | None, key: bytes | None = None) -> None:
        self.add(key if key is not None else f"{INSTANCE}/bad-{self.order}".encode(), value, INVALID, case)

    def bad_status(self, case: str, expect: str = INVALID, nested: int = 0, **overrides: Any) -> None:
        status = self.status(**overrides)
        post = f"{INSTANCE}/{status['id']}" if isinstance(status.get("id"), str) else None
        if nested:
            status["poll"] = _NESTED
        value = _dump(_envelope("status", status, self.fetched))
        if nested:
            value = value.replace(f'"{_NESTED}"'.encode(), _nested(nested))
        self.add(post.encode() if post else f"{INSTANCE}/bad-{self.order}".encode(), value, expect, case,
                 post_key=post, event="status", status=status)


def _valid_cases(b: _Builder) -> None:
    rng = b.rng
    kind = rng.randrange(8)
    if kind == 0:  # a real status, as received
        b.valid("real", "status", b.status())
    elif kind == 1:  # legal but odd text, and HTML / SQL injection
        text = rng.choice(ODD_TEXTS)
        html = rng.choice([f"<p>{text}</p>", rng.choice(ODD_HTML), text])
        b.valid("odd_text", "status", b.status(content=html, spoiler_text=rng.choice(ODD_TEXTS),
                                               account={"id": "1", "acct": rng.choice(ODD_TEXTS)[:50],
                                                        "username": "u", "display_name": text[:60]}))
    elif kind == 2:  # lone surrogates in JSON escapes: kept as the replacement character
        b.valid("lone_surrogate", "status", b.status(content="<p>half \ud83d an emoji \udc00 low</p>"))
    elif kind == 3:  # a replay: the same record twice
        status = b.status()
        b.valid("replay", "status", status)
        b.valid("replay", "status", status)
    elif kind == 4:  # edits out of order: the newest edit wins whatever arrives last
        status = b.status(created_at="2024-03-01T10:00:00.000Z")
        b.valid("edits", "status", status)
        newer = dict(status, content="<p>newest edit</p>", edited_at="2024-03-03T10:00:00.000Z")
        older = dict(status, content="<p>older edit</p>", edited_at="2024-03-02T10:00:00.000Z")
        b.valid("edits", "status.update", newer)
        b.valid("edits", "status.update", older)
    elif kind == 5:  # an edit of a post never seen: the edit is the post
        b.valid("edit_unknown", "status.update", b.status(edited_at="2024-03-02T10:00:00.000Z"))
    elif kind == 6:  # a delete of a post never seen, and of one seen
        b.next_id += 7
        b.valid("delete_unknown", "delete", {"id": str(b.next_id)})
        status = b.status()
        b.valid("delete", "status", status)
        b.valid("delete", "delete", {"id": status["id"]})
    else:  # the key is null or empty: the post key is rebuilt from instance and id
        status = b.status()
        post = f"{INSTANCE}/{status['id']}"
        b.add(rng.choice([None, b""]), _dump(_envelope("status", status, b.fetched)), VALID, "null_key",
              post_key=post, event="status", status=status)


def _invalid_cases(b: _Builder) -> None:
    rng = b.rng
    future = (b.now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = rng.randrange(24)
    if kind == 0:
        b.invalid("not_json", rng.choice([b"{", b"not json", b'{"schema_version": 1, "event": "status", "st',
                                          b"\x00\x01\x02", b"[1, 2, 3]", b"null", b"42", b'"text"']))
    elif kind == 1:
        b.invalid("empty_or_null_value", rng.choice([b"", None]))
    elif kind == 2:  # invalid UTF-8 in the value or in the key
        body = _dump(_envelope("status", b.status(), b.fetched))
        if rng.random() < 0.5:
            b.invalid("invalid_utf8", body[:-20] + b"\xff\xfe\xc3" + body[-20:])
        else:
            b.invalid("invalid_utf8_key", body, key=b"fuzz.example/\xff\xfe")
    elif kind == 3:
        b.bad_status("id_wrong_type", id=rng.choice([{"x": 1}, True, [1], 1.5]))
    elif kind == 4:
        b.bad_status("account_wrong_type", account=rng.choice(["someone", 7, ["a"], True]))
    elif kind == 5:
        b.bad_status("count_wrong_type", replies_count=rng.choice(["many", {"n": 1}, [1], 1e30]))
    elif kind == 6:
        b.invalid("status_wrong_type", _dump(_envelope("status", rng.choice([[1], "text", 5, None, True]),
                                                       b.fetched)))
    elif kind == 7:
        b.bad_status("missing_id", id=None)
    elif kind == 8:
        status = b.status()
        status.pop(rng.choice(["created_at", "account"]))
        b.invalid("missing_field", _dump(_envelope("status", status, b.fetched)),
                  key=f"{INSTANCE}/{status['id']}".encode())
    elif kind == 9:  # epoch values that overflow a cast, as text or as numbers
        value = rng.choice(["1697740197123456", 1697740197123456, 99999999999999999999, -9999999999999999,
                            "9" * 40, 1e300])
        b.bad_status("epoch_overflow", created_at=value)
    elif kind == 10:
        b.bad_status("impossible_timestamp", created_at=rng.choice(
            ["+10000-01-01T00:00:00Z", "2023-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "yesterday",
             "2023-10-20T25:61:61Z", "-2023-10-20T00:00:00Z", ""]))
    elif kind == 11:
        b.bad_status("created_in_future", created_at=future)
    elif kind == 12:
        b.bad_status("created_before_mastodon", created_at="2001-01-01T00:00:00Z")
    elif kind == 13:  # an edit from the far future would become the row's version forever
        status = b.status(edited_at=rng.choice(["2999-01-01T00:00:00Z", "1697740197123456", future]))
        b.invalid("edited_in_future", _dump(_envelope("status.update", status, b.fetched)),
                  key=f"{INSTANCE}/{status['id']}".encode())
    elif kind == 14:
        status = b.status()
        b.invalid("fetched_at_overflow", _dump(_envelope("status", status, rng.choice(
            [1697740197123456, "+99999-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]))),
                  key=f"{INSTANCE}/{status['id']}".encode())
    elif kind == 15:
        b.bad_status("huge_content", content="<p>" + "x" * 60_000 + "</p>")
    elif kind == 16:  # deeply nested: beyond any parser's depth limit it must still not stop anything
        b.bad_status("deeply_nested", expect=EITHER, nested=rng.choice([50, 600, 3000]))
    elif kind == 17:
        b.bad_status("long_visibility", visibility="public" * 20)
    elif kind == 18:
        b.bad_status("long_language", language="x" * 100)
    elif kind == 19:  # a huge key: no database index can hold it
        status = b.status()
        b.invalid("huge_key", _dump(_envelope("status", status, b.fetched)), key=b"k" * 5000)
    elif kind == 20:
        b.invalid("unknown_schema_version", _dump(_envelope("status", b.status(), b.fetched,
                                                            schema_version=rng.choice([0, 2, "1", None]))))
    elif kind == 21:
        b.invalid("unknown_event", _dump(_envelope(rng.choice(["status.bogus", "", None, 5]), b.status(),
                                                   b.fetched)))
    elif kind == 22:
        b.invalid("envelope_wrong_type", _dump(rng.choice([
            {"schema_version": 1, "event": "status", "instance": ["x"], "status": b.status()},
            {"schema_version": {"v": 1}, "event": "status", "status": b.status()},
            [{"schema_version": 1}],
        ])))
    else:
        b.bad_status("long_status_id", id="9" * 100)


def hostile_records(n: int, templates: Sequence[Mapping[str, Any]], seed: int, now: datetime,
                    invalid_share: float = 0.4) -> list[HostileRecord]:
    """About `n` records (a case may add two or three), `invalid_share` of them invalid, shuffled in
    blocks so that each post's own records keep their order (edits, replays, deletes)."""
    if not templates:
        raise ValueError("hostile_records needs at least one real status as a template")
    b = _Builder(templates, random.Random(seed), now)
    while len(b.out) < n:
        (_invalid_cases if b.rng.random() < invalid_share else _valid_cases)(b)
    return b.out


def _version(status: Mapping[str, Any]) -> str:
    return str(status.get("edited_at") or status.get("created_at") or "")


def expected_posts(records: Iterable[HostileRecord]) -> dict[str, str]:
    """Post key -> the text PostgreSQL must hold: the latest version (edited_at, else created_at; the
    later record on a tie) of each valid post that no delete removed, through the text rules."""
    latest: dict[str, tuple[str, int, dict[str, Any]]] = {}
    deleted: set[str] = set()
    for record in records:
        if record.expect != VALID or record.post_key is None:
            continue
        if record.event == "delete":
            deleted.add(record.post_key)
            continue
        candidate = (_version(record.status or {}), record.order, record.status or {})
        if record.post_key not in latest or candidate[:2] > latest[record.post_key][:2]:
            latest[record.post_key] = candidate
    return {key: expected_text(status.get("content")) for key, (_, _, status) in latest.items()
            if key not in deleted}


def expected_text(content_html: str | None) -> str:
    """Silver's text (html_to_text) as PostgreSQL stores it (NUL dropped, lone surrogates -> U+FFFD)."""
    return clean_text(html_to_text(content_html or ""))


def judge(records: Sequence[HostileRecord], positions: Mapping[int, tuple[int, int]],
          arrived: Sequence[tuple[str, str | None, str | None, str | None]],
          quarantined: Sequence[tuple[int | None, int | None, Sequence[str]]],
          silver_ids: Sequence[str]) -> Verdict:
    """Compare what arrived with what was sent.

    `positions`: record order -> (Kafka partition, offset); `arrived`: RAWPOSTS (post_id, instance,
    status_id, post_content); `quarantined`: (bronze_partition, bronze_offset, rules) of
    silver/posts_quarantine; `silver_ids`: every post_id row of silver/posts.
    """
    expected = expected_posts(records)
    rules = {(p, o): list(r) for p, o, r in quarantined if p is not None}
    v = Verdict(records=len(records), expected_posts=len(expected), quarantined=len(quarantined))
    v.quarantined_by_rule = dict(Counter(rule for _, _, rs in quarantined for rule in rs))
    pg = {row[0]: row[3] for row in arrived}
    v.arrived = len(pg)
    for record in records:
        position = positions.get(record.order)
        in_quarantine = position in rules
        if record.expect == VALID:
            v.valid += 1
            if in_quarantine:
                v.misjudged.append(f"{record.case}@{position}: {rules[position]}")
        elif record.expect == INVALID:
            v.invalid += 1
            if not in_quarantine:
                v.unquarantined.append(f"{record.case}@{position}")
    # a record that may go either way (beyond a parser's limits) may arrive: then with the text it was sent
    either = {r.post_key: expected_text((r.status or {}).get("content")) for r in records
              if r.expect == EITHER and r.post_key}
    allowed = {**either, **expected}
    v.lost = sorted(set(expected) - set(pg))
    v.unexpected = sorted(set(pg) - set(allowed))
    v.mismatched = sorted(k for k, text in pg.items() if k in allowed and text != allowed[k])
    by_status = Counter((instance, status_id) for _, instance, status_id, _ in arrived)
    twice = {k for k, instance, status_id, _ in arrived if by_status[(instance, status_id)] > 1}
    v.duplicated = sorted({k for k, n in Counter(silver_ids).items() if n > 1} | twice)
    return v


def summary(verdict: Verdict, restarts: int, seconds: float) -> dict[str, Any]:
    """The campaign's figures (the last line of `tootlake bench fuzz`)."""
    return {
        "records": verdict.records, "valid": verdict.valid, "invalid": verdict.invalid,
        "expected_posts": verdict.expected_posts, "arrived": verdict.arrived,
        "quarantined": verdict.quarantined,
        "quarantined_by_rule": dict(sorted(verdict.quarantined_by_rule.items())),
        "lost": len(verdict.lost), "duplicated": len(verdict.duplicated),
        "mismatched": len(verdict.mismatched),
        "unexpected": len(verdict.unexpected), "misjudged": len(verdict.misjudged),
        "unquarantined": len(verdict.unquarantined), "stage_restarts": restarts,
        "rows_per_s": round(verdict.records / seconds, 1) if seconds else None,
    }
