"""Scale-out: the whole pipeline (`run --once`: bronze, silver, gold, gold stream, sync) on a Spark standalone
cluster (master + two workers on loopback) with the lake and checkpoints at s3a:// URIs served by the
embedded S3-compatible store (s3proxy, started here like `services up` does). One worker is SIGKILLed, with
its executor, while silver runs; the job goes on through Spark's task retries. Compared with the same run on
a local lake in local mode: same table row counts (nothing lost, nothing twice), equal gold tables.
`tootlake sql` (DuckDB over delta-rs) and `tootlake status` read the tables on the store.

Part of `make test`; `make test-objectstore` runs this file alone. It needs jars/s3a and jars/s3proxy
(`make setup-objectstore`, which `make test` runs)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from tootlake.pipelines import lake as lake_tools
from tootlake.pipelines.databases.dbinit import init_postgres
from tootlake.pipelines.ops import services
from tootlake.pipelines.ops.cluster import LocalCluster, local_cluster
from tootlake.pipelines.ops.drill import drill_settings
from tootlake.pipelines.ops.status import collect_status
from tootlake.pipelines.ops.supervisor import run_once, settings_env, stage_log_dir
from tootlake.pipelines.settings import Settings, write_secrets_file
from tootlake.pipelines.source.mastodon import replay_source
from tootlake.pipelines.source.producer import produce_events

pytestmark = pytest.mark.integration

S3PROXY_PORT = int(os.environ.get("TOOTLAKE_TEST_S3PROXY_PORT", 29000))
MASTER_PORT = int(os.environ.get("TOOTLAKE_TEST_OBJECTSTORE_MASTER_PORT", 27177))
UI_PORT = int(os.environ.get("TOOTLAKE_TEST_OBJECTSTORE_UI_PORT", 28180))
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


def _run_once(own: Settings) -> tuple[float, list[str]]:
    """Seconds the whole `run --once` took, and its per-stage lines (`silver: ok in 41 s`)."""
    services.ensure_services(own)  # creates the run's database (and the bucket on the store)
    init_postgres(own.postgres_conninfo(), log=lambda _line: None)  # as `tootlake run` does
    lines: list[str] = []
    started = time.monotonic()
    code = run_once(own, log=lines.append)
    elapsed = time.monotonic() - started
    assert code == 0, "run --once failed:\n" + "\n".join(lines) + "\n" + _stage_logs(own)
    return elapsed, [line.removeprefix("[run --once] ") for line in lines if line.startswith("[run --once]")]


def _stage_logs(own: Settings) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                     for path in sorted(stage_log_dir(own).glob("*.log")))


def _python_children(pids: list[int]) -> list[int]:
    """Processes whose parent is one of `pids` (an executor's Python workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent in pids and b"python" in (entry / "cmdline").read_bytes():
                    children.append(int(entry.name))
    return children


class WorkerKiller(threading.Thread):
    """Watches the cluster; once the app `app_name` runs Python tasks (its executor on a worker has Python
    workers), SIGKILLs that worker with its executor, as if the machine died."""

    def __init__(self, cluster: LocalCluster, app_name: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.app_name = cluster, app_name
        self.done = threading.Event()
        self.killed: dict | None = None

    def run(self) -> None:
        while not self.done.is_set() and self.killed is None:
            with contextlib.suppress(OSError, ValueError):
                apps = [a for a in self.cluster.state().get("activeapps", []) if a["name"] == self.app_name]
                for n in (1, 2):
                    executors = self.cluster.executor_pids(n)
                    if apps and _python_children(executors):
                        self.cluster.kill_worker(n)
                        self.killed = {"worker": n, "app": apps[0]["id"], "executors": executors}
                        return
            time.sleep(0.2)


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

    local_s, local_stages = _run_once(local)
    with local_cluster(tmp_path / "cluster", master_port=MASTER_PORT, ui_port=UI_PORT, workers=2) as cluster:
        remote = remote.model_copy(update={"spark_master": cluster.url, "spark_executor_memory": "768m",
                                           "spark_shuffle_partitions": 2})
        killer = WorkerKiller(cluster, "tootlake-silver")
        killer.start()
        try:
            remote_s, remote_stages = _run_once(remote)
        finally:
            killer.done.set()
            killer.join()
        state = cluster.state()
        survivor = cluster.worker_state(3 - killer.killed["worker"]) if killer.killed else {}
    with capsys.disabled():
        print(f"\n[objectstore] run --once on {POSTS} posts: local lake (local mode) {local_s:.1f} s, "
              f"s3a lake on a 2-worker cluster {remote_s:.1f} s (ratio {remote_s / local_s:.2f}); "
              f"killed during silver: {killer.killed}\n  local: {'; '.join(local_stages)}"
              f"\n  s3a:   {'; '.join(remote_stages)}")

    # every stage ran on the cluster; one worker died while silver ran Python tasks on it, and silver's
    # driver saw its executor go and carried on with the other worker
    assert killer.killed is not None, "silver ran no Python task on an executor: nothing was killed"
    apps = {app["name"]: app for app in state["completedapps"] + state["activeapps"]}
    stages = {"tootlake-bronze", "tootlake-silver", "tootlake-gold", "tootlake-gold-stream",
              "tootlake-sync-postgres"}
    assert stages <= set(apps), sorted(apps)
    assert [w["state"] for w in state["workers"]].count("ALIVE") == 1
    silver_id = apps["tootlake-silver"]["id"]
    assert any(e.get("appid") == silver_id for e in survivor["executors"] + survivor["finishedexecutors"])
    assert "Lost executor" in (stage_log_dir(remote) / "silver.log").read_text(errors="replace")

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
    assert len(set(silver.column("post_id").to_pylist())) == silver.num_rows  # nothing twice
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
