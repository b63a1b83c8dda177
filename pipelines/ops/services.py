"""Embedded services: a KRaft Kafka broker, a private PostgreSQL 15 cluster and, when the lake or the
checkpoints are on `s3a://` and no S3_ENDPOINT is set, an S3-compatible object store (s3proxy over a
folder), all on loopback.

`tootlake services up|down|status` and the test fixtures call the functions here. When
`KAFKA_BOOTSTRAP_SERVERS` / `POSTGRES_DSN` is set, that service is external: nothing is started, `up`
only checks that it answers.

Files (relative to the project, from settings):
- Kafka: `<state>/kafka/` (server.properties, log4j2.properties, data/), PID file `<state>/kafka.pid`,
  broker log `<log>/kafka.log` (JVM stdout/stderr in `<log>/kafka.out`).
- s3proxy: `<state>/s3proxy/` (s3proxy.properties, data/ = the buckets), PID file `<state>/s3proxy.pid`,
  log `<log>/s3proxy.log`; its generated key pair in `<state>/s3proxy.keys.json` (mode 0600), which
  clients read through `Settings.s3_keys` (like the PostgreSQL password file). The lake's bucket is
  created on start.
- PostgreSQL: data directory `<state>/postgres/` (its `postmaster.pid` is the PID file), log
  `<log>/postgres.log`. Run as root (sessions, CI), the server runs as the `postgres` user the Debian
  package creates, because initdb refuses root; if that user cannot traverse the project's state folder
  (e.g. a checkout under /root with mode 700), the data directory moves to
  `/var/tmp/tootlake-postgres-<hash of the state path>/` instead (see `postgres_data_dir`).
  Every login needs the password (scram-sha-256, TCP on 127.0.0.1 and the local socket): initdb gets a
  generated one, which clients find in `<state>/postgres.pgpass` (libpq password file, mode 0600, owned by
  whoever ran `services up`; `Settings.postgres_conninfo` names it). A cluster made by an older tootlake
  with `trust` auth is switched over in place by `services up` (new password, pg_hba.conf rewritten,
  reloaded: data kept); a lost password file gets a new password the same way (see `_secure_postgres`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tootlake.pipelines.ops import processes
from tootlake.pipelines.settings import Settings, conninfo, pgpass_line, write_private_file

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("TOOTLAKE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_SYSTEM_USER = "postgres"
KAFKA_START_TIMEOUT_S = 180.0  # a JVM start on 2 busy cores can take over a minute
STOP_TIMEOUT_S = 30.0


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    address: str
    pid: int | None = None
    external: bool = False
    note: str = ""

    def line(self) -> str:
        state = "up" if self.running else "down"
        where = "external " if self.external else ""
        pid = f" pid {self.pid}" if self.pid else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.name:<10} {state:<5} {where}{self.address}{pid}{note}"


# --- small helpers -------------------------------------------------------------------------------------
def _is_root() -> bool:
    return os.geteuid() == 0


def _runs(cmdline_hint: str) -> Callable[[list[str]], bool]:
    """A command-line test: it contains `cmdline_hint` (guards against PID reuse)."""
    return lambda args: cmdline_hint in " ".join(args)


def _pid_alive(pid: int, cmdline_hint: str) -> bool:
    """True when `pid` runs (not a zombie; possibly another user's, e.g. postgres) and its command line
    contains `cmdline_hint`."""
    return processes.is_running(pid, _runs(cmdline_hint))


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _busy_port_error(port: int, setting: str) -> ServiceError:
    return ServiceError(
        f"port {port} on 127.0.0.1 is already in use by another process; set {setting} to a free port "
        f"(in .env or the environment, see .env.example), or stop whatever listens there"
    )


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, hint: str, name: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL."""
    processes.terminate(pid, _runs(hint), timeout, on_kill=lambda: log.warning(
        "%s (pid %d) did not stop within %.0f s: sending SIGKILL", name, pid, timeout))


# --- Kafka ---------------------------------------------------------------------------------------------
KAFKA_MAIN = "kafka.Kafka"


def _kafka_dir(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / "kafka"


def kafka_pid_file(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / "kafka.pid"


def kafka_log_file(settings: Settings) -> Path:
    return settings.path(settings.log_dir) / "kafka.log"


def _kafka_classpath(settings: Settings) -> str:
    jars = settings.path(settings.jars_dir) / "kafka"
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"no Kafka broker jars in {jars}: run `make setup` first")
    return f"{jars}/*"


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise ServiceError("`java` is not on PATH: install a JRE 17+ (Debian: openjdk-17-jre-headless)")
    return java


def _kafka_server_properties(settings: Settings, data_dir: Path) -> str:
    controller = f"127.0.0.1:{settings.kafka_controller_port}"
    return "\n".join([
        "# written by tootlake services up; edit settings (KAFKA_*) instead of this file",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://{controller}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir}",
        f"num.partitions={settings.kafka_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "log.retention.hours=168",
        "num.network.threads=2",
        "num.io.threads=2",
        "",
    ])


def _kafka_log4j2(settings: Settings) -> str:
    log_file = kafka_log_file(settings)
    return "\n".join([
        "# written by tootlake services up: the broker logs to a file, not to the terminal",
        "status = warn",
        "appender.file.type = RollingFile",
        "appender.file.name = FILE",
        f"appender.file.fileName = {log_file}",
        f"appender.file.filePattern = {log_file}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 20MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = FILE",
        "logger.kafka.name = kafka",
        "logger.kafka.level = INFO",
        "logger.apache.name = org.apache.kafka",
        "logger.apache.level = INFO",
        "",
    ])


def _kafka_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe base64 without padding, and,
    # like Kafka, never starting with '-' (1 in 64 ids would: the format command reads it as an option).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_kafka_storage(settings: Settings, kdir: Path, data_dir: Path, props: Path) -> None:
    """Format the KRaft log dir once; again (wiping it) only when the controller port changed."""
    stamp = kdir / "formatted-for"
    wanted = f"controller=127.0.0.1:{settings.kafka_controller_port}"
    if (data_dir / "meta.properties").exists():
        if stamp.exists() and stamp.read_text().strip() == wanted:
            return
        # The controller's address is written into the metadata log by --standalone: a new port needs a new
        # quorum. This is the embedded development broker, so its topics are dropped.
        log.warning("Kafka controller port changed: re-formatting the embedded broker's storage in %s",
                    data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_java(), "-Xmx256m", "-cp", _kafka_classpath(settings),
           f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
           "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(props), "--standalone"]
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    stamp.write_text(wanted + "\n")


def kafka_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a broker at `bootstrap` returns cluster metadata within `timeout`."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000,
                         "log_level": 0, "logger": logging.getLogger("tootlake.kafka.admin")})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout / refused: "not answering" is the answer
        return False
    return bool(metadata.brokers)


def _wait_kafka(settings: Settings, pid: int | None, timeout: float,
                proc: subprocess.Popen[bytes] | None = None) -> None:
    def answers() -> bool:
        # Our own child: poll() (its command line is not java's until exec); someone else's: its PID.
        exited = proc.poll() is not None if proc is not None else (
            pid is not None and not _pid_alive(pid, KAFKA_MAIN))
        if exited:
            out = settings.path(settings.log_dir) / "kafka.out"
            raise ServiceError(
                f"the Kafka broker exited during start-up; last lines of {kafka_log_file(settings)}:\n"
                f"{_tail(kafka_log_file(settings))}\n{_tail(out, 10)}"
            )
        return _port_open(settings.kafka_port) and kafka_answers(settings.bootstrap_servers, timeout=3)

    if processes.wait_until(answers, timeout, every=0.5):
        return
    raise ServiceError(
        f"the Kafka broker did not answer on {settings.bootstrap_servers} within {timeout:.0f} s; "
        f"see {kafka_log_file(settings)}"
    )


def kafka_status(settings: Settings) -> ServiceStatus:
    if not settings.uses_embedded_kafka:
        ok = kafka_answers(settings.bootstrap_servers)
        return ServiceStatus("kafka", ok, settings.bootstrap_servers, external=True,
                             note="" if ok else "not answering")
    pid_file = kafka_pid_file(settings)
    pid = processes.read_pid(pid_file)
    note = ""
    if pid is not None and not _pid_alive(pid, KAFKA_MAIN):
        pid_file.unlink(missing_ok=True)
        note = f"removed stale PID file {pid_file.name} (pid {pid} is gone)"
        log.info("kafka: %s", note)
        pid = None
    if pid is None and not note and pid_file.exists():
        pid_file.unlink(missing_ok=True)
        note = f"removed unreadable PID file {pid_file.name}"
    if pid is None and _port_open(settings.kafka_port):
        note = f"port {settings.kafka_port} is used by another process (KAFKA_PORT)"
    return ServiceStatus("kafka", pid is not None, settings.bootstrap_servers, pid=pid, note=note)


def start_kafka(settings: Settings, timeout: float = KAFKA_START_TIMEOUT_S) -> ServiceStatus:
    """Start the embedded broker (or check the external one) and return once it answers."""
    if not settings.uses_embedded_kafka:
        if not kafka_answers(settings.bootstrap_servers, timeout=10):
            raise ServiceError(
                f"the external Kafka at KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} does not "
                "answer; check it is up, or unset KAFKA_BOOTSTRAP_SERVERS to use the embedded broker"
            )
        return kafka_status(settings)
    current = kafka_status(settings)
    if current.running:
        log.info("kafka: already running (pid %s) on %s", current.pid, current.address)
        _wait_kafka(settings, current.pid, timeout)
        return current
    for port, setting in ((settings.kafka_port, "KAFKA_PORT"),
                          (settings.kafka_controller_port, "KAFKA_CONTROLLER_PORT")):
        if _port_open(port):
            raise _busy_port_error(port, setting)

    t0 = time.monotonic()
    kdir = _kafka_dir(settings)
    data_dir = kdir / "data"
    log_dir = settings.path(settings.log_dir)
    kdir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(_kafka_server_properties(settings, data_dir))
    (kdir / "log4j2.properties").write_text(_kafka_log4j2(settings))
    _format_kafka_storage(settings, kdir, data_dir, props)

    cmd = [_java(), f"-Xmx{settings.kafka_heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}", f"-Dkafka.logs.dir={log_dir}",
           "-cp", _kafka_classpath(settings), KAFKA_MAIN, str(props)]
    with open(log_dir / "kafka.out", "ab") as out:
        # A session of its own: Ctrl-C in the terminal that ran `up` does not kill the broker.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=kdir, start_new_session=True)
    kafka_pid_file(settings).parent.mkdir(parents=True, exist_ok=True)
    kafka_pid_file(settings).write_text(f"{proc.pid}\n")
    log.info("kafka: starting (pid %d) on %s, log %s", proc.pid, settings.bootstrap_servers,
             kafka_log_file(settings))
    try:
        _wait_kafka(settings, proc.pid, timeout, proc)
    except ServiceError:
        _terminate(proc.pid, KAFKA_MAIN, "kafka", timeout=5)
        kafka_pid_file(settings).unlink(missing_ok=True)
        raise
    log.info("kafka: up in %.1f s", time.monotonic() - t0)
    return ServiceStatus("kafka", True, settings.bootstrap_servers, pid=proc.pid)


def stop_kafka(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the embedded broker; returns True when it was running. External brokers are left alone."""
    if not settings.uses_embedded_kafka:
        return False
    current = kafka_status(settings)
    if not current.running or current.pid is None:
        return False
    log.info("kafka: stopping (pid %d)", current.pid)
    _terminate(current.pid, KAFKA_MAIN, "kafka", timeout)
    kafka_pid_file(settings).unlink(missing_ok=True)
    return True


# --- PostgreSQL ----------------------------------------------------------------------------------------
POSTGRES_HINT = "postgres"


def _others_can_traverse(path: Path) -> bool:
    """True when every existing ancestor of `path` is searchable by other users (mode o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                return False
    return True


def postgres_data_dir(settings: Settings) -> Path:
    """Where the private cluster lives.

    `<state>/postgres` normally. As root the server runs as the `postgres` user, which must reach the
    folder: when a parent is not searchable by others, the data goes to
    `/var/tmp/tootlake-postgres-<hash>` (hash of the project's state path, so two checkouts never share it;
    /var/tmp survives reboots).
    """
    state = settings.path(settings.state_dir).resolve()
    if _is_root() and not _others_can_traverse(state):
        digest = hashlib.sha256(str(state).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"tootlake-postgres-{digest}"
    return state / "postgres"


def postgres_log_file(settings: Settings) -> Path:
    """`<log>/postgres.log`, or `<data dir>/log/postgres.log` when the server's user cannot reach `<log>`."""
    log_dir = settings.path(settings.log_dir).resolve()
    if _is_root() and not _others_can_traverse(log_dir.parent):
        return postgres_data_dir(settings) / "log" / "postgres.log"
    return log_dir / "postgres.log"


def _pg_user() -> pwd.struct_passwd | None:
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise ServiceError(
            f"running as root but there is no `{PG_SYSTEM_USER}` user to run PostgreSQL as; "
            "`make setup` installs postgresql-15, which creates it"
        ) from None


def _pg_run(args: list[str], cwd: Path, check: bool = True,
            stdin_text: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = PG_BIN / args[0]
    if not binary.exists():
        raise ServiceError(f"{binary} not found: run `make setup` (installs postgresql-15)")
    cmd = [str(binary), *args[1:]]
    if _pg_user() is not None:
        cmd = ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
    stdin = {"input": stdin_text} if stdin_text is not None else {"stdin": subprocess.DEVNULL}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, **stdin)
    if check and result.returncode != 0:
        raise ServiceError(f"`{' '.join(args[:2])}` failed (exit {result.returncode}):\n"
                           f"{result.stdout}{result.stderr}".rstrip())
    return result


def _chown_to_pg(path: Path) -> None:
    user = _pg_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def postgres_answers(dsn: str, timeout: int = 5) -> bool:
    import psycopg2

    try:
        with contextlib.closing(psycopg2.connect(dsn, connect_timeout=timeout)) as conn:
            conn.cursor().execute("select 1")
    except psycopg2.Error:
        return False
    return True


def _postmaster_pid(data_dir: Path) -> int | None:
    return processes.read_pid(data_dir / "postmaster.pid")


def postgres_status(settings: Settings) -> ServiceStatus:
    if not settings.uses_embedded_postgres:
        ok = postgres_answers(settings.postgres_conninfo())
        # The DSN may hold a password: show only that it is external.
        return ServiceStatus("postgres", ok, "POSTGRES_DSN", external=True,
                             note="" if ok else "not answering")
    address = f"127.0.0.1:{settings.postgres_port}"
    data_dir = postgres_data_dir(settings)
    pid = _postmaster_pid(data_dir)
    note = ""
    if pid is not None and not _pid_alive(pid, POSTGRES_HINT):
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        note = f"removed stale PID file postmaster.pid (pid {pid} is gone)"
        log.info("postgres: %s", note)
        pid = None
    if pid is None and _port_open(settings.postgres_port):
        note = f"port {settings.postgres_port} is used by another process (POSTGRES_PORT)"
    return ServiceStatus("postgres", pid is not None, address, pid=pid, note=note)


def _socket_dir(data_dir: Path) -> str:
    # Unix socket paths are limited to ~107 bytes; we connect over TCP anyway, so a long path disables it.
    return str(data_dir) if len(str(data_dir)) < 80 else ""


def start_postgres(settings: Settings, timeout: int = 60) -> ServiceStatus:
    """Start the private cluster (initdb on first use) or check the external one; create the database.

    Also makes sure every login needs the password (see `_secure_postgres`)."""
    if not settings.uses_embedded_postgres:
        if not postgres_answers(settings.postgres_conninfo(), timeout=10):
            raise ServiceError("the external PostgreSQL at POSTGRES_DSN does not answer; check it is up, "
                               "or unset POSTGRES_DSN to use the embedded cluster")
        return postgres_status(settings)
    t0 = time.monotonic()
    with _postgres_lock(settings):  # two `up`s at once (parallel test sessions) must not both migrate
        current = postgres_status(settings)
        data_dir = postgres_data_dir(settings)
        if current.running:
            log.info("postgres: already running (pid %s) on %s", current.pid, current.address)
            if _secure_postgres(settings, data_dir, running=True):  # it stopped the server to do so
                current = postgres_status(settings)
        else:
            if _port_open(settings.postgres_port):
                raise _busy_port_error(settings.postgres_port, "POSTGRES_PORT")
            if not (data_dir / "PG_VERSION").exists():
                _initdb(settings, data_dir)
            else:
                _secure_postgres(settings, data_dir, running=False)
        if not current.running:
            _pg_ctl_start(settings, data_dir, timeout)
        _ensure_database(settings)
    status = postgres_status(settings)
    if not current.running:
        log.info("postgres: up in %.1f s on %s (data %s, log %s)", time.monotonic() - t0, status.address,
                 data_dir, postgres_log_file(settings))
    return status


def _pg_ctl_start(settings: Settings, data_dir: Path, timeout: int) -> None:
    log_file = postgres_log_file(settings)
    if not log_file.parent.exists():
        log_file.parent.mkdir(parents=True)
        if log_file.parent.parent == data_dir:
            _chown_to_pg(log_file.parent)
    log_file.touch()
    _chown_to_pg(log_file)  # pg_ctl opens it as the server's user
    opts = (f"-p {settings.postgres_port} -k '{_socket_dir(data_dir)}' "
            "-c listen_addresses=127.0.0.1")
    result = _pg_run(["pg_ctl", "-D", str(data_dir), "-o", opts, "-l", str(log_file), "-w",
                      "-t", str(timeout), "start"], cwd=data_dir, check=False)
    if result.returncode != 0:
        raise ServiceError(f"PostgreSQL did not start (pg_ctl exit {result.returncode}): "
                           f"{result.stderr.strip()}\nlast lines of {log_file}:\n{_tail(log_file)}")


@contextlib.contextmanager
def _postgres_lock(settings: Settings) -> Iterator[None]:
    path = settings.path(settings.state_dir) / "postgres.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL password authentication ----------------------------------------------------------------
AUTH_METHOD = "scram-sha-256"
PG_HBA = f"""\
# Written by tootlake (pipelines/ops/services.py): every login needs the password ({AUTH_METHOD}).
# The password is in <state>/postgres.pgpass of the project that runs this cluster.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  {AUTH_METHOD}
host    all       all   127.0.0.1/32   {AUTH_METHOD}
host    all       all   ::1/128        {AUTH_METHOD}
"""


def _new_password() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits, [A-Za-z0-9_-]: no quoting needed anywhere


def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802 / 7677), computed here so that the
    password itself never reaches the server, its logs or any statement text. `password` is ASCII (no
    SASLprep needed)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _alter_password_sql(settings: Settings, password: str) -> str:
    role = '"' + settings.postgres_user.replace('"', '""') + '"'
    return f"ALTER ROLE {role} PASSWORD '{_scram_verifier(password)}'"


def _write_passfile(settings: Settings, password: str) -> None:
    """`<state>/postgres.pgpass`: 0600, owned by us (the server's user never reads it)."""
    write_private_file(settings.postgres_passfile, pgpass_line(password) + pgpass_line(password, "localhost"))


def _hba_trusts(data_dir: Path) -> bool:
    """True when pg_hba.conf lets anyone in without a password (`trust`, as tootlake once wrote it)."""
    for line in (data_dir / "pg_hba.conf").read_text().splitlines():
        if "trust" in line.split("#", 1)[0].split():
            return True
    return False


def _write_hba(data_dir: Path) -> None:
    # in place: the file keeps its owner (the server's user) and its mode
    with open(data_dir / "pg_hba.conf", "w") as out:
        out.write(PG_HBA)


def _initdb(settings: Settings, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    _chown_to_pg(data_dir)
    password = _new_password()
    _write_passfile(settings, password)
    # initdb reads the password from a file, as the server's user: a private folder of that user next to
    # the data directory (initdb wants the data directory itself empty), removed right after.
    pw_dir = Path(tempfile.mkdtemp(prefix=".tootlake-initdb-", dir=data_dir.parent))
    try:
        pwfile = pw_dir / "pwfile"
        write_private_file(pwfile, password + "\n")
        _chown_to_pg(pwfile)
        _chown_to_pg(pw_dir)
        log.info("postgres: initdb %s (%s auth, password in %s)", data_dir, AUTH_METHOD,
                 settings.postgres_passfile)
        _pg_run(["initdb", "-D", str(data_dir), "-A", AUTH_METHOD, f"--pwfile={pwfile}",
                 "-U", settings.postgres_user, "-E", "UTF8", "--locale=C.UTF-8"], cwd=data_dir)
    finally:
        shutil.rmtree(pw_dir, ignore_errors=True)


def _secure_postgres(settings: Settings, data_dir: Path, running: bool) -> bool:
    """Make an existing cluster ask every login for the password of its password file.

    - `trust` in pg_hba.conf (a cluster of an older tootlake): a new password is set, pg_hba.conf is
      rewritten and, when the server runs, reloaded in place (its sessions go on; the data is untouched);
    - password file missing (deleted with the state folder while the data lives in /var/tmp, say): a new
      password is set in single-user mode, the server being stopped for that when it runs.
    Returns True when it stopped the running server (the caller starts it again).
    """
    trust = _hba_trusts(data_dir)
    if not trust and settings.postgres_passfile.exists():
        return False
    password = _new_password()
    if trust:
        log.info("postgres: %s lets anyone log in without a password (trust auth, from an older tootlake): "
                 "switching it to %s with a new password in %s; the data stays",
                 data_dir, AUTH_METHOD, settings.postgres_passfile)
    else:
        log.info("postgres: the password file %s is missing: setting a new password for role %s",
                 settings.postgres_passfile, settings.postgres_user)
    stopped = False
    if running and trust:
        _set_password_online(settings, password)
    else:
        if running:
            log.info("postgres: stopping the server to set the password")
            stop_postgres(settings)
            stopped = True
        _set_password_single_user(settings, data_dir, password)
    _write_passfile(settings, password)
    if trust:
        _write_hba(data_dir)
        if running and not stopped:
            _pg_run(["pg_ctl", "-D", str(data_dir), "reload"], cwd=data_dir)
            _wait_password_required(settings)
    return stopped


def _set_password_online(settings: Settings, password: str) -> None:
    import psycopg2

    trusted = conninfo(host="127.0.0.1", port=settings.postgres_port, dbname="postgres",
                       user=settings.postgres_user, connect_timeout=10)
    try:
        with contextlib.closing(psycopg2.connect(trusted)) as conn:
            conn.autocommit = True
            conn.cursor().execute(_alter_password_sql(settings, password))
    except psycopg2.Error as exc:
        raise ServiceError(f"could not set the password of role {settings.postgres_user} on the running "
                           f"cluster: {str(exc).strip()}") from None


def _set_password_single_user(settings: Settings, data_dir: Path, password: str) -> None:
    result = _pg_run(["postgres", "--single", "-D", str(data_dir), "postgres"], cwd=data_dir,
                     stdin_text=_alter_password_sql(settings, password) + ";\n", check=False)
    output = f"{result.stdout}{result.stderr}"
    if result.returncode != 0 or "ERROR:" in output:
        errors = [line.strip() for line in output.splitlines() if "ERROR" in line or "FATAL" in line]
        raise ServiceError(f"could not set the password of role {settings.postgres_user} in {data_dir} "
                           "(POSTGRES_USER must be the role the cluster was created with): "
                           + ("; ".join(errors) or f"exit {result.returncode}"))


def _wait_password_required(settings: Settings, timeout: float = 10.0) -> None:
    """After a reload, until a login without password is refused (the postmaster rereads pg_hba.conf on
    SIGHUP, asynchronously)."""
    bare = conninfo(host="127.0.0.1", port=settings.postgres_port, dbname="postgres",
                    user=settings.postgres_user, passfile=settings.postgres_passfile.with_name("none"))
    if not processes.wait_until(lambda: not postgres_answers(bare, timeout=2), timeout, every=0.1):
        raise ServiceError("PostgreSQL still lets logins in without a password after reloading "
                           f"pg_hba.conf; see {postgres_log_file(settings)}")


def _ensure_database(settings: Settings) -> None:
    import psycopg2

    # the cluster's own password file, whatever POSTGRES_PASSWORD says (that one is for clients)
    admin = conninfo(host="127.0.0.1", port=settings.postgres_port, dbname="postgres",
                     user=settings.postgres_user, passfile=settings.postgres_passfile, connect_timeout=10)
    try:
        conn = psycopg2.connect(admin)
    except psycopg2.OperationalError as exc:
        if "password" not in str(exc):
            raise
        raise ServiceError(
            f"the embedded PostgreSQL refused the password in {settings.postgres_passfile} "
            f"({str(exc).strip().splitlines()[0]}); delete that file and run `tootlake services up` again: "
            "it sets a new password (the data stays)") from None
    with contextlib.closing(conn):
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        cur = conn.cursor()
        cur.execute("select 1 from pg_database where datname = %s", (settings.postgres_db,))
        if cur.fetchone() is None:
            log.info("postgres: creating database %s", settings.postgres_db)
            cur.execute(f'create database "{settings.postgres_db}"')


def stop_postgres(settings: Settings, timeout: int = int(STOP_TIMEOUT_S)) -> bool:
    """`pg_ctl stop -m fast`; returns True when it was running. External databases are left alone."""
    if not settings.uses_embedded_postgres:
        return False
    current = postgres_status(settings)
    if not current.running or current.pid is None:
        return False
    data_dir = postgres_data_dir(settings)
    log.info("postgres: stopping (pid %d)", current.pid)
    result = _pg_run(["pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "-t", str(timeout), "stop"],
                     cwd=data_dir, check=False)
    if result.returncode != 0 and _pid_alive(current.pid, POSTGRES_HINT):
        log.warning("postgres: pg_ctl stop failed (%s); terminating", result.stderr.strip())
        _terminate(current.pid, POSTGRES_HINT, "postgres", timeout)
    return True


# --- s3proxy (S3-compatible object storage over a folder) ------------------------------------------------
S3PROXY_MAIN = "org.gaul.s3proxy.Main"
S3PROXY_START_TIMEOUT_S = 120.0


def _s3proxy_dir(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / "s3proxy"


def s3proxy_pid_file(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / "s3proxy.pid"


def s3proxy_log_file(settings: Settings) -> Path:
    return settings.path(settings.log_dir) / "s3proxy.log"


def _s3proxy_classpath(settings: Settings) -> str:
    jars = settings.path(settings.jars_dir) / "s3proxy"
    if not any(jars.glob("s3proxy-*.jar")):
        raise ServiceError(f"no s3proxy jars in {jars}: run `make setup-objectstore` first")
    return f"{jars}/*"


def _s3proxy_keys(settings: Settings) -> tuple[str, str]:
    """The embedded store's key pair: S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY when set, else the generated
    pair of `<state>/s3proxy.keys.json` (made on first start, mode 0600)."""
    keys = settings.s3_keys()
    if keys is None:
        keys = (f"tootlake-{secrets.token_hex(8)}", secrets.token_urlsafe(32))
        write_private_file(settings.s3_credentials_file,
                           json.dumps({"access_key_id": keys[0], "secret_access_key": keys[1]}))
    return keys


def _s3proxy_properties(settings: Settings, data_dir: Path, keys: tuple[str, str]) -> str:
    return "\n".join([
        "# written by tootlake services up (secret inside: mode 0600); edit settings (S3*) instead",
        f"s3proxy.endpoint=http://127.0.0.1:{settings.s3proxy_port}",
        "s3proxy.authorization=aws-v2-or-v4",
        f"s3proxy.identity={keys[0]}",
        f"s3proxy.credential={keys[1]}",
        "jclouds.provider=filesystem",
        f"jclouds.filesystem.basedir={data_dir}",
        "",
    ])


def s3_answers(settings: Settings) -> bool:
    """True when the object store answers an authenticated request (the lake's bucket need not exist)."""
    from tootlake.pipelines import storage

    try:
        storage.s3_filesystem(settings).get_file_info("tootlake-probe-bucket")
    except OSError:
        return False
    return True


def s3proxy_status(settings: Settings) -> ServiceStatus:
    address = settings.s3_endpoint_url()
    if not settings.uses_embedded_s3:
        ok = s3_answers(settings)
        return ServiceStatus("s3", ok, address, external=True, note="" if ok else "not answering")
    pid_file = s3proxy_pid_file(settings)
    pid = processes.read_pid(pid_file)
    note = ""
    if pid is not None and not _pid_alive(pid, S3PROXY_MAIN):
        pid_file.unlink(missing_ok=True)
        note = f"removed stale PID file {pid_file.name} (pid {pid} is gone)"
        pid = None
    if pid is None and _port_open(settings.s3proxy_port):
        note = f"port {settings.s3proxy_port} is used by another process (S3PROXY_PORT)"
    return ServiceStatus("s3", pid is not None, address, pid=pid, note=note)


def _buckets(settings: Settings) -> list[str]:
    from tootlake.pipelines.settings import is_object_store

    found = []
    for location in (settings.lake_dir, settings.checkpoint_dir):
        if is_object_store(location):
            found.append(str(location).removeprefix("s3a://").split("/", 1)[0])
    return sorted(set(found))


def _create_buckets(settings: Settings) -> None:
    from tootlake.pipelines import storage

    for bucket in _buckets(settings):
        try:
            storage.ensure_bucket(settings, f"s3a://{bucket}")
        except OSError as exc:
            raise ServiceError(f"could not create bucket {bucket} at {settings.s3_endpoint_url()}: "
                               f"{exc}") from None


def start_s3proxy(settings: Settings, timeout: float = S3PROXY_START_TIMEOUT_S) -> ServiceStatus:
    """Start the embedded object store (or check the external one) and create the lake's bucket."""
    if not settings.uses_embedded_s3:
        if not s3_answers(settings):
            raise ServiceError(f"the object store at S3_ENDPOINT={settings.s3_endpoint_url()} does not "
                               "answer; check it is up and the S3_* settings (keys, region, path style)")
        return s3proxy_status(settings)
    current = s3proxy_status(settings)
    if current.running:
        log.info("s3proxy: already running (pid %s) on %s", current.pid, current.address)
        _create_buckets(settings)
        return current
    if _port_open(settings.s3proxy_port):
        raise _busy_port_error(settings.s3proxy_port, "S3PROXY_PORT")
    t0 = time.monotonic()
    sdir = _s3proxy_dir(settings)
    data_dir = sdir / "data"
    log_dir = settings.path(settings.log_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    props = sdir / "s3proxy.properties"
    write_private_file(props, _s3proxy_properties(settings, data_dir, _s3proxy_keys(settings)))
    cmd = [_java(), f"-Xmx{settings.s3proxy_heap}", "-Djava.awt.headless=true", "-DLOG_LEVEL=warn",
           "-cp", _s3proxy_classpath(settings), S3PROXY_MAIN, "--properties", str(props)]
    with open(s3proxy_log_file(settings), "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=sdir, start_new_session=True)
    s3proxy_pid_file(settings).write_text(f"{proc.pid}\n")
    log.info("s3proxy: starting (pid %d) on %s, buckets in %s", proc.pid, settings.s3_endpoint_url(),
             data_dir)

    def answers() -> bool:
        if proc.poll() is not None:
            raise ServiceError("s3proxy exited during start-up; last lines of "
                               f"{s3proxy_log_file(settings)}:\n{_tail(s3proxy_log_file(settings))}")
        return _port_open(settings.s3proxy_port) and s3_answers(settings)

    try:
        if not processes.wait_until(answers, timeout, every=0.5):
            raise ServiceError(f"s3proxy did not answer on {settings.s3_endpoint_url()} within "
                               f"{timeout:.0f} s; see {s3proxy_log_file(settings)}")
        _create_buckets(settings)
    except ServiceError:
        _terminate(proc.pid, S3PROXY_MAIN, "s3proxy", timeout=5)
        s3proxy_pid_file(settings).unlink(missing_ok=True)
        raise
    log.info("s3proxy: up in %.1f s", time.monotonic() - t0)
    return ServiceStatus("s3", True, settings.s3_endpoint_url(), pid=proc.pid)


def stop_s3proxy(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the embedded object store; returns True when it was running (the data folder stays)."""
    current = s3proxy_status(settings) if settings.uses_embedded_s3 else None
    if current is None:  # the lake may have moved back to a local folder: stop a running one anyway
        pid = processes.read_pid(s3proxy_pid_file(settings))
        if pid is None or not _pid_alive(pid, S3PROXY_MAIN):
            return False
        current = ServiceStatus("s3", True, "", pid=pid)
    if not current.running or current.pid is None:
        return False
    log.info("s3proxy: stopping (pid %d)", current.pid)
    _terminate(current.pid, S3PROXY_MAIN, "s3proxy", timeout)
    s3proxy_pid_file(settings).unlink(missing_ok=True)
    return True


# --- all -----------------------------------------------------------------------------------------------
def ensure_services(settings: Settings, kafka: bool = True, postgres: bool = True,
                    s3: bool = True) -> list[ServiceStatus]:
    """Start (or check) the requested services; returns once each answers, raises ServiceError otherwise.
    The object store only when the lake or checkpoints are on s3a://."""
    statuses = []
    if s3 and settings.uses_object_store:
        statuses.append(start_s3proxy(settings))
    if kafka:
        statuses.append(start_kafka(settings))
    if postgres:
        statuses.append(start_postgres(settings))
    return statuses


def services_status(settings: Settings) -> list[ServiceStatus]:
    statuses = [kafka_status(settings), postgres_status(settings)]
    if settings.uses_object_store:
        statuses.append(s3proxy_status(settings))
    return statuses


def stop_services(settings: Settings, kafka: bool = True, postgres: bool = True,
                  s3: bool = True) -> list[str]:
    """Stop the embedded services; returns the names of those that were running."""
    stopped = []
    if kafka and stop_kafka(settings):
        stopped.append("kafka")
    if postgres and stop_postgres(settings):
        stopped.append("postgres")
    if s3 and stop_s3proxy(settings):
        stopped.append("s3proxy")
    return stopped
