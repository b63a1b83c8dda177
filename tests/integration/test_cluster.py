"""Scale-out: the unchanged bronze and silver entry points on a Spark standalone cluster (master + two
workers from pyspark's spark-class, loopback), selected by SPARK_MASTER only. ~3-4 min on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tootlake.pipelines.ops.cluster import local_cluster
from tootlake.pipelines.ops.supervisor import settings_env
from tootlake.pipelines.source.mastodon import replay_source
from tootlake.pipelines.source.producer import produce_events

MASTER_PORT = int(os.environ.get("TOOTLAKE_TEST_SPARK_MASTER_PORT", 27077))
UI_PORT = int(os.environ.get("TOOTLAKE_TEST_SPARK_UI_PORT", 28080))
POSTS = 200


@pytest.mark.integration
def test_bronze_and_silver_on_a_standalone_cluster(settings, kafka_bootstrap, shared_data, tmp_path,
                                                   unique_name) -> None:
    conf = settings.model_copy(update={
        "kafka_topic": unique_name,
        "lake_dir": tmp_path / "lake",
        "checkpoint_dir": tmp_path / "checkpoints",
        "spark_executor_memory": "768m",
        "spark_shuffle_partitions": 2,
    })
    report = produce_events(conf, replay_source(conf, rate=0.0), max_events=POSTS)
    assert report.delivered == POSTS

    with local_cluster(tmp_path / "cluster", master_port=MASTER_PORT, ui_port=UI_PORT, workers=2) as cluster:
        env = {**os.environ, **settings_env(conf.model_copy(update={"spark_master": cluster.url}))}
        for job in ("bronze", "silver"):
            result = subprocess.run([sys.executable, "-m", f"tootlake.pipelines.jobs.{job}"], env=env,
                                    cwd=str(conf.tootlake_home), capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{job} failed on the cluster:\n{result.stdout[-3000:]}" \
                                           f"\n{result.stderr[-5000:]}"
        state = cluster.state()
        workers = [cluster.worker_state(n) for n in (1, 2)]

    # both applications ran on the cluster, with executors on both workers
    apps = {app["name"]: app for app in state["completedapps"] + state["activeapps"]}
    assert {"tootlake-bronze", "tootlake-silver"} <= set(apps), sorted(apps)
    assert len([w for w in state["workers"] if w["state"] == "ALIVE"]) == 2
    for name in ("tootlake-bronze", "tootlake-silver"):  # executors of each job on both workers
        ran_on = [w for w in workers
                  if any(e.get("appid") == apps[name]["id"] for e in w["executors"] + w["finishedexecutors"])]
        assert len(ran_on) == 2, f"{name} had executors on {len(ran_on)} worker(s)"

    bronze = DeltaTable(str(conf.table_path("bronze.posts_raw"))).to_pyarrow_table(columns=["key"])
    assert bronze.num_rows == POSTS
    silver = DeltaTable(str(conf.table_path("silver.posts"))).to_pyarrow_table(
        columns=["post_id", "threat_level", "sentiment_label", "scoring_note"])
    quarantine_path = conf.table_path("silver.posts_quarantine")
    quarantined = DeltaTable(str(quarantine_path)).to_pyarrow_table(columns=["key"]).num_rows \
        if (quarantine_path / "_delta_log").is_dir() else 0
    keys = len(pc.unique(bronze.column("key")))
    assert silver.num_rows + quarantined == keys
    # scored on the executors' Python workers; a post in a language outside the models' coverage is left
    # unscored on purpose (scoring_note set)
    covered = silver.filter(pc.is_null(silver.column("scoring_note")))
    assert covered.num_rows > 0
    assert covered.column("threat_level").null_count == 0
    assert covered.column("sentiment_label").null_count == 0
