"""Data-quality guard used by the jobs: count every rule of a batch in ONE aggregate, append the counts to
`dq.metrics`, send `drop` rows to silver/posts_quarantine, and raise `DataQualityError` on a `fail` rule
BEFORE the job publishes (so the target table keeps its previous version).

`dq.metrics` (<lake>/dq/metrics, Delta, written with delta-rs: no Spark job per append): one row per
job run, batch, table and rule — run_id, job, table, hop, rule, severity, rows_checked, rows_failed,
batch_id, checked_at, note. `job` names the writer (silver, gold, sync, or gx:<layer> for the Great
Expectations suites).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.rules import Rule, TableRules
from tootlake.expectations.metrics import METRICS, METRICS_SCHEMA
from tootlake.expectations.rules import RuleResult, aggregate_columns, failed_rule_names, results
from tootlake.pipelines.settings import Settings
from tootlake.pipelines.spark import BatchFrames
from tootlake.silver.quarantine import POSTS_QUARANTINE

METRICS_TABLE = METRICS.name
QUARANTINE_TABLE = POSTS_QUARANTINE.name
EXAMPLES = 5  # example keys in a fail message


class DataQualityError(RuntimeError):
    """A `fail` rule failed: the job stopped before publishing. The message names the rule(s) and examples."""

    def __init__(self, message: str, failed: list[RuleResult]) -> None:
        super().__init__(message)
        self.failed = failed


def new_run_id(job: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{job}-{stamp}-{uuid.uuid4().hex[:6]}"


def metrics_rows(results_: list[RuleResult], table_rules: TableRules, run_id: str, job: str,
                 batch_id: int | None, checked_at: datetime) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "job": job, "table": table_rules.table, "hop": table_rules.hop,
         "rule": r.rule.name, "severity": r.rule.severity, "rows_checked": r.rows_checked,
         "rows_failed": r.rows_failed, "batch_id": batch_id, "checked_at": checked_at, "note": r.note}
        for r in results_
    ]


def append_metrics(settings: Settings, rows: list[dict[str, Any]],
                   txn: tuple[str, int] | None = None) -> bool:
    """Append rows to dq.metrics (created on first use). With `txn` = (app id, version) the append is
    idempotent: skipped when the table already holds that version of that app id (a replayed micro-batch
    after a crash counts its rules once). Returns whether rows were written."""
    if not rows:
        return False
    from tootlake.pipelines.lake import Lake

    return Lake(settings).append_arrow(METRICS_TABLE, pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), txn)


def fail_message(table_rules: TableRules, failed: list[tuple[RuleResult, list[str]]], job: str) -> str:
    lines = [f"data quality: {job} stopped before publishing {table_rules.table} ({table_rules.hop}): "
             f"{len(failed)} fail rule(s) failed; the table keeps its previous version."]
    for result, examples in failed:
        lines.append(f"  rule {result.rule.name!r} ({result.rule.detail}): {result.rows_failed} of "
                     f"{result.rows_checked} rows failed" + (f"; {result.note}" if result.note else ""))
        if examples:
            lines.append(f"    e.g. {', '.join(table_rules.key)} = {', '.join(examples)}")
    lines.append("  Fix the data (or the rule in tootlake/expectations/tables.py) and run the job again; "
                 "counts are in dq.metrics (`tootlake dq report`).")
    return "\n".join(lines)


def examples_of(df: DataFrame, table_rules: TableRules, rule: Rule, limit: int = EXAMPLES) -> list[str]:
    """A few keys of rows that fail `rule` (only called on the failure path: one small extra job)."""
    key = [c for c in table_rules.key if c in df.columns]
    if not key:
        return []
    if rule.kind == "row":
        picked = df.where(rule.fails(df)).select(*key).limit(limit).collect()
    elif rule.kind == "unique":
        picked = (df.groupBy(*rule.columns).count().where("count > 1").select(*rule.columns)
                  .limit(limit).collect())
    else:
        return []
    return ["/".join(str(v) for v in r) for r in picked]


@dataclass
class Guard:
    """One job run's data-quality state: evaluates rule sets, appends metrics, keeps a summary."""

    settings: Settings
    job: str
    run_id: str = ""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    history: list[dict[str, Any]] = field(default_factory=list)  # every metrics row of this run
    # Rules added to (or replacing by name) a table's rules for this run, by table name: tests, local policy.
    extra_rules: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    # The streaming query's identity (its checkpoint's txn app id): makes a replayed batch's metrics a no-op.
    stream_id: str | None = None

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.job, self.clock())

    @property
    def enabled(self) -> bool:
        return self.settings.dq_enabled

    def rules_for(self, table_rules: TableRules) -> TableRules:
        return table_rules.replace(*self.extra_rules.get(table_rules.table, ()))

    def check(self, df: DataFrame, table_rules: TableRules, batch_id: int | None = None,
              failed: Mapping[str, Column] | None = None, previous_rows: int | None = None,
              extra: list[Column] | None = None) -> tuple[list[RuleResult], Any]:
        """Count every rule in one aggregate (+ `extra` columns the caller wants from the same pass),
        append the counts to dq.metrics, raise DataQualityError if a fail rule failed.

        Returns (results, the aggregate row) so callers can read their `extra` counts.
        """
        now = self.clock()
        table_rules = self.rules_for(table_rules)
        agg = df.agg(*aggregate_columns(df, table_rules, failed), *(extra or [])).first()
        found = results(agg.asDict(), table_rules, now, previous_rows)
        self._record(found, table_rules, batch_id, now)
        failing = [r for r in found if r.rule.severity == "fail" and not r.passed]
        if failing:
            detailed = [(r, examples_of(df, table_rules, r.rule)) for r in failing]
            raise DataQualityError(fail_message(table_rules, detailed, self.job), failing)
        return found, agg

    def _record(self, found: list[RuleResult], table_rules: TableRules, batch_id: int | None,
                now: datetime) -> None:
        rows = metrics_rows(found, table_rules, self.run_id, self.job, batch_id, now)
        txn = None
        if self.stream_id and batch_id is not None:
            txn = (f"{self.stream_id}/{table_rules.table}/{table_rules.hop}", int(batch_id))
        if append_metrics(self.settings, rows, txn):
            self.history.extend(rows)

    def needs_precheck(self, table_rules: TableRules) -> bool:
        """fail / drop rules must be known before the write; unique needs a distinct count (which an
        Observation cannot compute)."""
        return any(r.severity in ("fail", "drop") or r.kind == "unique"
                   for r in self.rules_for(table_rules).rules)

    def observe(self, df: DataFrame, table_rules: TableRules, batch_id: int | None = None,
                previous_rows: int | None = None) -> tuple[DataFrame, Callable[[], list[RuleResult]]]:
        """warn-only rules: counted by the write itself (Spark's Observation: no extra pass). Returns the
        observed DataFrame to write and `finish()`, to call after the write, which records the counts."""
        from pyspark.sql import Observation

        table_rules = self.rules_for(table_rules)
        observation = Observation(f"dq_{uuid.uuid4().hex[:12]}")
        observed = df.observe(observation, *aggregate_columns(df, table_rules))

        def finish() -> list[RuleResult]:
            now = self.clock()
            found = results(observation.get, table_rules, now, previous_rows)
            self._record(found, table_rules, batch_id, now)
            return found

        return observed, finish

    def apply(self, df: DataFrame, table_rules: TableRules, batch_id: int | None = None,
              previous_rows: int | None = None) -> tuple[DataFrame, list[RuleResult]]:
        """check(), then drop rows failing a `drop` rule (to the quarantine); returns the kept rows."""
        table_rules = self.rules_for(table_rules)
        found, _ = self.check(df, table_rules, batch_id, previous_rows=previous_rows)
        drops = [r.rule for r in found if r.rule.severity == "drop" and not r.passed]
        if not drops:
            return df, found
        flagged = df.withColumn("__dq_rules", failed_rule_names(df, drops))
        quarantine_rows(self.settings, flagged.where(F.size("__dq_rules") > 0), table_rules,
                        {r.name: r.detail for r in drops}, self.clock())
        return flagged.where(F.size("__dq_rules") == 0).drop("__dq_rules"), found

    def failed_rows(self) -> int:
        return sum(int(r["rows_failed"]) for r in self.history)


def quarantine_rows(settings: Settings, rejected: DataFrame, table_rules: TableRules,
                    details: dict[str, str], now: datetime) -> None:
    """Append rows a `drop` rule rejected to silver/posts_quarantine: key, the row as JSON, the rules.

    Through silver's one quarantine writer: rows already there (same bronze position and JSON) are not
    added again, so a replayed batch adds nothing.
    """
    from tootlake.silver.schema import QUARANTINE_SCHEMA
    from tootlake.silver.timestamps import spark_literal

    spark = rejected.sparkSession
    key = [F.col(c).cast("string") for c in table_rules.key if c in rejected.columns]
    detail_of = F.create_map(*[F.lit(x) for pair in details.items() for x in pair])
    payload = [c for c in rejected.columns if c != "__dq_rules"]

    def lineage(name: str) -> Column:
        return F.col(name) if name in rejected.columns else F.lit(None)

    shaped = rejected.select(
        (F.concat_ws("/", *key) if key else F.lit(None)).alias("key"),
        F.to_json(F.struct(*payload)).alias("value"),
        F.col("__dq_rules").alias("rules"),
        detail_of[F.get(F.col("__dq_rules"), 0)].alias("reason"),
        lineage("bronze_partition").alias("bronze_partition"),
        lineage("bronze_offset").alias("bronze_offset"),
        spark_literal(now).alias("quarantined_at"),
    ).select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in QUARANTINE_SCHEMA.fields])
    from tootlake.pipelines.jobs.silver import append_quarantine
    from tootlake.pipelines.lake import Lake

    append_quarantine(Lake(settings, spark), shaped)


def check_silver_batch(guard: Guard, judged: DataFrame, now: datetime, settings: Settings,
                       batch_id: int, extra: list[Column]) -> Any:
    """bronze -> silver: the judged batch's rules in the aggregate silver runs anyway; returns its row.

    The drop rules are silver's quarantine rules, already evaluated into `rules` by with_rule_failures:
    they are counted from that column (silver's own quarantine write moves the rows)."""
    from datetime import timedelta

    from tootlake.expectations.tables import silver_posts
    from tootlake.silver.quarantine import RULE_NAMES

    rules = silver_posts(now, settings.silver_max_content_chars,
                         timedelta(seconds=settings.silver_future_tolerance_s))
    failed = {name: F.array_contains(F.col("rules"), name) for name in RULE_NAMES}
    _, agg = guard.check(judged, rules, batch_id, failed=failed, extra=extra)
    return agg


def check_gold_input(guard: Guard, posts: DataFrame) -> None:
    """silver -> gold: rules on silver/posts as gold reads it (this aggregate also fills gold's cache)."""
    from tootlake.expectations.tables import gold_input

    guard.check(posts, gold_input(guard.clock()))


def check_gold_table(guard: Guard, name: str, table: DataFrame,
                     previous_rows: int | None) -> tuple[DataFrame, Callable[[], object]]:
    """A gold table's rules around its overwrite: returns (the DataFrame to write, `after_write()`).

    warn-only rule sets are counted by the write itself (no extra pass: the per-table Spark jobs were most
    of the rules' cost). A set with a fail rule (or a unique check) is checked BEFORE the write on the
    table persisted (computed once, the write reads the cache): a failure leaves the previous version.
    """
    from tootlake.expectations.tables import gold_rules

    rules = gold_rules(name)
    if not guard.needs_precheck(rules):
        return guard.observe(table, rules, previous_rows=previous_rows)
    table = table.persist()
    try:
        guard.check(table, rules, previous_rows=previous_rows)
    except BaseException:
        table.unpersist()
        raise
    return table, table.unpersist


def check_sync_batch(guard: Guard, batch: DataFrame, batch_id: int, frames: BatchFrames) -> DataFrame:
    """silver -> sync: rules on a change-feed batch (pre-images left out); returns the rows to stage."""
    from tootlake.expectations.tables import sync_posts

    # Materialised once: the source is scanned once, so the rules' pass neither re-reads the change feed
    # nor doubles the query's numInputRows.
    rows = frames.keep(batch.where(F.col("_change_type") != "update_preimage"))
    kept, _ = guard.apply(rows, sync_posts(), batch_id)
    return kept
