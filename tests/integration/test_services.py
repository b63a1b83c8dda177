"""The embedded services for real: up / status / down, idempotence, stale PID files, busy ports, external.

These tests run their own broker and cluster (free ports, a temporary state folder), so stopping them never
disturbs the session's `kafka_bootstrap` / `postgres_conninfo` services used by other tests.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tootlake.pipelines import cli, services
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
    assert "already running" in capsys.readouterr().out

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
