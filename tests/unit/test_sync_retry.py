"""Retry policy of the sync writers and the target set-up errors (no database needed)."""

from __future__ import annotations

import psycopg2
import pytest

from tootlake.pipelines.databases import postgres
from tootlake.pipelines.databases.retry import RetryPolicy, SyncError, with_retry
from tootlake.pipelines.settings import load_settings


def test_backoff_doubles_and_is_capped():
    assert RetryPolicy(5, 1.0, 5.0).delays() == [1.0, 2.0, 4.0, 5.0]
    assert RetryPolicy(1).delays() == []


def test_transient_errors_are_retried_then_succeed():
    calls, sleeps, dropped = [], [], []

    def action():
        calls.append(1)
        if len(calls) < 3:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return "ok"

    result = with_retry(action, postgres.is_connection_error, RetryPolicy(4, 0.5, 10), "sync",
                        on_retry=lambda: dropped.append(1), log=lambda _: None, sleep=sleeps.append)
    assert result == "ok" and len(calls) == 3 and sleeps == [0.5, 1.0] and len(dropped) == 2


def test_gives_up_with_an_actionable_message():
    def action():
        raise psycopg2.OperationalError("could not connect: Connection refused\nIs the server running?")

    with pytest.raises(SyncError) as failure:
        with_retry(action, postgres.is_connection_error, RetryPolicy(3, 0.1, 1), "sync to x:1/db",
                   log=lambda _: None, sleep=lambda _: None)
    message = str(failure.value)
    assert "after 3 tries" in message and "Connection refused" in message and "tootlake sync" in message


def test_other_errors_are_not_retried():
    calls = []

    def action():
        calls.append(1)
        raise psycopg2.errors.NotNullViolation("null value in column")

    with pytest.raises(psycopg2.errors.NotNullViolation):
        with_retry(action, postgres.is_connection_error, RetryPolicy(5), "sync", sleep=lambda _: None)
    assert calls == [1]


def test_conninfo_description_hides_the_password():
    text = postgres.describe_conninfo("host=db.internal port=5433 dbname=lake user=app password=s3cret")
    assert text == "PostgreSQL at db.internal:5433/lake" and "s3cret" not in text


def test_oracle_target_without_settings_says_what_to_set():
    from tootlake.pipelines.jobs.sync import make_targets

    with pytest.raises(SyncError, match="ORACLE_DSN"):
        make_targets(load_settings(oracle_dsn=None, oracle_user=None), "all")
    with pytest.raises(ValueError, match="target"):
        make_targets(load_settings(), "mysql")


def test_each_retry_is_logged_and_every_failed_try_drops_the_connection():
    logged, sleeps, dropped = [], [], []

    def action():
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(SyncError) as failure:
        with_retry(action, postgres.is_connection_error, RetryPolicy(3, 0.1, 1), "sync to x:1/db",
                   on_retry=lambda: dropped.append(1), log=logged.append, sleep=sleeps.append)
    assert logged == ["[sync] sync to x:1/db: connection problem (OperationalError); retry 1/2 in 0.1 s",
                      "[sync] sync to x:1/db: connection problem (OperationalError); retry 2/2 in 0.2 s"]
    assert sleeps == [0.1, 0.2] and len(dropped) == 3 and "over 0.3 s" in str(failure.value)
    assert isinstance(failure.value.__cause__, psycopg2.OperationalError)
