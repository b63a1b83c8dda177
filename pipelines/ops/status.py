"""`tootlake status`: is it healthy? Services, stages, Kafka lag, tables, quarantine, DQ — without a JVM.

Everything is read from files and the services directly, with short timeouts, so it answers in a few
seconds also when things are down (it says what is down instead of failing):
- services: Kafka metadata (confluent-kafka) and `select 1` on PostgreSQL, in parallel;
- stages: the stream checkpoints (`<checkpoint>/commits/<n>`: last batch id and when it committed), the
  last "batch N: R rows" line of the stage's log under `tootlake run`, and the supervisor's state file;
- Kafka lag per partition: end offsets from the broker minus the offsets bronze committed (the Spark Kafka
  source writes them in `<checkpoint>/offsets/<n>`, third line, `{"topic": {"partition": offset}}`);
- tables: Delta version and row count from the log (delta-rs: file statistics, no data read);
- quarantine rows per rule; per job, the latest data-quality run in `dq.metrics` when it exists.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tootlake.catalog.vocab import DQ_METRICS, SILVER_POSTS_QUARANTINE
from tootlake.pipelines.ops.maintain import read_state as read_maintain_state
from tootlake.pipelines.ops.supervisor import (
    APP_STAGE,
    STAGE_CHECKPOINTS,
    STAGE_TABLES,
    read_state,
    stage_log_dir,
)
from tootlake.pipelines.settings import Settings, is_object_store

KAFKA_TIMEOUT_S = 1.5
_BATCH_LINE = re.compile(r"\[[\w-]+\] batch (\d+): (\d+) rows")


# --- services ------------------------------------------------------------------------------------------
def _kafka(settings: Settings) -> dict[str, Any]:
    """Broker up? and, if so, end offsets per partition of the topic."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    info: dict[str, Any] = {"address": settings.bootstrap_servers, "up": False, "end_offsets": None}
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "tootlake-status",
                         "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 1500,
                         "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=KAFKA_TIMEOUT_S)
        info["up"] = bool(metadata.brokers)
        topic = metadata.topics.get(settings.kafka_topic)
        if topic is None or topic.error:
            info["note"] = f"topic {settings.kafka_topic} does not exist yet"
            return info
        ends = {}
        for partition in sorted(topic.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(settings.kafka_topic, partition),
                                                        timeout=KAFKA_TIMEOUT_S, cached=False)
            ends[str(partition)] = high
        info["end_offsets"] = ends
    except KafkaException as exc:
        info["note"] = f"not answering ({exc.args[0].str() if exc.args else exc})"
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    return info


def _postgres(settings: Settings) -> dict[str, Any]:
    import psycopg2

    where = f"127.0.0.1:{settings.postgres_port}" if settings.uses_embedded_postgres else "POSTGRES_DSN"
    info: dict[str, Any] = {"address": where, "up": False, "tables": {}}
    try:
        with contextlib.closing(psycopg2.connect(settings.postgres_conninfo(), connect_timeout=2)) as conn:
            info["up"] = True
            cur = conn.cursor()
            for table in ("rawposts", "processedposts"):
                cur.execute("select to_regclass(%s)", (table,))
                if cur.fetchone()[0] is None:
                    continue
                cur.execute(f"select count(*), max(synced_at) from {table}")  # noqa: S608 - fixed names
                rows, synced = cur.fetchone()
                info["tables"][table] = {"rows": rows,
                                         "last_synced_at": synced.isoformat() if synced else None}
    except psycopg2.Error as exc:
        info["note"] = "not answering: " + (str(exc).strip().splitlines() or ["?"])[0]
    return info


# --- checkpoints ---------------------------------------------------------------------------------------
def _numbered(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def checkpoint_info(checkpoint: Path) -> dict[str, Any] | None:
    """Last committed batch id, when it committed, and its source offsets (parsed from offsets/<n>)."""
    commits = _numbered(checkpoint / "commits")
    if not commits:
        return None
    last = commits[-1]
    at = datetime.fromtimestamp((checkpoint / "commits" / str(last)).stat().st_mtime, tz=UTC)
    offsets = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = (checkpoint / "offsets" / str(last)).read_text().splitlines()
        offsets = json.loads(lines[2])
    return {"batch": last, "committed_at": at.isoformat(timespec="seconds"), "offsets": offsets,
            "age_s": round(time.time() - at.timestamp(), 1)}


def remote_checkpoint_info(settings: Settings, checkpoint: str) -> dict[str, Any] | None:
    """`checkpoint_info` of a checkpoint on object storage (an s3a:// URI)."""
    from tootlake.pipelines import storage

    commits = sorted(int(n) for n in storage.file_names(settings, f"{checkpoint}/commits") if n.isdigit())
    if not commits:
        return None
    last = commits[-1]
    at = storage.modified_at(settings, f"{checkpoint}/commits/{last}") or datetime.now(UTC)
    offsets = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        offsets = json.loads(storage.read_text(settings, f"{checkpoint}/offsets/{last}").splitlines()[2])
    return {"batch": last, "committed_at": at.isoformat(timespec="seconds"), "offsets": offsets,
            "age_s": round(time.time() - at.timestamp(), 1)}


def _checkpoint(settings: Settings, name: str) -> dict[str, Any] | None:
    if is_object_store(settings.checkpoint_dir):
        try:
            return remote_checkpoint_info(settings, settings.checkpoint_uri(name))
        except OSError:  # the store is down: the services line says so
            return None
    return checkpoint_info(settings.checkpoint_path(name))


def _s3(settings: Settings) -> dict[str, Any]:
    """The object store answers? (a listing of the lake's bucket)."""
    from tootlake.pipelines import storage

    info: dict[str, Any] = {"address": settings.s3_endpoint_url(), "up": False}
    location = settings.location(settings.lake_dir if is_object_store(settings.lake_dir)
                                 else settings.checkpoint_dir)
    bucket = location.removeprefix("s3a://").split("/", 1)[0]
    try:
        filesystem, _ = storage.resolve(settings, location)
        info["up"] = filesystem.get_file_info(bucket).type != storage.pafs.FileType.NotFound
        if not info["up"]:
            info["note"] = f"bucket {bucket} does not exist"
    except OSError as exc:
        info["note"] = "not answering: " + (str(exc).strip().splitlines() or ["?"])[0][:120]
    return info


def kafka_lag(end_offsets: dict[str, int] | None, bronze_offsets: dict[str, Any] | None,
              topic: str) -> dict[str, int | None] | None:
    """Per partition: broker end offset minus the offset bronze has committed (None: bronze never read it)."""
    if end_offsets is None:
        return None
    consumed = (bronze_offsets or {}).get(topic, {})
    return {p: (end - int(consumed[p]) if p in consumed else None) for p, end in end_offsets.items()}


def _last_batch_line(log_file: Path, label: str | None = None) -> dict[str, int] | None:
    """The last "[stage] batch N: R rows" line a stage printed (its log under `tootlake run`); `label`:
    only that stage's lines (a log several queries share)."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return None
    pattern = _BATCH_LINE if label is None else re.compile(rf"\[{re.escape(label)}\] batch (\d+): (\d+) rows")
    matches = pattern.findall(tail)
    if not matches:
        return None
    batch, rows = matches[-1]
    return {"batch": int(batch), "rows": int(rows)}


# --- lake ----------------------------------------------------------------------------------------------
def _tables(settings: Settings) -> dict[str, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from tootlake.pipelines.lake import Lake, list_tables

    lake = Lake(settings)
    out = {}
    for name in list_tables(settings):
        try:
            table = lake.table(name)
            adds = pa.table(table.get_add_actions(flatten=True))
            rows = pc.sum(adds.column("num_records")).as_py() if adds.num_rows else 0
            last = table.history(1)[0]
            out[name] = {"version": table.version(), "rows": int(rows or 0), "files": adds.num_rows,
                         "last_commit_rows": _commit_rows(last.get("operationMetrics") or {}),
                         "last_commit_at": datetime.fromtimestamp(int(last["timestamp"]) / 1000, tz=UTC)
                         .isoformat(timespec="seconds"), "last_operation": last.get("operation")}
        except Exception as exc:  # a table being created right now, or unreadable: say so, keep going
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
    return out


def _commit_rows(metrics: dict[str, Any]) -> int | None:
    """Rows a commit changed: inserted + updated + deleted for a MERGE, else rows written."""
    merge = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")
    if any(key in metrics for key in merge):
        return sum(int(metrics.get(key) or 0) for key in merge)
    for key in ("numOutputRows", "num_added_rows"):
        if metrics.get(key) not in (None, ""):
            return int(metrics[key])
    return None


def _quarantine(settings: Settings, tables: dict[str, Any]) -> dict[str, int] | None:
    if SILVER_POSTS_QUARANTINE not in tables or "error" in tables[SILVER_POSTS_QUARANTINE]:
        return None
    import pyarrow.compute as pc

    from tootlake.pipelines.lake import Lake

    data = Lake(settings).arrow(SILVER_POSTS_QUARANTINE, columns=["rules"])
    if data.num_rows == 0:
        return {}
    counts = pc.value_counts(pc.list_flatten(data.column("rules")))
    return {item["values"].as_py(): item["counts"].as_py() for item in counts}


DQ_COLUMNS = ["run_id", "job", "rule", "severity", "rows_failed", "checked_at"]


def _dq(settings: Settings, tables: dict[str, Any]) -> dict[str, Any] | None:
    """Per job, its latest data-quality run in `dq.metrics` (written by the jobs and `tootlake dq`):
    when, how many rules were checked, and which failed (rows failed, severity)."""
    names = [n for n in tables
             if (n == DQ_METRICS or n.endswith(".dq_metrics")) and "error" not in tables[n]]
    if not names:
        return None
    from tootlake.pipelines.lake import Lake

    table = Lake(settings).table(names[0])
    columns = [f.name for f in table.schema().fields]
    if not set(DQ_COLUMNS) <= set(columns):
        return {"table": names[0], "note": f"unexpected columns {columns}"}
    rows = table.to_pyarrow_table(columns=DQ_COLUMNS).to_pylist()
    latest: dict[str, tuple[Any, str]] = {}  # job -> (checked_at, run_id)
    for row in rows:
        if row["checked_at"] is None:
            continue
        current = latest.get(row["job"])
        if current is None or row["checked_at"] > current[0]:
            latest[row["job"]] = (row["checked_at"], row["run_id"])
    runs = {}
    for job, (at, run_id) in sorted(latest.items()):
        run_rows = [r for r in rows if r["run_id"] == run_id]
        failed: dict[str, dict[str, Any]] = {}
        for r in run_rows:
            if r["rows_failed"]:
                entry = failed.setdefault(r["rule"], {"severity": r["severity"], "rows_failed": 0})
                entry["rows_failed"] += int(r["rows_failed"])
        runs[job] = {"run_id": run_id, "at": at.isoformat(timespec="seconds") if hasattr(at, "isoformat")
                     else str(at), "rules_checked": len({r["rule"] for r in run_rows}), "failed": failed}
    lost = [r for r in rows if r["rule"] == "kafka_offsets_lost" and r["rows_failed"]]
    result: dict[str, Any] = {"table": names[0], "runs": runs}
    if lost:  # records deleted by the broker before bronze read them: shown whatever run came after
        last = max(r["checked_at"] for r in lost)
        result["kafka_offsets_lost"] = {"records": sum(int(r["rows_failed"]) for r in lost),
                                        "batches": len(lost), "last_at": last.isoformat(timespec="seconds")}
    return result


# --- all together --------------------------------------------------------------------------------------
def collect_status(settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        kafka_future = pool.submit(_kafka, settings)
        postgres_future = pool.submit(_postgres, settings)
        tables_future = pool.submit(_tables, settings)
        s3_future = pool.submit(_s3, settings) if settings.uses_object_store else None
        kafka, postgres = kafka_future.result(), postgres_future.result()
        try:
            tables = tables_future.result()
        except Exception as exc:
            tables = {"(lake)": {"error": f"{type(exc).__name__}: {exc}"}}
    supervisor = read_state(settings)
    stages: dict[str, Any] = {}
    for stage, checkpoint_name in STAGE_CHECKPOINTS.items():
        info: dict[str, Any] = {"checkpoint": _checkpoint(settings, checkpoint_name)}
        hosted = (supervisor or {}).get("stages", {}).get(stage, {}).get("app")
        if hosted:  # a query of the one application: its lines in the application's log
            line = _last_batch_line(stage_log_dir(settings) / f"{hosted}.log", stage)
        else:
            line = _last_batch_line(stage_log_dir(settings) / f"{stage}.log")
        if line:
            info["last_logged_batch"] = line
        table = STAGE_TABLES.get(stage)
        if table and table in tables and "rows" in tables[table]:
            info["table"] = {"name": table, **tables[table]}
        if supervisor and stage in supervisor.get("stages", {}):
            info["supervisor"] = supervisor["stages"][stage]
        stages[stage] = info
    for process in ("producer", APP_STAGE):
        if supervisor and process in supervisor.get("stages", {}):
            stages[process] = {"supervisor": supervisor["stages"][process]}
    bronze_cp = stages["bronze"]["checkpoint"]
    lag = kafka_lag(kafka.get("end_offsets"), bronze_cp["offsets"] if bronze_cp else None,
                    settings.kafka_topic)
    result = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "services": {"kafka": {k: v for k, v in kafka.items() if k != "end_offsets"}, "postgres": postgres,
                     **({"s3": s3_future.result()} if s3_future is not None else {})},
        "supervisor": None if supervisor is None else {
            k: supervisor.get(k) for k in ("alive", "pid", "started_at", "updated_at", "rss_bytes",
                                           "peak_rss_bytes")},
        "stages": stages,
        "kafka_lag": {"topic": settings.kafka_topic, "end_offsets": kafka.get("end_offsets"),
                      "lag": lag, "total": sum(v for v in lag.values() if v is not None) if lag else None},
        "tables": tables,
        "maintain": read_maintain_state(settings),
    }
    try:
        result["quarantine"] = _quarantine(settings, tables)
        result["dq"] = _dq(settings, tables)
    except Exception as exc:  # never let a half-written table break the health view
        result["quarantine_error"] = f"{type(exc).__name__}: {exc}"
    result["healthy"] = healthy(result)
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def healthy(status: dict[str, Any]) -> bool:
    """Services up, and no stage of a running supervisor failing (backoff/failed)."""
    services = status["services"]
    if not (services["kafka"]["up"] and services["postgres"]["up"]):
        return False
    if "s3" in services and not services["s3"]["up"]:
        return False
    sup = status.get("supervisor")
    if sup and sup.get("alive"):
        for info in status["stages"].values():
            state = (info.get("supervisor") or {}).get("state")
            if state in ("backoff", "failed"):
                return False
    return True


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def format_status(status: dict[str, Any]) -> str:
    lines = [f"tootlake status at {status['at']}: {'HEALTHY' if status['healthy'] else 'NOT HEALTHY'}"]
    lines.append("services")
    for name, info in status["services"].items():
        state = "up" if info["up"] else "DOWN"
        note = f" ({info['note']})" if info.get("note") else ""
        lines.append(f"  {name:<10} {state:<5} {info['address']}{note}")
    sup = status.get("supervisor")
    if sup is None:
        lines.append("supervisor: `tootlake run` has not run here")
    else:
        alive = (f"running (pid {sup['pid']})" if sup["alive"]
                 else f"not running (last state {sup['updated_at']})")
        rss = f", stages' RSS {sup['rss_bytes'] / 2**30:.2f} GiB (peak {sup['peak_rss_bytes'] / 2**30:.2f})" \
            if sup.get("rss_bytes") is not None else ""
        lines.append(f"supervisor: {alive}{rss}")
    lines.append("stages       state     restarts  last batch           rows   table, version, rows")
    for name in ("producer", APP_STAGE, *STAGE_CHECKPOINTS):
        info = status["stages"].get(name)
        if info is None:
            continue
        st = info.get("supervisor") or {}
        state = st.get("state", "-") if (sup and sup.get("alive")) else (f"({st['state']})" if st else "-")
        restarts = str(st.get("restarts", "-"))
        cp = info.get("checkpoint")
        batch = f"#{cp['batch']} {_age(cp['age_s'])}" if cp else "-"
        logged = info.get("last_logged_batch")
        table = info.get("table")
        # rows the last batch read (its log line), else rows its last commit changed in the table
        rows = str(logged["rows"]) if logged else (
            str(table["last_commit_rows"]) if table and table.get("last_commit_rows") is not None else "-")
        tinfo = f"{table['name']} v{table['version']} {table['rows']} rows" if table else ""
        lines.append(f"  {name:<10} {state:<9} {restarts:>8}  {batch:<19} {rows:>5}   {tinfo}")
    lag = status["kafka_lag"]
    if lag["lag"] is None:
        lines.append(f"kafka lag ({lag['topic']}): unknown (broker down or topic missing)")
    else:
        parts = ", ".join(f"p{p}={'-' if v is None else v}" for p, v in sorted(lag["lag"].items()))
        lines.append(f"kafka lag ({lag['topic']}): total {lag['total']} [{parts}]")
    pg = status["services"]["postgres"]
    if pg["up"]:
        pg_tables = ", ".join(f"{t} {i['rows']}" for t, i in pg["tables"].items()) or "no sync tables yet"
        lines.append(f"postgres: {pg_tables}")
    lines.append("tables")
    if not status["tables"]:
        lines.append("  (no Delta tables yet)")
    for name, info in status["tables"].items():
        if "error" in info:
            lines.append(f"  {name:<28} unreadable: {info['error']}")
        else:
            lines.append(f"  {name:<28} v{info['version']:<5} {info['rows']:>8} rows {info['files']:>5} files"
                         f"  last {info['last_operation']} {info['last_commit_at']}")
    maintained = status.get("maintain")
    lines.append("maintenance: never ran (`tootlake maintain`)" if not maintained else
                 f"maintenance: last ran {maintained['at']} ("
                 + ", ".join(f"{t['table']} {t['files_before']}->{t['files_after']} files" if "error" not in t
                             else f"{t['table']} FAILED" for t in maintained.get("tables", [])) + ")")
    quarantine = status.get("quarantine")
    if quarantine is None:
        lines.append("quarantine: no table yet")
    else:
        q = ", ".join(f"{rule} {n}" for rule, n in sorted(quarantine.items())) or "empty"
        lines.append(f"quarantine: {q}")
    dq = status.get("dq")
    if dq is None or not dq.get("runs"):
        lines.append("data quality: no DQ runs yet" + (f" ({dq['note']})" if dq and dq.get("note") else ""))
    else:
        lines.append(f"data quality ({dq['table']}), latest run per job:")
        for job, run in dq["runs"].items():
            failed = ", ".join(f"{rule} [{f['severity']}] {f['rows_failed']} rows"
                               for rule, f in sorted(run["failed"].items())) or "none failed"
            lines.append(f"  {job:<12} {run['at']}  {run['rules_checked']} rules: {failed}")
    if dq and dq.get("kafka_offsets_lost"):
        loss = dq["kafka_offsets_lost"]
        lines.append(f"DATA LOSS: {loss['records']} Kafka record(s) in {loss['batches']} batch(es) were "
                     f"deleted by the broker before bronze read them (last {loss['last_at']}); rule "
                     "kafka_offsets_lost in dq.metrics has the offset ranges. Raise the topic's retention or "
                     "run bronze more often.")
    lines.append(f"({status['elapsed_s']} s)")
    return "\n".join(lines)
