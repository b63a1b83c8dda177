"""The Oracle sync path against a real Oracle database: runs only when ORACLE_DSN is set (skipped otherwise).

Uses ORACLE_DSN / ORACLE_USER / ORACLE_PASSWORD / ORACLE_WALLET_DIR from the environment or .env, applies
sql/oracle (idempotent), and writes posts whose ids start with a unique prefix, removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from sync_support import EDGE_TEXTS, T0, silver_post, tombstone  # tests/integration is on sys.path

from tootlake.pipelines.settings import load_settings
from tootlake.pipelines.sync import dbinit
from tootlake.pipelines.sync.oracle import OracleTarget, connect_from_settings
from tootlake.pipelines.sync.records import stage_rows
from tootlake.pipelines.sync.retry import RetryPolicy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.environ.get("ORACLE_DSN"), reason="ORACLE_DSN is not set (no Oracle here)"),
]
N = 30


@pytest.fixture
def oracle_target():
    settings = load_settings()
    prefix = f"https://oracle-test-{uuid.uuid4().hex[:8]}.example/"
    setup = connect_from_settings(settings)
    dbinit.init_oracle(setup, log=lambda _: None)
    target = OracleTarget(lambda: connect_from_settings(settings), retry=RetryPolicy(2, 0.5), log=print)
    yield target, prefix, setup
    cursor = setup.cursor()
    cursor.execute("DELETE FROM PROCESSEDPOSTS WHERE RAW_POST_ID LIKE :p", p=prefix + "%")
    cursor.execute("DELETE FROM RAWPOSTS WHERE POST_ID LIKE :p", p=prefix + "%")
    setup.commit()
    target.close()
    setup.close()


def post(prefix: str, i: int, updated_at=T0, **overrides) -> dict:
    row = silver_post(i, updated_at, **overrides)
    row["post_id"] = f"{prefix}{i}"
    return row


def counts(conn, prefix: str) -> tuple[int, int]:
    cursor = conn.cursor()
    cursor.execute("SELECT (SELECT COUNT(*) FROM RAWPOSTS WHERE POST_ID LIKE :p), "
                   "(SELECT COUNT(*) FROM PROCESSEDPOSTS WHERE RAW_POST_ID LIKE :p) FROM DUAL",
                   p=prefix + "%")
    return tuple(cursor.fetchone())


def test_oracle_same_scenario(oracle_target):
    target, prefix, conn = oracle_target
    posts = [post(prefix, i) for i in range(N)]
    for i, text in enumerate(EDGE_TEXTS):
        posts[i]["text"] = text
    posts[N - 1]["processing_status"] = "FAILED"
    first = target.write_batch(stage_rows(posts))
    assert (first.raw_upserted, first.processed_upserted) == (N, N)
    assert counts(conn, prefix) == (N, N)
    again = target.write_batch(stage_rows(posts))
    assert (again.raw_upserted, again.processed_upserted) == (0, 0)

    later = T0 + dt.timedelta(minutes=5)
    edited = post(prefix, 10, later, text="edited")
    gone = tombstone(11, later)
    gone["post_id"] = f"{prefix}11"
    target.write_batch(stage_rows([edited, gone]))
    assert counts(conn, prefix) == (N - 1, N - 1)
    cursor = conn.cursor()
    cursor.execute("SELECT POST_CONTENT FROM RAWPOSTS WHERE POST_ID = :p", p=edited["post_id"])
    assert cursor.fetchone()[0].read() == "edited"
    for i, text in enumerate(EDGE_TEXTS):
        cursor.execute("SELECT POST_CONTENT FROM RAWPOSTS WHERE POST_ID = :p", p=f"{prefix}{i}")
        stored = cursor.fetchone()[0]
        stored = stored.read() if stored is not None else None
        assert stored == (text.replace("\x00", "") or None), repr(text)  # Oracle stores '' as NULL
    cursor.execute("SELECT PROCESSING_STATUS FROM PROCESSEDPOSTS WHERE RAW_POST_ID = :p",
                   p=f"{prefix}{N - 1}")
    assert cursor.fetchone()[0] == "FAILED"
