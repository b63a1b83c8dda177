"""The Oracle sync path against a real Oracle database: runs only when Oracle is configured (else skipped).

Uses ORACLE_DSN / ORACLE_USER / ORACLE_PASSWORD / ORACLE_WALLET_DIR from the environment or .env, applies
sql/oracle (idempotent), and writes posts whose ids start with a unique prefix, removed afterwards. Besides
the fixed scenario it runs the randomised change-feed sequences of tests/integration/sync_sequences.py (the
ones test_oracle_semantics.py runs on PostgreSQL) and checks the rows against the same model after every
batch. `make test-oracle` runs this file and fails, instead of skipping, when Oracle is not configured;
TOOTLAKE_ORACLE_SEQUENCES sets how many sequences (default 25).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from sync_sequences import Sink, SyncSequence, read_postgres_like, run_sequence, sequences
from sync_support import EDGE_TEXTS, T0, silver_post, tombstone  # tests/integration is on sys.path

from tootlake.pipelines.databases import dbinit
from tootlake.pipelines.databases.oracle import OracleTarget, connect_from_settings
from tootlake.pipelines.databases.records import stage_rows
from tootlake.pipelines.databases.retry import RetryPolicy
from tootlake.pipelines.settings import load_settings

pytestmark = pytest.mark.integration
N = 30
SEQUENCES = int(os.environ.get("TOOTLAKE_ORACLE_SEQUENCES", "25"))


def _configured():
    live = load_settings()
    return live if live.oracle_dsn is not None and live.oracle_user else None


@pytest.fixture(scope="module")
def oracle_settings():
    live = _configured()
    if live is None:
        message = "Oracle is not configured: set ORACLE_DSN, ORACLE_USER, ORACLE_PASSWORD (env or .env)"
        if os.environ.get("TOOTLAKE_REQUIRE_ORACLE") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    setup = connect_from_settings(live)
    dbinit.init_oracle(setup, log=lambda _: None)
    setup.close()
    return live


def _delete_prefix(conn, prefix: str) -> None:
    cursor = conn.cursor()
    cursor.execute("DELETE FROM PROCESSEDPOSTS WHERE RAW_POST_ID LIKE :p", p=prefix + "%")
    cursor.execute("DELETE FROM RAWPOSTS WHERE POST_ID LIKE :p", p=prefix + "%")
    conn.commit()


@pytest.fixture
def oracle_target(oracle_settings):
    prefix = f"https://oracle-test-{uuid.uuid4().hex[:8]}.example/"
    setup = connect_from_settings(oracle_settings)
    target = OracleTarget(lambda: connect_from_settings(oracle_settings), retry=RetryPolicy(2, 0.5),
                          log=print)
    yield target, prefix, setup
    _delete_prefix(setup, prefix)
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


@pytest.fixture(scope="module")
def sequence_target(oracle_settings):
    reader = connect_from_settings(oracle_settings)
    target = OracleTarget(lambda: connect_from_settings(oracle_settings), retry=RetryPolicy(2, 0.5),
                          log=lambda _: None)
    yield target, reader
    target.close()
    reader.close()


@settings(max_examples=SEQUENCES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(sequence=sequences())
def test_oracle_random_sequences_match_the_model(sequence_target, sequence: SyncSequence):
    """The randomised sequences on the real Oracle: after every batch the rows are what the model says."""
    target, reader = sequence_target
    prefix = f"https://oracle-seq-{uuid.uuid4().hex[:8]}.example/"

    def read():
        with contextlib.closing(reader.cursor()) as cursor:
            return read_postgres_like(cursor, True, " WHERE {key} LIKE :p", {"p": prefix + "%"})

    try:
        run_sequence(sequence, [Sink("oracle", target, read, None, empty_is_null=True)], prefix=prefix)
    finally:
        _delete_prefix(reader, prefix)
