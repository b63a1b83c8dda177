"""Object storage: the whole pipeline (`run --once`: bronze, silver, gold, gold stream, sync) on a lake and
checkpoints at s3a:// URIs served by the embedded S3-compatible store (s3proxy, started here like
`services up` does), compared with the same run on a local lake: same table row counts, equal gold tables.
`tootlake sql` (DuckDB over delta-rs) and `tootlake status` read the tables on the store.

`make test-objectstore` runs this file; it needs jars/s3a and jars/s3proxy (`make setup`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest

from tootlake.pipelines import lake as lake_tools
from tootlake.pipelines.databases.dbinit import init_postgres
from tootlake.pipelines.ops import services
from tootlake.pipelines.ops.drill import drill_settings
from tootlake.pipelines.ops.status import collect_status
from tootlake.pipelines.ops.supervisor import run_once, settings_env
from tootlake.pipelines.settings import Settings, write_secrets_file
from tootlake.pipelines.source.mastodon import replay_source
from tootlake.pipelines.source.producer import produce_events

# Not yet in `make test`: silver and sync still fail on s3a (see the README's object storage status).
# `make test-objectstore` sets TOOTLAKE_OBJECTSTORE_TESTS=1.
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("TOOTLAKE_OBJECTSTORE_TESTS") != "1",
                                 reason="object-store run: `make test-objectstore` (work in progress)")]

S3PROXY_PORT = int(os.environ.get("TOOTLAKE_TEST_S3PROXY_PORT", 29000))
BUCKET = "tootlake-test"
POSTS = 200
# columns that say when a row was written, not what it holds: they differ between two runs
RUN_TIME_COLUMNS = {"ingested_at", "ingest_date", "kafka_timestamp", "updated_at", "processed_at",
                    "quarantined_at", "last_batch_id", "synced_at"}


@pytest.fixture(scope="module")
def s3proxy(settings: Settings) -> Iterator[Settings]:
    """The embedded object store on the test port, with the test services' state; stopped at the end
    when this module started it."""
    store = settings.model_copy(update={"s3proxy_port": S3PROXY_PORT,
                                        "lake_dir": f"s3a://{BUCKET}/probe/lake"})
    was_running = services.s3proxy_status(store).running
    try:
        services.start_s3proxy(store)
    except services.ServiceError as exc:
        pytest.fail(f"could not start s3proxy for the tests: {exc}", pytrace=False)
    yield store
    if not was_running:
        services.stop_s3proxy(store)


def _pipeline_settings(base: Settings, scratch, name: str, topic: str, lake: str | None = None) -> Settings:
    own = drill_settings(base, scratch, name).model_copy(update={"kafka_topic": topic})
    if lake is not None:
        own = own.model_copy(update={"lake_dir": f"{lake}/lake", "checkpoint_dir": f"{lake}/checkpoints"})
    return own


def _run_once(own: Settings) -> float:
    services.ensure_services(own)  # creates the run's database (and the bucket on the store)
    init_postgres(own.postgres_conninfo(), log=lambda _line: None)  # as `tootlake run` does
    lines: list[str] = []
    started = time.monotonic()
    code = run_once(own, log=lines.append)
    elapsed = time.monotonic() - started
    assert code == 0, "run --once failed:\n" + "\n".join(lines)
    return elapsed


def _comparable(table: pa.Table) -> list[str]:
    columns = sorted(c for c in table.column_names if c not in RUN_TIME_COLUMNS)
    rows = table.select(columns).to_pylist()
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def test_run_once_on_an_s3a_lake_matches_the_local_lake(settings, s3proxy, kafka_bootstrap, postgres_conninfo,
                                                         shared_data, tmp_path, unique_name, capsys) -> None:
    import psycopg2.extensions

    port = int(psycopg2.extensions.parse_dsn(postgres_conninfo)["port"])
    base = s3proxy.model_copy(update={"postgres_port": port})
    report = produce_events(base.model_copy(update={"kafka_topic": unique_name}),
                            replay_source(base, rate=0.0), max_events=POSTS)
    assert report.delivered == POSTS
    prefix = f"s3a://{BUCKET}/{uuid.uuid4().hex[:12]}"
    local = _pipeline_settings(base, tmp_path / "local", f"{unique_name}_l", unique_name)
    remote = _pipeline_settings(base, tmp_path / "s3", f"{unique_name}_s", unique_name, lake=prefix)
    assert remote.uses_embedded_s3 and remote.table_uri("silver.posts").startswith(prefix)

    local_s = _run_once(local)
    remote_s = _run_once(remote)
    with capsys.disabled():
        print(f"\n[objectstore] run --once on {POSTS} posts: local lake {local_s:.1f} s, "
              f"s3a lake {remote_s:.1f} s (ratio {remote_s / local_s:.2f})")

    local_tables, remote_tables = lake_tools.list_tables(local), lake_tools.list_tables(remote)
    assert set(remote_tables) == set(local_tables)
    assert {"bronze.posts_raw", "silver.posts", "gold.posts_daily"} <= set(remote_tables)
    assert all(str(location).startswith(prefix) for location in remote_tables.values())
    for name in sorted(local_tables):
        here, there = lake_tools.read(local, name), lake_tools.read(remote, name)
        assert there.num_rows == here.num_rows, name
        if name.startswith("gold."):
            assert _comparable(there) == _comparable(here), f"{name} differs between the lakes"
    bronze = lake_tools.read(remote, "bronze.posts_raw", columns=["key"])
    assert bronze.num_rows == POSTS
    silver = lake_tools.read(remote, "silver.posts", columns=["post_id", "threat_level", "scoring_note"])
    # every post scored, or left unscored on purpose (language outside the models' coverage: a note)
    levels, notes = silver.column("threat_level").to_pylist(), silver.column("scoring_note").to_pylist()
    assert all(level is not None or note is not None for level, note in zip(levels, notes, strict=True))
    assert sorted(silver.column("post_id").to_pylist()) == sorted(
        lake_tools.read(local, "silver.posts", columns=["post_id"]).column("post_id").to_pylist())

    # nothing of the s3a run landed on the local disk
    assert not (tmp_path / "s3" / "lake").exists() and not (tmp_path / "s3" / "checkpoints").exists()

    # `tootlake status` reads the tables and the stream checkpoints on the store, and shows the store
    status = collect_status(remote)
    assert status["services"]["s3"]["up"], status["services"]["s3"]
    assert status["tables"]["silver.posts"]["rows"] == silver.num_rows
    assert status["stages"]["bronze"]["checkpoint"]["batch"] >= 0

    # `tootlake sql` in its own process, with the settings a stage would get (keys from the state folder)
    env = {**os.environ, **settings_env(remote)}
    secrets_file = write_secrets_file(remote)
    if secrets_file is not None:
        env["TOOTLAKE_SECRETS_FILE"] = str(secrets_file)
    try:
        result = subprocess.run([sys.executable, "-m", "tootlake.pipelines.cli", "sql", "--format", "json",
                                 "SELECT count(*) AS n FROM silver.posts"], env=env, capture_output=True,
                                text=True, timeout=300, cwd=str(remote.tootlake_home))
    finally:
        if secrets_file is not None:
            secrets_file.unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(silver.num_rows) in result.stdout
