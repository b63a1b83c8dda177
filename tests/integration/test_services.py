"""The embedded services for real: up / status / down, idempotence, stale PID files, busy ports, external.

These tests run their own broker and cluster (free ports, a temporary state folder), so stopping them never
disturbs the session's `kafka_bootstrap` / `postgres_conninfo` services used by other tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tootlake.pipelines import cli
from tootlake.pipelines.ops import services
from tootlake.pipelines.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@contextlib.contextmanager
def _listening(port: int) -> Iterator[None]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


@pytest.fixture(scope="module")
def own(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a private broker + cluster on free ports; stopped at the end of the module."""
    state = tmp_path_factory.mktemp("svc")
    mine = settings.model_copy(update={
        "state_dir": state / "state", "log_dir": state / "log",
        "kafka_port": _free_port(), "kafka_controller_port": _free_port(), "postgres_port": _free_port(),
    })
    # bootstrap_servers is cached from the original object: drop the copy's cached value.
    mine.__dict__.pop("bootstrap_servers", None)
    yield mine
    services.stop_services(mine)
    # under /tmp/pytest-of-root (mode 700) the cluster lives in /var/tmp: do not leave it behind
    data_dir = services.postgres_data_dir(mine)
    if not data_dir.is_relative_to(state):
        shutil.rmtree(data_dir, ignore_errors=True)


def _use_in_cli(monkeypatch: pytest.MonkeyPatch, s: Settings) -> None:
    monkeypatch.chdir(s.tootlake_home)
    for name, value in {"TOOTLAKE_HOME": s.tootlake_home, "STATE_DIR": s.state_dir, "LOG_DIR": s.log_dir,
                        "KAFKA_PORT": s.kafka_port, "KAFKA_CONTROLLER_PORT": s.kafka_controller_port,
                        "POSTGRES_PORT": s.postgres_port}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("POSTGRES_DSN", raising=False)


def test_up_status_down_cycle(own: Settings, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert own.bootstrap_servers == f"127.0.0.1:{own.kafka_port}"
    kafka, postgres = services.ensure_services(own)
    assert kafka.running and kafka.pid and postgres.running and postgres.pid
    assert services.kafka_answers(own.bootstrap_servers)
    assert services.postgres_answers(own.postgres_conninfo())
    assert (own.path(own.log_dir) / "kafka.log").stat().st_size > 0
    assert services.postgres_log_file(own).stat().st_size > 0

    # idempotent: a second `up` starts nothing new
    again = services.ensure_services(own)
    assert [s.pid for s in again] == [kafka.pid, postgres.pid]

    _use_in_cli(monkeypatch, own)
    assert cli.main(["services", "status"]) == 0
    out = capsys.readouterr().out
    assert f"kafka      up    127.0.0.1:{own.kafka_port} pid {kafka.pid}" in out
    assert f"postgres   up    127.0.0.1:{own.postgres_port} pid {postgres.pid}" in out
    assert cli.main(["services", "up"]) == 0
    captured = capsys.readouterr()
    assert "already running" in captured.err  # a log line: stderr
    password = own.postgres_password_value()
    assert password and password not in captured.out and password not in captured.err

    assert cli.main(["services", "down"]) == 0
    assert "stopped: kafka, postgres" in capsys.readouterr().out
    assert not services.kafka_answers(own.bootstrap_servers, timeout=2)
    assert not services.postgres_answers(own.postgres_conninfo(), timeout=2)
    assert cli.main(["services", "status"]) == 3
    assert not services.kafka_pid_file(own).exists()


def test_each_service_stops_and_starts_alone_and_keeps_data(own: Settings) -> None:
    import psycopg2
    from confluent_kafka.admin import AdminClient, NewTopic

    services.ensure_services(own)
    admin = AdminClient({"bootstrap.servers": own.bootstrap_servers})
    admin.create_topics([NewTopic("keep_me", 2)])["keep_me"].result(timeout=30)

    assert services.stop_postgres(own)
    assert services.kafka_status(own).running and not services.postgres_status(own).running
    services.start_postgres(own)
    assert services.stop_kafka(own)
    assert services.postgres_answers(own.postgres_conninfo())
    services.start_kafka(own)
    topics = AdminClient({"bootstrap.servers": own.bootstrap_servers}).list_topics(timeout=10).topics
    assert len(topics["keep_me"].partitions) == 2
    with contextlib.closing(psycopg2.connect(own.postgres_conninfo())) as conn:
        cur = conn.cursor()
        cur.execute("select current_database(), current_user")
        assert cur.fetchone() == (own.postgres_db, own.postgres_user)


def test_stale_pid_files_are_cleaned_with_a_note(own: Settings) -> None:
    services.stop_services(own)
    pid_file = services.kafka_pid_file(own)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{_dead_pid()}\n")
    status = services.kafka_status(own)
    assert not status.running and "stale" in status.note
    assert not pid_file.exists()

    postmaster = services.postgres_data_dir(own) / "postmaster.pid"
    postmaster.write_text(f"{_dead_pid()}\n{services.postgres_data_dir(own)}\n")
    status = services.postgres_status(own)
    assert not status.running and "stale" in status.note
    assert not postmaster.exists()

    # and `up` works after a crash left the files behind
    pid_file.write_text(f"{_dead_pid()}\n")
    kafka, postgres = services.ensure_services(own)
    assert kafka.running and postgres.running
    services.stop_services(own)


@pytest.mark.parametrize(("service", "setting"), [("kafka", "KAFKA_PORT"), ("postgres", "POSTGRES_PORT")])
def test_busy_port_names_port_and_setting(own: Settings, service: str, setting: str) -> None:
    services.stop_services(own)
    port = own.kafka_port if service == "kafka" else own.postgres_port
    start = services.start_kafka if service == "kafka" else services.start_postgres
    with _listening(port):
        with pytest.raises(services.ServiceError) as excinfo:
            start(own)
        status = (services.kafka_status if service == "kafka" else services.postgres_status)(own)
    message = str(excinfo.value)
    assert str(port) in message and setting in message
    assert not status.running and setting in status.note


def test_external_kafka_is_checked_not_started(settings: Settings, kafka_bootstrap: str,
                                               tmp_path: Path) -> None:
    external = settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap,
                                           "state_dir": tmp_path / "state"})
    external.__dict__.pop("bootstrap_servers", None)
    status = services.start_kafka(external)
    assert status.running and status.external and status.pid is None
    assert not services.kafka_pid_file(external).exists()
    assert services.stop_kafka(external) is False  # never stops someone else's broker
    assert services.kafka_answers(kafka_bootstrap)

    dead = external.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{_free_port()}"})
    dead.__dict__.pop("bootstrap_servers", None)
    with pytest.raises(services.ServiceError, match="KAFKA_BOOTSTRAP_SERVERS"):
        services.start_kafka(dead)


def test_external_postgres_is_checked_not_started(settings: Settings, postgres_conninfo: str) -> None:
    from pydantic import SecretStr

    external = settings.model_copy(update={"postgres_dsn": SecretStr(postgres_conninfo)})
    status = services.start_postgres(external)
    assert status.running and status.external and status.address == "POSTGRES_DSN"
    assert services.stop_postgres(external) is False
    dead = settings.model_copy(update={"postgres_dsn": SecretStr(f"host=127.0.0.1 port={_free_port()}")})
    with pytest.raises(services.ServiceError, match="POSTGRES_DSN"):
        services.start_postgres(dead)


# --- password authentication -------------------------------------------------------------------------
def _login(s: Settings, **extra: object) -> str:
    """A conninfo to the cluster of `s` that brings no password unless `extra` gives one."""
    parts = {"host": "127.0.0.1", "port": s.postgres_port, "dbname": "postgres", "user": s.postgres_user,
             "passfile": "/nonexistent", "connect_timeout": 5, **extra}
    return " ".join(f"{name}={value}" for name, value in parts.items())


def _refused(conninfo: str) -> str:
    import psycopg2

    with pytest.raises(psycopg2.OperationalError) as excinfo:
        psycopg2.connect(conninfo).close()
    return str(excinfo.value)


def _assert_password_needed(s: Settings, wrong: str = "not-the-password") -> None:
    assert "no password supplied" in _refused(_login(s))
    assert "password authentication failed" in _refused(_login(s, password=wrong))
    socket_dir = services.postgres_data_dir(s)
    if (socket_dir / f".s.PGSQL.{s.postgres_port}").exists():  # the local socket asks for it too
        assert "no password supplied" in _refused(_login(s, host=socket_dir))
    assert services.postgres_answers(s.postgres_conninfo())
    hba = (services.postgres_data_dir(s) / "pg_hba.conf").read_text()
    assert "trust" not in [word for line in hba.splitlines() for word in line.split("#")[0].split()]


@pytest.fixture
def fresh(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A cluster of this test's own (new state folder, free port), removed at the end."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    mine = settings.model_copy(update={"state_dir": tmp_path / "state", "log_dir": tmp_path / "log",
                                       "postgres_port": _free_port(), "postgres_password": None})
    yield mine
    services.stop_postgres(mine)
    shutil.rmtree(services.postgres_data_dir(mine), ignore_errors=True)


def test_embedded_postgres_needs_its_generated_password(fresh: Settings, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from pydantic import SecretStr

    with caplog.at_level(logging.DEBUG, logger=services.__name__):
        services.start_postgres(fresh)
    passfile = fresh.postgres_passfile
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600 and passfile.stat().st_uid == os.geteuid()
    password = fresh.postgres_password_value()
    assert password and len(password) >= 32
    _assert_password_needed(fresh)
    # never shown: not in the conninfo, the settings, the log lines or the server log
    assert password not in fresh.postgres_conninfo() + repr(fresh) + caplog.text
    assert password not in services.postgres_log_file(fresh).read_text()
    # nothing of the initdb password file is left behind
    assert not list(services.postgres_data_dir(fresh).parent.glob("*initdb*"))
    # a client that cannot read the file is given POSTGRES_PASSWORD instead
    other = fresh.model_copy(update={"postgres_password": SecretStr(password), "state_dir": tmp_path / "x"})
    assert services.postgres_answers(other.postgres_conninfo())


def _old_trust_cluster(s: Settings, running: bool) -> None:
    """A cluster as `services up` made it before passwords (initdb -A trust), with a row in it."""
    import psycopg2

    data_dir = services.postgres_data_dir(s)
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o700)
    services._chown_to_pg(data_dir)
    services._pg_run(["initdb", "-D", str(data_dir), "-A", "trust", "-U", s.postgres_user, "-E", "UTF8",
                      "--locale=C.UTF-8"], cwd=data_dir)
    opts = f"-p {s.postgres_port} -k '' -c listen_addresses=127.0.0.1"
    services._pg_run(["pg_ctl", "-D", str(data_dir), "-o", opts, "-l", str(data_dir / "old.log"), "-w",
                      "start"], cwd=data_dir)
    with contextlib.closing(psycopg2.connect(_login(s))) as conn:  # trust: no password at all
        conn.autocommit = True
        conn.cursor().execute("create table kept (id int); insert into kept values (42)")
    if not running:
        services._pg_run(["pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "stop"], cwd=data_dir)


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_trust_cluster_from_before_is_migrated_keeping_its_data(fresh: Settings, running: bool) -> None:
    import psycopg2

    _old_trust_cluster(fresh, running)
    before = services.postgres_status(fresh).pid
    assert services.start_postgres(fresh).running
    if running:  # switched in place (reload), no restart under the feet of its users
        assert services.postgres_status(fresh).pid == before
    assert stat.S_IMODE(fresh.postgres_passfile.stat().st_mode) == 0o600
    _assert_password_needed(fresh)
    conninfo = fresh.postgres_conninfo().replace(f"dbname={fresh.postgres_db}", "dbname=postgres")
    with contextlib.closing(psycopg2.connect(conninfo)) as conn:
        cur = conn.cursor()
        cur.execute("select id from kept")
        assert cur.fetchall() == [(42,)]
    # a second `up` has nothing left to migrate and keeps the password
    password = fresh.postgres_password_value()
    services.start_postgres(fresh)
    assert fresh.postgres_password_value() == password


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_lost_password_file_gets_a_new_password(fresh: Settings, running: bool) -> None:
    services.start_postgres(fresh)
    if not running:
        services.stop_postgres(fresh)
    old = fresh.postgres_password_value()
    fresh.postgres_passfile.unlink()
    assert services.start_postgres(fresh).running
    new = fresh.postgres_password_value()
    assert new and new != old
    _assert_password_needed(fresh, wrong=str(old))


def test_child_processes_of_the_session_reach_the_test_cluster(settings: Settings, postgres_conninfo: str,
                                                              tmp_path: Path) -> None:
    """A job started with the session's environment and only POSTGRES_PORT (no STATE_DIR) still logs in."""
    if not settings.uses_embedded_postgres:
        pytest.skip("external PostgreSQL")
    code = ("import sys; from tootlake.pipelines.settings import load_settings; "
            "from tootlake.pipelines.ops.services import postgres_answers; "
            "sys.exit(0 if postgres_answers(load_settings().postgres_conninfo()) else 1)")
    env = {**os.environ, "TOOTLAKE_HOME": str(tmp_path), "POSTGRES_PORT": str(settings.postgres_port)}
    env.pop("STATE_DIR", None)
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, timeout=60).returncode == 0
