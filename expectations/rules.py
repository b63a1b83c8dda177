"""How a set of rules becomes ONE Spark aggregate, and how its row is read back (pure: no I/O).

What a rule is (`Rule`, `TableRules`, the builders `row`, `unique`, ...) is tootlake.catalog.rules.
`aggregate_columns` turns a `TableRules` into the columns of one `df.agg(...)`: a count per rule, so every
rule of a batch costs one pass over it; `results` reads that one row back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tootlake.catalog.rules import Rule, TableRules

ROWS = "__rows"


def _col(rule: Rule, suffix: str) -> str:
    return f"__{suffix}__{rule.name}"


def aggregate_columns(df: DataFrame, table_rules: TableRules,
                      failed: Mapping[str, Column] | None = None) -> list[Column]:
    """Columns of one `df.agg(...)` that counts every rule: rows, rows checked and rows failed per rule.

    `failed` overrides a row rule's failure flag (e.g. silver's quarantine already computed `rules`, so its
    drop rules read `array_contains(rules, name)` instead of evaluating the predicate twice).
    """
    columns = [F.count(F.lit(1)).alias(ROWS)]
    for rule in table_rules.rules:
        if rule.kind == "row":
            flag = (failed or {}).get(rule.name)
            flag = rule.fails(df) if flag is None else flag
            columns.append(F.count_if(flag).alias(_col(rule, "failed")))
            if rule.where:
                checked = F.coalesce(F.expr(rule.where), F.lit(False))
                columns.append(F.count_if(checked).alias(_col(rule, "checked")))
        elif rule.kind == "unique":
            columns.append(F.count_distinct(F.struct(*rule.columns)).alias(_col(rule, "distinct")))
        elif rule.kind == "freshness":
            columns.append(F.max(rule.columns[0]).alias(_col(rule, "newest")))
    return columns


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    rows_checked: int
    rows_failed: int
    note: str = ""  # table checks: what was measured

    @property
    def passed(self) -> bool:
        return self.rows_failed == 0


def results(row_: Mapping[str, Any], table_rules: TableRules, now: datetime,
            previous_rows: int | None = None) -> list[RuleResult]:
    """Read the aggregate row back into one result per rule.

    Table checks count as: unique -> rows beyond the first per key; row_count_change -> |new - previous|
    when beyond the limit (0 when within, or with no previous version); freshness -> every row when the
    newest value is too old (or missing), else 0.
    """
    n = int(row_[ROWS] or 0)
    out: list[RuleResult] = []
    for rule in table_rules.rules:
        if rule.kind == "row":
            checked = int(row_[_col(rule, "checked")] or 0) if rule.where else n
            out.append(RuleResult(rule, checked, int(row_[_col(rule, "failed")] or 0)))
        elif rule.kind == "unique":
            distinct = int(row_[_col(rule, "distinct")] or 0)
            out.append(RuleResult(rule, n, n - distinct, f"{distinct} distinct keys"))
        elif rule.kind == "row_count_change":
            if previous_rows is None or previous_rows == 0:
                out.append(RuleResult(rule, n, 0, "no previous version"))
                continue
            change = abs(n - previous_rows) / previous_rows
            too_much = change > (rule.max_change or 0.0)
            out.append(RuleResult(rule, n, abs(n - previous_rows) if too_much else 0,
                                  f"{previous_rows} -> {n} rows ({change:+.0%})"))
        elif rule.kind == "freshness":
            newest = row_[_col(rule, "newest")]
            stale = n > 0 and (newest is None or _naive_utc(newest) < _naive_utc(now) - rule.max_age)
            out.append(RuleResult(rule, n, n if stale else 0, f"newest {newest}"))
    return out


def _naive_utc(value: datetime) -> datetime:
    # Spark hands back naive timestamps in the session time zone (UTC here); compare like with like.
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def failed_rule_names(df: DataFrame, rules: list[Rule]) -> Column:
    """array<string> of the row rules (of `rules`) the row fails, in order; empty when it passes all."""
    flags = [F.when(rule.fails(df), F.lit(rule.name)) for rule in rules if rule.kind == "row"]
    if not flags:
        return F.array().cast("array<string>")
    return F.filter(F.array(*flags), lambda name: name.isNotNull())
