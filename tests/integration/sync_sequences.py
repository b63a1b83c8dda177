"""Randomised change-feed sequences for the sync targets, and the plain-Python model of what they must hold.

A sequence is what the sync job sees: silver/posts commits (each a set of post versions: a new post, an
edit, a re-write with equal content and timestamp, a tombstone, the delete of a post never seen, a
`restore` (a physical delete and a re-insert of an earlier version in one commit), a physical delete),
delivered as micro-batches of the change feed (a commit may be split over two batches), with exact replays
of a batch (at-least-once delivery after a crash) and stale rows (older versions of live posts sent again),
in any order within a batch. Values are odd on purpose: NUL, lone surrogates, 4-byte emoji, '' (NULL in
Oracle), quotes, long CLOBs, and values at and one past their column size (to be quarantined, never cut).

Order key: the model orders by the change feed's commit version (`_commit_version`, carried in every
silver row with `_table_id` and `_change_type`); silver's `updated_at` is information. When the staging
rows carry no commit version (a sync that orders by updated_at), the sequences keep both keys monotone per
post (no restore, no clock stepping back; an equal updated_at only for a re-write with equal content or a
tombstone), so a target ordering by either key must end in the same rows: ORDER_BY_COMMIT says which.

The model (`Model.apply`), per batch, as the sync job runs it: a row too long for any target
(silver.schema.TARGET_LIMITS, records.stage_rows_checked) is quarantined; one row per post is kept (the
latest commit; in one commit a live row beats a physical delete); a row that does not fit the Oracle
columns (limits read from sql/oracle here, independently of pipelines/databases/oracle.py) is quarantined; a
live row replaces the stored one from an earlier commit; a tombstone or physical delete removes the
stored row from an earlier commit (silver's delete policy: a tombstone is final).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from sync_support import EDGE_TEXTS, T0, silver_post, tombstone

from tootlake.pipelines.databases import dbinit, oracle
from tootlake.pipelines.databases.records import (
    PROCESSED_COLUMNS,
    RAW_COLUMNS,
    STAGE_COLUMNS,
    STAGE_NAMES,
    stage_row,
    stage_rows_checked,
)
from tootlake.silver.schema import TARGET_LIMITS

PREFIX = "https://seq.example/"
TABLE_ID = "5f1c2d3e-0000-4000-8000-00000000c0de"  # silver/posts' Delta table id in every row
ORDER_BY_COMMIT = "source_version" in STAGE_NAMES  # the sync orders by the change feed's commit version
KINDS = dict(STAGE_COLUMNS)
PROCESSED_KEYED = ["post_id", *PROCESSED_COLUMNS]  # processedposts.raw_post_id holds the post_id
MICRO = dt.timedelta(microseconds=1)
EDIT_STEPS = [MICRO, dt.timedelta(seconds=1), dt.timedelta(hours=1)]
DELETE_STEPS = [dt.timedelta(0), MICRO, dt.timedelta(seconds=1)]  # 0: a tie, which the tombstone wins
CLOCK_BACK = [-MICRO, -dt.timedelta(hours=1)]  # silver's clock stepped back (only when ORDER_BY_COMMIT)


# --- limits of the Oracle columns, read from the scripts ------------------------------------------------
def oracle_varchar_limits() -> dict[str, tuple[int, str]]:
    """{column: (size, CHAR|BYTE)} of SYNC_STAGE's VARCHAR2 columns, from sql/oracle/050_sync_stage.sql."""
    text = (dbinit.SQL_DIR / "oracle" / "050_sync_stage.sql").read_text(encoding="utf-8")
    found = re.findall(r"^\s*(\w+)\s+VARCHAR2\((\d+)\s*(CHAR|BYTE)?\)", text,
                       flags=re.MULTILINE | re.IGNORECASE)
    return {name.lower(): (int(size), (unit or "BYTE").upper()) for name, size, unit in found}


def fits(value: str, size: int, unit: str) -> bool:
    """Oracle VARCHAR2 (AL32UTF8, MAX_STRING_SIZE = STANDARD): characters or bytes, and 4000 bytes at most."""
    encoded = len(value.encode("utf-8"))
    return encoded <= 4000 and (len(value) <= size if unit == "CHAR" else encoded <= size)


def fits_every_target(silver_row: dict) -> bool:
    """silver.schema.TARGET_LIMITS: (characters, UTF-8 bytes) each silver column may hold on every target;
    a delete (tombstone or physical) writes nothing but its key."""
    names = ["post_id"] if silver_row.get("is_deleted") else list(TARGET_LIMITS)
    return all(
        not isinstance(silver_row.get(name), str)
        or (len(silver_row[name]) <= TARGET_LIMITS[name][0]
            and len(silver_row[name].encode("utf-8", "replace")) <= TARGET_LIMITS[name][1])
        for name in names
    )


# --- sequences ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Post:
    number: int
    id_kind: str  # plain | emoji | quote | long_ascii | long_emoji | long_over
    status_id: str

    def post_id(self, prefix: str) -> str:
        tail = f"/{self.number}"
        if self.id_kind == "emoji":
            return f"{prefix}😀\u200f{self.number}"
        if self.id_kind == "quote":
            return f"{prefix}it's \"{self.number}\""
        if self.id_kind.startswith("long"):  # 1000 characters (fits), or 1001 (too long everywhere)
            filler, size = {"long_ascii": ("p", 1000), "long_emoji": ("😀", 1000), "long_over": ("p", 1001)}[
                self.id_kind]
            return prefix + filler * (size - len(prefix) - len(tail)) + tail
        return f"{prefix}{100000 + self.number}"


@dataclass(frozen=True)
class Version:
    post: Post
    commit_version: int  # the order key
    updated_at: dt.datetime  # naive UTC, as silver holds it
    deleted: bool  # a tombstone (or a physical delete)
    values: tuple[tuple[str, Any], ...] = ()  # silver columns of a live version (or of a deleted row)
    physical: bool = False  # the change feed's `delete` (the row left silver/posts), not a tombstone update

    def silver_row(self, prefix: str) -> dict:
        """The row as runner.silver_rows hands it over: a physical delete is the old row, is_deleted set."""
        n = self.post.number
        if self.deleted and not self.physical:
            row = tombstone(n, self.updated_at)
        else:
            row = silver_post(n, self.updated_at)
            row.update(dict(self.values))
            row["is_deleted"] = self.deleted
        row.update(post_id=self.post.post_id(prefix), status_id=self.post.status_id)
        row.update(_commit_version=self.commit_version, _table_id=TABLE_ID,
                   _change_type="delete" if self.physical else "update_postimage")
        return row

    def content(self, prefix: str) -> dict:
        """The silver row without its change-feed columns: what a target must hold for this version."""
        return {k: v for k, v in self.silver_row(prefix).items() if not k.startswith("_")}

    def order(self) -> tuple:
        """The sync's order of two rows of one post: commit, then a live row beats a physical delete."""
        return self.commit_version, not self.physical


@dataclass(frozen=True)
class Batch:
    rows: tuple[Version, ...]
    replay: bool  # an exact copy of the batch before it (must write nothing)


@dataclass(frozen=True)
class SyncSequence:
    posts: tuple[Post, ...]
    batches: tuple[Batch, ...]

    def current(self) -> dict[int, Version]:
        """What silver says is current: per post, the row of the latest commit (live beats a delete)."""
        latest: dict[int, Version] = {}
        for batch in self.batches:
            for version in batch.rows:
                held = latest.get(version.post.number)
                if held is None or version.order() > held.order():
                    latest[version.post.number] = version
        return latest


ODD_TEXTS = [
    *EDGE_TEXTS,
    "lone \ud83d surrogate",
    "<p>" + "long clob " * 4000 + "</p>",  # over 32 KiB: a LOB bind, not a VARCHAR2 one
    "😀" * 9000,  # 36,000 bytes of 4-byte characters
]
# values that fit their Oracle column, at its size included; OVERFLOWS are one past it (rarely drawn)
DISPLAY_NAMES = [None, "", "User", "😀" * 500, "é" * 500, "nul\x00name"]
USERNAMES = [None, "u", "a" * 255]
LANGUAGES = [None, "", "en", "zh-Hant-TW", "x" * 35]
URLS = [None, "", "https://x.example/@u/1", "https://x.example/" + "p" * 982]
HASHTAGS = [[], ["sync"], ["😀" * 1000], ["a" * 500, "b" * 499]]
OVERFLOWS = {
    "account_display_name": ["a" * 501, "😀" * 501],
    "account_username": ["b" * 256],
    "language": ["x" * 36],
    "url": ["https://x.example/" + "p" * 983],
    "hashtags": [["a" * 500, "b" * 500]],
}
STATUS_IDS = ["", "9" * 64, "9" * 65]
_tag = st.text(alphabet="abcdé😀𝕏_", min_size=1, max_size=8)


@st.composite
def post_values(draw, updated_at: dt.datetime, edited: bool) -> tuple[tuple[str, Any], ...]:
    text = draw(st.one_of(st.sampled_from(ODD_TEXTS), st.text(max_size=30)))
    status = draw(st.sampled_from(["SUCCESS", "SUCCESS", "FAILED", None]))
    # a post outside the models' language coverage: SUCCESS, null scores and a note saying why
    note = draw(st.sampled_from([None, None, None, "language_not_covered:ja", "language_unknown"])) \
        if status == "SUCCESS" else None
    scored = status == "SUCCESS" and note is None
    values: dict[str, Any] = {
        "text": text,
        "text_length": draw(st.one_of(st.none(), st.integers(0, 2**31 - 1))),
        "account_display_name": draw(st.one_of(st.text(max_size=12), st.sampled_from(DISPLAY_NAMES))),
        "account_username": draw(st.one_of(st.text(max_size=8), st.sampled_from(USERNAMES))),
        "hashtags": draw(st.one_of(st.lists(_tag, max_size=3), st.sampled_from(HASHTAGS))),
        "spoiler_text": draw(st.one_of(st.none(), st.sampled_from(["", "cw"]), st.sampled_from(ODD_TEXTS))),
        "content_html": draw(st.one_of(st.none(), st.text(max_size=20), st.sampled_from(ODD_TEXTS))),
        "language": draw(st.sampled_from(LANGUAGES)),
        "url": draw(st.sampled_from(URLS)),
        "visibility": draw(st.sampled_from(["public", "unlisted", "", None])),
        "sensitive": draw(st.one_of(st.none(), st.booleans())),
        "is_reblog": draw(st.one_of(st.none(), st.booleans())),
        "replies_count": draw(st.integers(0, 2**63 - 1)),
        "reblogs_count": draw(st.integers(0, 1000)),
        "favourites_count": draw(st.one_of(st.none(), st.integers(0, 2**63 - 1))),
        "processing_status": status,
        "scoring_note": note,
        "threat_label": draw(st.sampled_from(["none", "offensive", "hate"])) if scored else None,
        "threat_score": draw(st.floats(0, 1)) if scored else None,
        "threat_level": draw(st.sampled_from(["NONE", "LOW", "MEDIUM", "HIGH"])) if scored else None,
        "contains_hate_speech": draw(st.sampled_from([0, 1])) if scored else None,
        "sentiment_label": draw(st.sampled_from(["negative", "neutral", "positive"])) if scored else None,
        "sentiment_score": draw(st.floats(allow_nan=False)) if scored else None,
        "edited_at": updated_at if edited else None,
    }
    overflow = draw(st.sampled_from([None] * 40 + list(OVERFLOWS)))
    if overflow is not None:
        values[overflow] = draw(st.sampled_from(OVERFLOWS[overflow]))
    return tuple(values.items())


@st.composite
def sequences(draw, max_posts: int = 6, max_commits: int = 8) -> SyncSequence:
    """Silver commits over a few posts, then their delivery as change-feed micro-batches."""
    kinds = ["plain"] * 15 + ["emoji", "quote", "long_ascii", "long_emoji", "long_over"]
    posts = tuple(
        Post(n, draw(st.sampled_from(kinds)), draw(st.sampled_from([str(100000 + n)] * 12 + STATUS_IDS)))
        for n in range(draw(st.integers(1, max_posts)))
    )
    edit_steps = EDIT_STEPS + (CLOCK_BACK if ORDER_BY_COMMIT else [])
    last: dict[int, Version] = {}
    lives: dict[int, list[Version]] = {}  # every live version of a post, for restores
    commits: list[list[Version]] = []
    for _ in range(draw(st.integers(1, max_commits))):
        chosen = draw(st.lists(st.sampled_from(posts), min_size=1, max_size=len(posts), unique=True))
        versions: list[Version] = []
        commit = len(commits) + 1
        for post in chosen:
            prev = last.get(post.number)
            if prev is not None and prev.deleted:
                continue  # a tombstone is final in silver
            if prev is None:
                options = ["create"] * 3 + ["delete"]
            else:
                options = ["edit", "edit", "touch", "delete"]
                options += ["restore", "purge"] if ORDER_BY_COMMIT else []
            kind = draw(st.sampled_from(options))
            if kind == "create":
                at = T0.replace(tzinfo=None) + draw(st.integers(0, 10**7)) * MICRO
                made = [Version(post, commit, at, False, draw(post_values(at, edited=False)))]
            elif kind == "edit":
                at = prev.updated_at + draw(st.sampled_from(edit_steps))
                made = [Version(post, commit, at, False, draw(post_values(at, edited=True)))]
            elif kind == "touch":  # silver rewrote the row: same content, same updated_at, a new commit
                made = [Version(post, commit, prev.updated_at, False, prev.values)]
            elif kind == "restore":  # the current row leaves, an earlier one comes back: one commit
                back = draw(st.sampled_from(lives[post.number]))
                made = [Version(post, commit, prev.updated_at, True, prev.values, physical=True),
                        Version(post, commit, back.updated_at, False, back.values)]
                if draw(st.booleans()):  # the feed may list the re-insert first (a split then matters)
                    made.reverse()
            elif kind == "purge":  # the row is physically deleted from silver/posts: final, like a tombstone
                made = [Version(post, commit, prev.updated_at, True, prev.values, physical=True)]
            else:
                base = prev.updated_at if prev is not None else T0.replace(tzinfo=None)
                made = [Version(post, commit, base + draw(st.sampled_from(DELETE_STEPS)), True)]
            versions += made
            last[post.number] = max(made, key=Version.order)
            lives.setdefault(post.number, []).extend(v for v in made if not v.deleted)
        if versions:
            commits.append(versions)

    # the change feed in commit order, cut into micro-batches anywhere (a commit may span two batches)
    feed = [v for commit in commits for v in commit]
    batches: list[Batch] = []
    history: list[Version] = []
    i = 0
    while i < len(feed):
        size = draw(st.integers(1, 6))
        group = feed[i : i + size]
        i += size
        history.extend(group)
        rows = list(group)
        if draw(st.booleans()):  # stale rows: older versions of posts live at this point, sent again
            latest: dict[int, Version] = {}
            for v in history:
                if v.post.number not in latest or v.order() >= latest[v.post.number].order():
                    latest[v.post.number] = v
            stale = [v for v in history if not latest[v.post.number].deleted and not v.deleted]
            if stale:
                rows += draw(st.lists(st.sampled_from(stale), max_size=3))
        rows = draw(st.permutations(rows))
        batches.append(Batch(tuple(rows), replay=False))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            batches.append(Batch(tuple(rows), replay=True))
    return SyncSequence(posts, tuple(batches))


# --- the model ----------------------------------------------------------------------------------------------
def normalise(name: str, value: Any, empty_is_null: bool) -> Any:
    """One column value as both engines' drivers return it -> a comparable Python value."""
    if hasattr(value, "read"):  # an Oracle LOB
        value = value.read()
    if value is None:
        return None
    kind = KINDS[name]
    if kind == "ts":
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if isinstance(value, decimal.Decimal):
        return int(value)
    if empty_is_null and value == "":
        return None
    return value


def expected_rows(staged: tuple, empty_is_null: bool) -> tuple[tuple, tuple]:
    values = dict(zip(KINDS, staged, strict=True))
    raw = tuple(normalise(c, values[c], empty_is_null) for c in RAW_COLUMNS)
    processed = tuple(normalise(c, values[c], empty_is_null) for c in PROCESSED_KEYED)
    return raw, processed


@dataclass
class Expectation:
    rejected_everywhere: list[str]  # post ids of rows too long for some target (stage_rows_checked)
    rejected_by_oracle: list[tuple[str, tuple[str, ...]]]  # (post id, reasons) of oracle.check_rows
    deleted: int


@dataclass
class Model:
    prefix: str
    limits: dict[str, tuple[int, str]] = field(default_factory=oracle_varchar_limits)
    stored: dict[int, Version] = field(default_factory=dict)
    rejected_posts: set[int] = field(default_factory=set)

    def oracle_reasons(self, version: Version) -> tuple[str, ...]:
        staged = dict(zip(KINDS, stage_row(version.silver_row(self.prefix)), strict=True))
        columns = ["post_id"] if version.deleted else list(self.limits)
        return tuple(
            f"too_long:{name}" for name in columns
            if isinstance(staged[name], str) and not fits(staged[name], *self.limits[name])
        )

    def apply(self, batch: Sequence[Version]) -> Expectation:
        everywhere = []
        latest: dict[int, Version] = {}
        for version in batch:
            if not fits_every_target(version.silver_row(self.prefix)):
                everywhere.append(version.post.post_id(self.prefix))
                self.rejected_posts.add(version.post.number)
                continue
            held = latest.get(version.post.number)
            if held is None or version.order() > held.order():
                latest[version.post.number] = version
        by_oracle, deleted = [], 0
        for number, version in latest.items():
            reasons = self.oracle_reasons(version)
            if reasons:
                by_oracle.append((version.post.post_id(self.prefix), reasons))
                self.rejected_posts.add(number)
                continue
            stored = self.stored.get(number)
            newer = stored is None or version.commit_version > stored.commit_version
            if version.deleted:
                if stored is not None and newer:
                    del self.stored[number]
                    deleted += 1
            elif newer:
                self.stored[number] = version
        return Expectation(sorted(everywhere), sorted(by_oracle), deleted)

    def rows(self, empty_is_null: bool) -> tuple[dict[str, tuple], dict[str, tuple]]:
        raw, processed = {}, {}
        for version in self.stored.values():
            r, p = expected_rows(stage_row(version.silver_row(self.prefix)), empty_is_null)
            raw[r[0]], processed[p[0]] = r, p
        return raw, processed


# --- running a sequence through targets --------------------------------------------------------------------
@dataclass
class Sink:
    """A target under test: the real writer and how to read back what it holds."""

    name: str
    target: Any  # PostgresTarget | OracleTarget: write_batch(staging rows) -> BatchCounts
    # () -> (RAWPOSTS {post_id: row}, PROCESSEDPOSTS {post_id: (processed_id, row)})
    read: Callable[[], tuple[dict[str, tuple], dict[str, tuple[int, tuple]]]]
    row_versions: Callable[[], list] | None = None  # physical row versions (PostgreSQL xmin)
    empty_is_null: bool = False  # Oracle stores '' as NULL


@dataclass
class Stats:
    batches: int = 0
    replays: int = 0
    rows: int = 0
    rejected: int = 0
    deleted: int = 0


def run_sequence(sequence: SyncSequence, sinks: Sequence[Sink], prefix: str = PREFIX) -> Stats:
    """Feed every batch to every sink the way the sync job does, checking each against the model after it."""
    model = Model(prefix)
    stats = Stats()
    processed_ids: dict[str, dict[str, int]] = {sink.name: {} for sink in sinks}
    for n, batch in enumerate(sequence.batches):
        where = f"batch {n} ({'replay' if batch.replay else 'new'}, {len(batch.rows)} rows)"
        # as the sync job: rows too long for any target, then rows Oracle cannot hold, go to quarantine
        staged, everywhere = stage_rows_checked([version.silver_row(prefix) for version in batch.rows])
        accepted, rejected = oracle.check_rows(staged)
        expect = model.apply(batch.rows)
        assert sorted(post["post_id"] for post, _ in everywhere) == expect.rejected_everywhere, where
        assert sorted((r.post_id, r.reasons) for r in rejected) == expect.rejected_by_oracle, where
        before = {s.name: s.row_versions() for s in sinks if batch.replay and s.row_versions}
        counts = {}
        for sink in sinks:
            c = sink.target.write_batch(accepted)
            counts[sink.name] = (c.raw_upserted, c.processed_upserted, c.raw_deleted, c.processed_deleted)
        assert len(set(counts.values())) == 1, f"{where}: targets counted differently: {counts}"
        (raw_up, processed_up, raw_del, processed_del) = next(iter(counts.values()))
        assert raw_up == processed_up and (raw_del, processed_del) == (expect.deleted, expect.deleted), (
            f"{where}: counts {counts}, model deleted {expect.deleted}")
        for sink in sinks:
            raw, processed = sink.read()
            want_raw, want_processed = model.rows(sink.empty_is_null)
            assert raw == want_raw, f"{where}: {sink.name} RAWPOSTS differ from the model"
            assert {k: row for k, (_, row) in processed.items()} == want_processed, (
                f"{where}: {sink.name} PROCESSEDPOSTS differ from the model")
            ids = {k: pid for k, (pid, _) in processed.items()}
            kept = processed_ids[sink.name]
            assert all(ids[k] == kept[k] for k in ids.keys() & kept.keys()), (
                f"{where}: {sink.name} re-created a PROCESSEDPOSTS row instead of updating it")
            processed_ids[sink.name] = ids
        if batch.replay:
            assert next(iter(counts.values())) == (0, 0, 0, 0), f"{where}: a replay wrote rows: {counts}"
            for sink in sinks:
                if sink.name in before:
                    assert sink.row_versions() == before[sink.name], f"{where}: a replay rewrote {sink.name}"
            stats.replays += 1
        stats.batches += 1
        stats.rows += len(batch.rows)
        stats.rejected += len(rejected) + len(everywhere)
        stats.deleted += expect.deleted

    # the model itself ends where silver is, for every post none of whose versions was quarantined
    for number, version in sequence.current().items():
        if number in model.rejected_posts:
            continue
        held = model.stored.get(number)
        if version.deleted:
            assert held is None, f"post {number}: deleted in silver, still held"
        else:
            assert held is not None and held.content(prefix) == version.content(prefix), (
                f"post {number}: the model does not hold silver's current version")
    return stats


# --- reading the targets back ---------------------------------------------------------------------------
def read_postgres_like(cursor: Any, empty_is_null: bool, where: str = "", binds: Any = None):
    """RAWPOSTS / PROCESSEDPOSTS through a DB-API cursor (PostgreSQL or Oracle: unquoted names fold alike)."""
    cursor.execute(f"SELECT {', '.join(RAW_COLUMNS)} FROM rawposts{where.format(key='post_id')}", binds)
    raw = {}
    for row in cursor.fetchall():
        values = tuple(normalise(c, v, empty_is_null) for c, v in zip(RAW_COLUMNS, row, strict=True))
        raw[values[0]] = values
    cursor.execute(
        f"SELECT processed_id, raw_post_id, {', '.join(PROCESSED_COLUMNS)} FROM processedposts"
        f"{where.format(key='raw_post_id')}", binds)
    processed = {}
    for pid, *row in cursor.fetchall():
        values = tuple(normalise(c, v, empty_is_null) for c, v in zip(PROCESSED_KEYED, row, strict=True))
        processed[values[0]] = (int(pid), values)
    return raw, processed


def postgres_sink(name: str, target: Any, conn: Any, empty_is_null: bool = False) -> Sink:
    """A sink whose tables live in PostgreSQL (the real one, or the Oracle statements run there): `conn` is a
    psycopg2 connection in autocommit mode used to read them back, with xmin as the row version."""

    def read():
        with conn.cursor() as cur:
            return read_postgres_like(cur, empty_is_null)

    def row_versions():
        with conn.cursor() as cur:
            cur.execute("SELECT 'r', post_id, xmin::text FROM rawposts UNION ALL "
                        "SELECT 'p', raw_post_id, xmin::text FROM processedposts ORDER BY 1, 2")
            return cur.fetchall()

    return Sink(name, target, read, row_versions, empty_is_null)
