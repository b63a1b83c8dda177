"""Session fixtures shared by every test: settings, the embedded services, a Spark session, the shared data.

Tests never touch the demo's services or lake: their settings use their own ports (Kafka 29092/29093,
PostgreSQL 29432; override with TOOTLAKE_TEST_KAFKA_PORT, TOOTLAKE_TEST_KAFKA_CONTROLLER_PORT,
TOOTLAKE_TEST_POSTGRES_PORT), their own service state and logs under var/test/, and a fresh temporary lake
and checkpoint folder per session. Kafka topics and PostgreSQL tables persist between sessions on the
test broker/cluster, so use a unique topic/table name per test (e.g. with `unique_name`).

Services: the `kafka_bootstrap` and `postgres_conninfo` fixtures start a service only when a test asks for
it. Outside CI, services are left running at the end (re-runs skip the ~10 s broker start, and several
pytest sessions may share them: stopping would pull them from under another session); stop them with
`make test-services-down`. With CI=true (or TOOTLAKE_STOP_SERVICES=1) the services this session started are
stopped at the end (ones already running are left alone). When KAFKA_BOOTSTRAP_SERVERS or POSTGRES_DSN is
set, that external service is used and never started or stopped.

The test cluster asks for its password (in var/test/state/postgres.pgpass): `postgres_conninfo` and
`settings.postgres_conninfo()` name that file. For processes a test starts with this session's environment
(and maybe only POSTGRES_PORT), `postgres_conninfo` also points TOOTLAKE_SECRETS_FILE at a 0600 file holding
the password, as `tootlake run` does for its stages, so their `load_settings()` finds it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tootlake.pipelines.ops import services
from tootlake.pipelines.settings import SECRETS_FILE_ENV, Settings, load_settings, write_secrets_file

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for tests: project paths, test ports, test service state, a temporary lake."""
    work = tmp_path_factory.mktemp("tootlake")
    return load_settings(
        tootlake_home=REPO_ROOT,
        state_dir=REPO_ROOT / "var" / "test" / "state",
        log_dir=REPO_ROOT / "var" / "test" / "log",
        lake_dir=work / "lake",
        checkpoint_dir=work / "checkpoints",
        shared_data_dir=SHARED_DATA,
        kafka_port=_port("TOOTLAKE_TEST_KAFKA_PORT", 29092),
        kafka_controller_port=_port("TOOTLAKE_TEST_KAFKA_CONTROLLER_PORT", 29093),
        postgres_port=_port("TOOTLAKE_TEST_POSTGRES_PORT", 29432),
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        spark_driver_memory="1g",
    )


class _ServiceGuard:
    """Remembers which services this session started, to stop exactly those at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: set[str] = set()

    def ensure(self, name: str) -> None:
        status_fn = services.kafka_status if name == "kafka" else services.postgres_status
        start_fn = services.start_kafka if name == "kafka" else services.start_postgres
        was_running = status_fn(self.settings).running
        try:
            start_fn(self.settings)
        except services.ServiceError as exc:
            pytest.fail(f"could not start {name} for the tests: {exc}", pytrace=False)
        if not was_running:
            self.started.add(name)

    def close(self) -> None:
        ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        if not (ci or os.environ.get("TOOTLAKE_STOP_SERVICES") == "1"):
            return
        if "kafka" in self.started:
            services.stop_kafka(self.settings)
        if "postgres" in self.started:
            services.stop_postgres(self.settings)


@pytest.fixture(scope="session")
def _service_guard(settings: Settings) -> Iterator[_ServiceGuard]:
    guard = _ServiceGuard(settings)
    yield guard
    guard.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings, _service_guard: _ServiceGuard) -> str:
    """Bootstrap servers of a broker that answers (the test broker, started if needed, or the external one).

    A test that stops the broker (fault injection) must call `services.start_kafka(settings)` before it ends.
    """
    _service_guard.ensure("kafka")
    return settings.bootstrap_servers


@pytest.fixture(scope="session")
def postgres_conninfo(settings: Settings, _service_guard: _ServiceGuard) -> Iterator[str]:
    """libpq conninfo of a PostgreSQL that answers, with the `tootlake` database created."""
    _service_guard.ensure("postgres")
    password = settings.postgres_password_value()
    secrets_file = None
    if settings.uses_embedded_postgres and password and SECRETS_FILE_ENV not in os.environ:
        with_password = settings.model_copy(update={"postgres_password": SecretStr(password)})
        secrets_file = write_secrets_file(with_password)
        os.environ[SECRETS_FILE_ENV] = str(secrets_file)
    yield settings.postgres_conninfo()
    if secrets_file is not None:
        os.environ.pop(SECRETS_FILE_ENV, None)
        secrets_file.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def spark(settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """One SparkSession (Delta + Kafka, local[2], 2 shuffle partitions) for the session (~30 s start)."""
    from tootlake.pipelines.spark import build_spark

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = build_spark(settings, "tootlake-tests", extra_conf={
        "spark.default.parallelism": "2",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    })
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the bundled real Mastodon data; read-only, never copy it into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (expected next to the repo)")
    return SHARED_DATA


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test run, for Kafka topics / tables on the long-lived test services."""
    base = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40].strip("_").lower()
    return f"t_{base}_{uuid.uuid4().hex[:8]}"
