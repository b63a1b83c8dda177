"""pipelines.lake.Lake: the one home of Delta I/O (delta-rs half without a JVM, Spark half with a session)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from delta.exceptions import ConcurrentAppendException, MetadataChangedException
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

from tootlake.pipelines.jobs.isolation import is_record_level
from tootlake.pipelines.lake import CHANGE_FEED, Lake, commit_conflicts


@pytest.fixture
def lake(settings, tmp_path) -> Lake:
    return Lake(settings.model_copy(update={"lake_dir": tmp_path / "lake"}))


def test_exists_needs_a_commit_not_just_a_folder(lake):
    assert not lake.exists("dq.metrics")
    (lake.path("dq.metrics") / "_delta_log").mkdir(parents=True)
    assert not lake.exists("dq.metrics")
    write_deltalake(lake.location("dq.metrics"), pa.table({"x": [1]}), mode="overwrite")
    assert lake.exists("dq.metrics")


def test_append_arrow_is_idempotent_per_transaction_id(lake):
    rows = pa.table({"x": [1, 2]})
    assert lake.append_arrow("dq.metrics", rows, txn=("app", 0))  # creates the table
    assert not lake.append_arrow("dq.metrics", rows, txn=("app", 0)), "a replay commits nothing"
    assert lake.append_arrow("dq.metrics", rows, txn=("other-app", 0))
    assert lake.append_arrow("dq.metrics", rows, txn=("app", 1))
    assert lake.append_arrow("dq.metrics", rows)  # no txn: always appends
    assert lake.arrow("dq.metrics").num_rows == 8
    assert lake.table("dq.metrics").transaction_version("app") == 1


def test_history_is_newest_first_with_rows_written(lake):
    lake.append_arrow("gold.t", pa.table({"x": [1, 2, 3]}))
    lake.append_arrow("gold.t", pa.table({"x": [4]}))
    commits = lake.history("gold.t")
    assert [c.version for c in commits] == [1, 0]
    assert [c.rows_written for c in commits] == [1, 3]
    assert lake.last_commit_rows("gold.t") == 1


def test_the_spark_half_needs_a_session(lake):
    from tootlake.pipelines.lake import LakeError

    with pytest.raises(LakeError, match="SparkSession"):
        lake.read("silver.posts")


def test_commit_conflicts_are_delta_classes_and_never_record_level():
    conflicts = commit_conflicts()
    assert CommitFailedError in conflicts and ConcurrentAppendException in conflicts
    assert MetadataChangedException in conflicts
    # The class decides, whatever the message says.
    assert not is_record_level(ConcurrentAppendException("files were added by a concurrent update"))
    assert not is_record_level(CommitFailedError("x"))
    assert is_record_level(ValueError("ConcurrentAppend in a post's text"))


# --- the Spark half -----------------------------------------------------------------------------------
def test_append_unseen_skips_rows_the_table_holds_null_safe(spark, lake):
    lake = Lake(lake.settings, spark)
    schema = "p int, o long, value string"
    identity = ("p", "o", "value")
    first = spark.createDataFrame([(0, 1, "a"), (0, 2, None)], schema)
    lake.append_unseen("silver.q", first, identity, skip_by="o")  # creates the table
    again = spark.createDataFrame([(0, 1, "a"), (0, 2, None), (0, 3, "c"), (None, None, "d")], schema)
    lake.append_unseen("silver.q", again, identity, skip_by="o")
    lake.append_unseen("silver.q", again, identity, skip_by="o")
    rows = sorted(lake.read("silver.q").collect(), key=lambda r: r["value"] or "")
    assert [(r["p"], r["o"], r["value"]) for r in rows] == [(0, 2, None), (0, 1, "a"), (0, 3, "c"),
                                                            (None, None, "d")]
    # with a txn id, a replayed micro-batch commits nothing, even rows the table does not hold
    version = lake.table("silver.q").version()
    lake.append_unseen("silver.q", spark.createDataFrame([(1, 9, "e")], schema), identity, txn=("w", 4))
    lake.append_unseen("silver.q", spark.createDataFrame([(1, 10, "f")], schema), identity, txn=("w", 4))
    assert lake.table("silver.q").version() == version + 1
    assert lake.read("silver.q").count() == 5


def test_ensure_change_feed_turns_it_on_once(spark, lake):
    lake = Lake(lake.settings, spark)
    lake.create("silver.t", spark.createDataFrame([], "id long").schema)
    assert not lake.change_feed_enabled("silver.t")
    said: list[str] = []
    lake.ensure_change_feed("silver.t", log=said.append)
    lake.ensure_change_feed("silver.t", log=said.append)
    assert lake.change_feed_enabled("silver.t") and len(said) == 1
    assert lake.detail("silver.t")["properties"][CHANGE_FEED] == "true"
    lake.append("silver.t", spark.createDataFrame([(1,)], "id long"))
    changes = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 2) \
        .load(lake.location("silver.t")).collect()
    assert [(r["id"], r["_change_type"]) for r in changes] == [(1, "insert")]
