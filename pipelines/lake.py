"""The lake by logical table name: the one home of Delta I/O.

`Lake(settings, spark=None)` owns every Delta read / write / MERGE / change feed / idempotent append /
history the jobs, data quality, status, the drill and the benchmarks do (delta-rs without a JVM, Spark
when given a session; Delta's exception classes, never message text). The module functions below are the
delta-rs tools for people: discovery, time travel, diff, restore, DuckDB.

Logical names are `<layer>.<table>` and map to `<lake>/<layer>/<table>` (see `Settings.table_uri`: the lake
is a local folder or an `s3a://bucket/prefix` URI, delta-rs reaching it with `Settings.delta_storage_options`,
Spark with `Settings.spark_s3a_conf`). The valid names are discovered by listing the lake (every folder with a
`_delta_log`), so a table written by a new job is usable here without a code change.

A table is read as of a version (`3`) or a timestamp (`2026-11-23T14:00:00`, UTC when no zone is given).
DuckDB sees every table as `layer.table` (a DuckDB schema per layer, a view per table over the delta-rs
Arrow dataset): no DuckDB extension is downloaded.
"""

from __future__ import annotations

import logging
import operator
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from tootlake.pipelines import storage
from tootlake.pipelines.settings import Settings, is_object_store

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the Spark half imports pyspark / delta-spark when used, so the delta-rs half needs no JVM
    from delta.tables import DeltaMergeBuilder
    from pyspark.sql import Column, DataFrame, Row, SparkSession
    from pyspark.sql.streaming import DataStreamWriter
    from pyspark.sql.types import StructType


@cache
def table_keys() -> dict[str, tuple[str, ...]]:
    """Row identity used by `diff`, per logical table: each declared table's key (tootlake.catalog.registry;
    imported on first use: the declarations import pyspark and pandas, which the delta-rs half needs not).
    A table without one (or whose key columns are not all present at both versions) is compared row by
    row: rows are then only added or removed, never changed."""
    from tootlake.catalog.registry import TABLES

    return {t.name: t.key for t in TABLES if t.key}


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LakeError(RuntimeError):
    """A table or version that does not exist; the message says what does."""


# --- discovery ----------------------------------------------------------------------------------------
def list_tables(settings: Settings) -> dict[str, Path | str]:
    """Every Delta table in the lake: {"layer.table": path (an s3a:// URI on object storage)}, sorted."""
    if is_object_store(settings.lake_dir):
        return _list_remote_tables(settings)
    lake = settings.path(settings.lake_dir)
    found: dict[str, Path | str] = {}
    if lake.is_dir():
        for log in sorted(lake.glob("*/*/_delta_log")):
            table_dir = log.parent
            layer, table = table_dir.parent.name, table_dir.name
            if _NAME.match(layer) and _NAME.match(table):  # usable as a DuckDB identifier
                found[f"{layer}.{table}"] = table_dir
    return found


def _list_remote_tables(settings: Settings) -> dict[str, Path | str]:
    lake = settings.location(settings.lake_dir)
    found: dict[str, Path | str] = {}
    for layer in storage.subfolders(settings, lake):
        for table in storage.subfolders(settings, f"{lake}/{layer}"):
            location = f"{lake}/{layer}/{table}"
            if (_NAME.match(layer) and _NAME.match(table)
                    and storage.is_folder(settings, f"{location}/_delta_log")):
                found[f"{layer}.{table}"] = location
    return dict(sorted(found.items()))


def table_path(settings: Settings, name: str) -> Path | str:
    """The folder (or s3a:// URI) of logical table `name`; LakeError naming the valid tables when it is not
    one."""
    tables = list_tables(settings)
    if name in tables:
        return tables[name]
    lake = settings.location(settings.lake_dir)
    if not tables:
        raise LakeError(f"no Delta tables under {lake} yet: run `tootlake demo` (or the layer jobs) first")
    raise LakeError(f"unknown table {name!r}; tables in {lake}: {', '.join(tables)}")


# --- versions -----------------------------------------------------------------------------------------
def parse_as_of(text: str | int | datetime | None) -> int | datetime | None:
    """`"3"` -> 3; an ISO timestamp -> an aware datetime (UTC when no zone is given); None stays None."""
    if text is None or isinstance(text, int | datetime):
        if isinstance(text, datetime) and text.tzinfo is None:
            return text.replace(tzinfo=UTC)
        return text
    value = str(text).strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LakeError(f"--as-of {value!r} is neither a version number nor an ISO timestamp "
                        "(e.g. 3 or 2026-11-23T14:00:00)") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def open_table(settings: Settings, name: str, as_of: str | int | datetime | None = None) -> DeltaTable:
    """The DeltaTable of `name`, loaded at `as_of` (version or timestamp; None = latest)."""
    path = table_path(settings, name)
    try:
        table = DeltaTable(str(path), storage_options=settings.delta_storage_options())
    except Exception as exc:  # e.g. an empty or damaged _delta_log
        raise LakeError(f"cannot open {name} at {path}: {exc}") from None
    when = parse_as_of(as_of)
    if when is None:
        return table
    latest = table.version()
    if isinstance(when, int) and not 0 <= when <= latest:
        raise LakeError(f"{name} has versions 0..{latest}; there is no version {when} "
                        f"(see `tootlake history {name}`)")
    if isinstance(when, datetime):
        first = min(datetime.fromtimestamp(int(c["timestamp"]) / 1000, tz=UTC) for c in table.history())
        if when < first:
            raise LakeError(f"{name} did not exist yet at {when.isoformat()}: its first version is from "
                            f"{first.isoformat()} (see `tootlake history {name}`)")
    try:
        table.load_as_version(when)
    except Exception as exc:  # delta-rs raises several types here; the message is what matters
        raise LakeError(f"cannot load {name} as of {as_of}: {exc} (see `tootlake history {name}`)") from None
    return table


def read(settings: Settings, name: str, as_of: str | int | datetime | None = None,
         columns: list[str] | None = None) -> pa.Table:
    """The whole table (or `columns`) at `as_of` as an Arrow table."""
    return open_table(settings, name, as_of).to_pyarrow_table(columns=columns)


# --- history ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Commit:
    version: int
    at: datetime
    operation: str
    rows_written: int | None  # rows the commit wrote (None when the engine did not record it)
    details: str  # the interesting operation parameters, e.g. mode=Overwrite


# operationMetrics keys that count written rows: Spark writes numOutputRows, delta-rs num_added_rows.
_ROWS_METRICS = ("numOutputRows", "num_added_rows")
_DETAIL_PARAMS = ("mode", "predicate", "matchedPredicates", "version", "timestamp", "outputMode", "epochId")


def _rows_written(metrics: dict[str, Any]) -> int | None:
    for key in _ROWS_METRICS:
        if key in metrics and metrics[key] not in (None, ""):
            return int(metrics[key])
    return None


def history(settings: Settings, name: str, limit: int | None = None) -> list[Commit]:
    """The table's commits, newest first."""
    return commits_of(open_table(settings, name), limit)


def commits_of(table: DeltaTable, limit: int | None = None) -> list[Commit]:
    """`DeltaTable.history()` as Commits, newest first."""
    commits = []
    for entry in table.history(limit):
        params = entry.get("operationParameters") or {}
        details = " ".join(f"{key}={params[key]}" for key in _DETAIL_PARAMS
                           if params.get(key) not in (None, ""))
        commits.append(Commit(
            version=int(entry["version"]),
            at=datetime.fromtimestamp(int(entry["timestamp"]) / 1000, tz=UTC),
            operation=str(entry.get("operation", "?")),
            rows_written=_rows_written(entry.get("operationMetrics") or {}),
            details=details,
        ))
    return sorted(commits, key=lambda commit: commit.version, reverse=True)


# --- diff ---------------------------------------------------------------------------------------------
@dataclass
class Diff:
    """What changed in a table between two versions, by key (or by whole row when `key` is empty)."""

    name: str
    from_version: int
    to_version: int
    key: tuple[str, ...]
    added: pa.Table
    changed: pa.Table  # the rows at `to_version` whose key existed before with other values
    removed: pa.Table
    changed_columns: dict[str, int] = field(default_factory=dict)  # column -> rows where it changed

    @property
    def counts(self) -> dict[str, int]:
        return {"added": self.added.num_rows, "changed": self.changed.num_rows,
                "removed": self.removed.num_rows}


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def diff_tables(old: pa.Table, new: pa.Table, key: tuple[str, ...] = ()) -> tuple[
        pa.Table, pa.Table, pa.Table, dict[str, int]]:
    """(added, changed, removed, changed_columns) between two Arrow tables, computed in DuckDB.

    With a key: added/removed = keys only in new/old, changed = keys in both whose other columns differ
    (null-safe). Without: the multiset difference of whole rows (changed is then empty).
    """
    con = duckdb.connect()
    con.register("old_rows", old)
    con.register("new_rows", new)
    if not key:
        added = con.sql("SELECT * FROM new_rows EXCEPT ALL SELECT * FROM old_rows").to_arrow_table()
        removed = con.sql("SELECT * FROM old_rows EXCEPT ALL SELECT * FROM new_rows").to_arrow_table()
        return added, new.schema.empty_table(), removed, {}
    on = " AND ".join(f"n.{_quote(k)} IS NOT DISTINCT FROM o.{_quote(k)}" for k in key)
    shared = [c for c in new.column_names if c in old.column_names and c not in key]
    differs = [f"n.{_quote(c)} IS DISTINCT FROM o.{_quote(c)}" for c in shared]
    added = con.sql(f"SELECT n.* FROM new_rows n ANTI JOIN old_rows o ON {on}").to_arrow_table()
    removed = con.sql(f"SELECT o.* FROM old_rows o ANTI JOIN new_rows n ON {on}").to_arrow_table()
    # A column added or dropped between the versions counts as a change of every row in both.
    schema_changed = set(new.column_names) != set(old.column_names)
    condition = "TRUE" if schema_changed else (" OR ".join(differs) or "FALSE")
    changed = con.sql(f"SELECT n.* FROM new_rows n JOIN old_rows o ON {on} WHERE {condition}")
    changed = changed.to_arrow_table()
    columns: dict[str, int] = {}
    if shared:
        sums = ", ".join(f"count(*) FILTER (WHERE {d})" for d in differs)
        row = con.sql(f"SELECT {sums} FROM new_rows n JOIN old_rows o ON {on}").fetchone()
        columns = {c: int(n) for c, n in zip(shared, row, strict=True) if n}
    return added, changed, removed, columns


def diff(settings: Settings, name: str, from_version: str | int, to_version: str | int) -> Diff:
    """Rows added / changed / removed in `name` between two versions (or timestamps)."""
    old_table = open_table(settings, name, from_version)
    new_table = open_table(settings, name, to_version)
    old, new = old_table.to_pyarrow_table(), new_table.to_pyarrow_table()
    key = table_keys().get(name, ())
    if not all(k in old.column_names and k in new.column_names for k in key):
        key = ()
    added, changed, removed, columns = diff_tables(old, new, key)
    return Diff(name, old_table.version(), new_table.version(), key, added, changed, removed, columns)


# --- restore ------------------------------------------------------------------------------------------
def restore(settings: Settings, name: str, to_version: str | int) -> dict[str, Any]:
    """Make `to_version` (version or timestamp) the table's content again, as a new commit (delta-rs).

    History is kept: the restore is itself a version, so it can be undone by restoring the version before it.
    """
    table = open_table(settings, name)
    target = parse_as_of(to_version)
    if isinstance(target, int) and not 0 <= target <= table.version():
        raise LakeError(f"{name} has versions 0..{table.version()}; there is no version {target}")
    try:
        return table.restore(target)
    except Exception as exc:
        raise LakeError(f"restore of {name} to {to_version} failed: {exc}") from None


# --- DuckDB -------------------------------------------------------------------------------------------
def parse_as_of_pins(pins: list[str] | None) -> dict[str, str]:
    """["silver.posts=3", ...] -> {"silver.posts": "3"}."""
    result: dict[str, str] = {}
    for pin in pins or []:
        name, sep, when = pin.partition("=")
        if not sep or not name.strip() or not when.strip():
            raise LakeError(f"--as-of {pin!r}: expected TABLE=VERSION or TABLE=TIMESTAMP, "
                            "e.g. silver.posts=3")
        result[name.strip()] = when.strip()
    return result


def duckdb_connect(settings: Settings,
                   as_of: dict[str, str | int] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB where every lake table is the view `layer.table` (at `as_of[name]` if given).

    Views are lazy Arrow datasets: only the tables a query reads are scanned. Session time zone is UTC so
    hour/day buckets match the Spark jobs.
    """
    tables = list_tables(settings)
    for name in as_of or {}:
        table_path(settings, name)  # fail early, listing the valid names
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in tables:
        layer, table = name.split(".")
        try:
            dataset = open_table(settings, name, (as_of or {}).get(name)).to_pyarrow_dataset()
        except Exception as exc:
            if name in (as_of or {}):
                raise
            # One unreadable table (a feature delta-rs lacks) must not block queries on the others.
            logger.warning(f"tootlake: table {name} is left out of DuckDB: {exc}")
            continue
        source = f"__{layer}__{table}"
        con.register(source, dataset)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        con.execute(f"CREATE OR REPLACE VIEW {layer}.{table} AS SELECT * FROM {source}")
    return con


def strip_sql(text: str) -> str:
    """A script's single statement without trailing semicolons / whitespace (so it can be wrapped)."""
    return text.strip().rstrip(";").strip()


def query(settings: Settings, sql: str, as_of: dict[str, str | int] | None = None) -> pa.Table:
    """Run one DuckDB statement over the lake; the result as an Arrow table."""
    con = duckdb_connect(settings, as_of)
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    finally:
        con.close()


# --- the Lake: the one home of Delta I/O --------------------------------------------------------------
CHANGE_FEED = "delta.enableChangeDataFeed"


@cache
def commit_conflicts() -> tuple[type[BaseException], ...]:
    """Delta's commit-conflict exception classes (delta-rs' and, when installed, delta-spark's): another
    writer committed first. Never the data's fault; a retry may succeed."""
    found: list[type[BaseException]] = [CommitFailedError]
    try:
        from delta.exceptions import (
            ConcurrentAppendException,
            ConcurrentDeleteDeleteException,
            ConcurrentDeleteReadException,
            ConcurrentTransactionException,
            ConcurrentWriteException,
            DeltaConcurrentModificationException,
            MetadataChangedException,
            ProtocolChangedException,
        )
    except ImportError:  # the delta-rs-only install (status, analysis) has no delta-spark
        return tuple(found)
    found += [ConcurrentAppendException, ConcurrentDeleteDeleteException, ConcurrentDeleteReadException,
              ConcurrentTransactionException, ConcurrentWriteException, DeltaConcurrentModificationException,
              MetadataChangedException, ProtocolChangedException]
    return tuple(found)


class Lake:
    """Every Delta read / write / MERGE / change feed / idempotent append / history, by logical table name.

    `silver.posts` is `<lake>/silver/posts` (`Settings.table_uri`). The delta-rs half needs no JVM
    (status, the drill, DQ reports, benchmarks); the Spark half needs `spark` (the layer jobs). The jobs
    keep their logic (what to merge, on which condition); the Lake holds the mechanics.
    """

    def __init__(self, settings: Settings, spark: SparkSession | None = None) -> None:
        self.settings = settings
        self._spark = spark

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            raise LakeError("this Lake has no SparkSession: make it with Lake(settings, spark)")
        return self._spark

    def path(self, name: str) -> Path:
        """The table's local folder (a local lake only; `location` works everywhere)."""
        return self.settings.table_path(name)

    def location(self, name: str) -> str:
        """Where the table lives, as Spark and delta-rs take it: a local path or an s3a:// URI."""
        return self.settings.table_uri(name)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """delta-rs storage options (None for a local lake; secrets inside: never log them)."""
        return self.settings.delta_storage_options()

    def exists(self, name: str) -> bool:
        """Whether `name` is a Delta table (a log with at least one commit); no JVM."""
        return DeltaTable.is_deltatable(self.location(name), storage_options=self.storage_options)

    def drop(self, name: str) -> None:
        """Delete the table's folder (data and log); nothing when it is not there."""
        if is_object_store(self.settings.lake_dir):
            storage.delete_folder(self.settings, self.location(name))
        else:
            shutil.rmtree(self.path(name), ignore_errors=True)

    # --- delta-rs: no JVM ---------------------------------------------------------------------------
    def table(self, name: str) -> DeltaTable:
        """The delta-rs DeltaTable of `name` (deltalake.exceptions.TableNotFoundError when there is none)."""
        return DeltaTable(self.location(name), storage_options=self.storage_options)

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table (or `columns`) as Arrow, read with delta-rs."""
        return self.table(name).to_pyarrow_table(columns=columns)

    def arrow_if_readable(self, name: str, columns: list[str] | None = None) -> pa.Table | None:
        """As `arrow`, or None when there is no table yet or it cannot be read right now (a poller reading
        while a writer commits asks again on its next poll)."""
        if not self.exists(name):
            return None
        try:
            return self.arrow(name, columns)
        except (DeltaError, pa.ArrowException, OSError):
            return None

    def history(self, name: str, limit: int | None = None) -> list[Commit]:
        """The table's commits, newest first (`DeltaTable.history()`)."""
        return commits_of(self.table(name), limit)

    def last_commit_rows(self, name: str) -> int | None:
        """Rows written by the table's latest commit (from its commit info; no Spark job); None if unknown."""
        commits = self.history(name, limit=1)
        return commits[0].rows_written if commits else None

    def append_arrow(self, name: str, rows: pa.Table, txn: tuple[str, int] | None = None) -> bool:
        """Append with delta-rs, creating the table on first use. With `txn` = (app id, version) the append
        is idempotent: skipped when the table already holds that version of that app id. Returns whether
        rows were written."""
        if not is_object_store(self.settings.lake_dir):
            self.path(name).parent.mkdir(parents=True, exist_ok=True)
        properties = None
        if txn is not None:
            app_id, version = txn
            if self.exists(name):
                done = self.table(name).transaction_version(app_id)
                if done is not None and done >= version:
                    return False
            properties = CommitProperties(app_transactions=[Transaction(app_id, version)])
        write_deltalake(self.location(name), rows, mode="append", commit_properties=properties,
                        storage_options=self.storage_options)
        return True

    # --- Spark --------------------------------------------------------------------------------------
    def read(self, name: str) -> DataFrame:
        """The table as a Spark DataFrame."""
        return self.spark.read.format("delta").load(self.location(name))

    def read_stream(self, name: str, change_feed: bool = False,
                    max_files_per_trigger: int | None = None, max_mb_per_trigger: int | None = None
                    ) -> DataFrame:
        """A Delta stream of the table's commits; with `change_feed`, its change data feed (the columns plus
        `_change_type`, `_commit_version`, `_commit_timestamp`). The caps bound each micro-batch (Delta
        takes whole files, so a batch may pass the size cap by one file), the first batch of a new
        checkpoint (the table's snapshot) too."""
        reader = self.spark.readStream.format("delta")
        if change_feed:
            reader = reader.option("readChangeFeed", "true")
        if max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", str(max_files_per_trigger))
        if max_mb_per_trigger:
            reader = reader.option("maxBytesPerTrigger", f"{max_mb_per_trigger}m")
        return reader.load(self.location(name))

    def append_stream(self, df: DataFrame, partition_by: tuple[str, ...] = ()) -> DataStreamWriter:
        """A streaming append of `df` in Delta format: add the query name, checkpoint and trigger, then
        `.start(lake.location(name))`."""
        writer = df.writeStream.format("delta").outputMode("append")
        return writer.partitionBy(*partition_by) if partition_by else writer

    def create(self, name: str, schema: StructType, change_feed: bool = False,
               partition_by: tuple[str, ...] = (), properties: dict[str, str] | None = None) -> None:
        """Create the table with `schema` unless it exists (optionally born with the change data feed on,
        partitioned, with more table properties)."""
        from delta.tables import DeltaTable as SparkDeltaTable

        builder = SparkDeltaTable.createIfNotExists(self.spark).location(self.location(name))
        builder = builder.addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        if change_feed:
            builder = builder.property(CHANGE_FEED, "true")
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        builder.execute()

    def overwrite(self, name: str, df: DataFrame) -> None:
        """Replace the table's content and schema: one atomic commit (readers see old or new, never a mix)."""
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(self.location(name))

    def append(self, name: str, df: DataFrame, txn: tuple[str, int] | None = None) -> None:
        """Append `df`. With `txn` = (app id, version) Delta skips a (txnAppId, txnVersion) it already has, so
        a replayed micro-batch commits nothing."""
        writer = df.write.format("delta").mode("append")
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", int(txn[1]))
        writer.save(self.location(name))

    def append_unseen(self, name: str, rows: DataFrame, identity: tuple[str, ...],
                      txn: tuple[str, int] | None = None, skip_by: str | None = None) -> None:
        """Append the `rows` the table does not hold yet (same `identity` columns, null-safe), idempotent by
        `txn` as in `append`. `skip_by`: a column whose range in `rows` bounds the read of the table, so
        Delta's file statistics skip every other file."""
        from pyspark.sql import functions as F

        if self.exists(name):
            known = self.read(name)
            if skip_by is not None:
                low, high, nulls = rows.agg(F.min(skip_by), F.max(skip_by),
                                            F.count(F.when(F.col(skip_by).isNull(), 1))).first()
                if low is not None:
                    span = F.col(skip_by).between(low, high)
                    known = known.where(span | F.col(skip_by).isNull() if nulls else span)
            known = known.select(*identity)
            same = [rows[c].eqNullSafe(known[c]) for c in identity]
            rows = rows.join(known, on=reduce(operator.and_, same), how="left_anti")
        self.append(name, rows, txn)

    def merge(self, name: str, source: DataFrame, on: str | Column) -> DeltaMergeBuilder:
        """A MERGE of `source` (alias `s`) into the table (alias `t`) on `on`; add clauses, then execute()."""
        from delta.tables import DeltaTable as SparkDeltaTable

        target = SparkDeltaTable.forPath(self.spark, self.location(name)).alias("t")
        return target.merge(source.alias("s"), on)

    def detail(self, name: str) -> Row:
        """DESCRIBE DETAIL of the table (id, properties, numFiles, ...)."""
        from delta.tables import DeltaTable as SparkDeltaTable

        return SparkDeltaTable.forPath(self.spark, self.location(name)).detail().first()

    def table_id(self, name: str) -> str:
        """The table's id: stays the same across commits, changes when the table is re-created."""
        return self.detail(name)["id"]

    def change_feed_enabled(self, name: str) -> bool:
        properties = self.detail(name)["properties"] or {}
        return str(properties.get(CHANGE_FEED, "false")).lower() == "true"

    def ensure_change_feed(self, name: str, log: Callable[[str], None] = logger.info) -> None:
        """Turn the change data feed on if it is off: a metadata-only commit, retried (5 attempts, 1, 2, 3,
        4 s apart) when a concurrent writer commits first."""
        for attempt in Retrying(retry=retry_if_exception_type(commit_conflicts()), stop=stop_after_attempt(5),
                                wait=wait_incrementing(start=1, increment=1), reraise=True):
            with attempt:
                if self.change_feed_enabled(name):
                    return
                self.spark.sql(f"ALTER TABLE delta.`{self.location(name)}` "
                               f"SET TBLPROPERTIES ({CHANGE_FEED} = true)")
                log(f"enabled the change data feed on {self.location(name)}")
