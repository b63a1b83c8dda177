"""Helpers for the sync integration tests: silver rows, a private database per test, table snapshots."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import uuid
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions

from tootlake.pipelines.databases import dbinit
from tootlake.silver.schema import POSTS_SCHEMA

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

# Text that breaks naive escaping: quotes, backslashes, COPY's own escapes, emoji, RTL marks, SQL.
EDGE_TEXTS = [
    "it's a \"quoted\" 'text'",
    "back\\slash \\N \\t \\\\ end\\",
    "tab\there\nnew line\r\ncarriage",
    "emoji 😀🔥👩‍👩‍👧 and 𝕏",
    "rtl \u200f\u202eعربي עברית\u202c mixed",
    "'); DROP TABLE rawposts; -- SELECT * FROM processedposts WHERE '1'='1",
    "nul\x00inside\x00twice",
    "",
]


def silver_post(i: int, updated_at: dt.datetime = T0, **overrides) -> dict:
    """A silver/posts row (every POSTS_SCHEMA column) for post number i."""
    row = {field.name: None for field in POSTS_SCHEMA.fields}
    row.update(
        post_id=f"https://sync.example/users/u{i % 7}/statuses/{100000 + i}",
        instance="sync.example",
        status_id=str(100000 + i),
        url=f"https://sync.example/@u{i % 7}/{100000 + i}",
        account_id=str(i % 7),
        account_acct=f"u{i % 7}",
        account_username=f"u{i % 7}",
        account_display_name=f"User {i % 7}",
        created_at=(T0 - dt.timedelta(minutes=i)).replace(tzinfo=None),
        language="en",
        visibility="public",
        sensitive=False,
        content_html=f"<p>post {i}</p>",
        text=f"post {i}",
        text_length=len(f"post {i}"),
        hashtags=["sync", f"tag{i % 3}"],
        is_reblog=False,
        replies_count=0,
        reblogs_count=i,
        favourites_count=2 * i,
        platform="mastodon",
        threat_label="none",
        threat_score=0.9,
        threat_level="NONE",
        contains_hate_speech=0,
        threat_model_version="threat-test",
        sentiment_label="neutral",
        sentiment_score=0.6,
        sentiment_model_version="sentiment-test",
        processing_status="SUCCESS",
        is_deleted=False,
        event_kind="status",
        updated_at=updated_at.replace(tzinfo=None),
        ingested_at=T0.replace(tzinfo=None),
    )
    row.update(overrides)
    return row


def tombstone(i: int, updated_at: dt.datetime) -> dict:
    """Silver's delete policy: the row stays with is_deleted=true and its content nulled."""
    return silver_post(i, updated_at, is_deleted=True, deleted_at=updated_at.replace(tzinfo=None),
                       text=None, content_html=None, spoiler_text=None, text_length=None, hashtags=None,
                       event_kind="delete", processing_status=None)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_dbname(conninfo: str, dbname: str) -> str:
    parts = psycopg2.extensions.parse_dsn(conninfo)
    parts["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**parts)


@contextlib.contextmanager
def scratch_database(conninfo: str, init: bool = True) -> Iterator[str]:
    """A fresh database on the server of `conninfo` with the sync scripts applied; dropped afterwards."""
    name = f"sync_{uuid.uuid4().hex[:10]}"
    admin = with_dbname(conninfo, "postgres")
    with contextlib.closing(psycopg2.connect(admin)) as conn:
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
    target = with_dbname(conninfo, name)
    if init:
        dbinit.init_postgres(target, log=lambda _: None)
    try:
        yield target
    finally:
        with contextlib.suppress(psycopg2.Error), contextlib.closing(psycopg2.connect(admin)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(conninfo: str, statement: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(conninfo)) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def counts(conninfo: str) -> tuple[int, int]:
    return query(conninfo, "SELECT (SELECT count(*) FROM rawposts), (SELECT count(*) FROM processedposts)")[0]


def snapshot(conninfo: str) -> list[tuple]:
    """Every row of both tables with its row version (xmin): equal snapshots = nothing was written."""
    raw = query(conninfo, "SELECT xmin::text, r.* FROM rawposts r ORDER BY post_id")
    processed = query(conninfo, "SELECT xmin::text, p.* FROM processedposts p ORDER BY raw_post_id")
    return raw + processed
