"""What a data-quality rule is, and how a set of rules becomes ONE Spark aggregate (pure: no I/O).

A `Rule` has a name, a check and a severity:
- `warn`: failing rows are counted (dq_metrics), nothing else happens;
- `drop`: failing rows leave the batch and go to the quarantine with the rule's name;
- `fail`: the job stops before it publishes, with a message naming the rule and a few example keys.

Checks are either row checks (a SQL predicate or a Column builder; true = the row passes; a null result
counts as a failure) or table checks on the whole batch: `unique` (a key), `row_count_change` (against the
previous version's row count) and `freshness` (the newest value of a timestamp column). Table checks cannot
`drop` (there is no single row to quarantine).

`aggregate_columns` turns a `TableRules` into the columns of one `df.agg(...)`: a count per rule, so every
rule of a batch costs one pass over it; `results` reads that one row back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SEVERITIES = ("warn", "drop", "fail")
KINDS = ("row", "unique", "row_count_change", "freshness")
Check = str | Callable[[DataFrame], Column]


@dataclass(frozen=True)
class Rule:
    name: str
    check: Check | None  # row rules: SQL predicate or Column builder, true = the row passes
    severity: str = "warn"
    detail: str = ""
    kind: str = "row"
    where: str | None = None  # row rules: only rows where this holds are checked
    columns: tuple[str, ...] = ()  # unique: the key; freshness: (timestamp column,)
    max_change: float | None = None  # row_count_change: allowed |new - old| / old
    max_age: timedelta | None = None  # freshness: newest value must be within this of `now`

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "row" and self.severity == "drop":
            raise ValueError(f"rule {self.name}: a table check ({self.kind}) cannot drop rows; "
                             "use warn or fail")
        if self.kind == "row" and self.check is None:
            raise ValueError(f"rule {self.name}: a row rule needs a check")

    def passes(self, df: DataFrame) -> Column:
        """Row rules: true when the row passes (null = fails)."""
        check = F.expr(self.check) if isinstance(self.check, str) else self.check(df)
        return F.coalesce(check, F.lit(False))

    def fails(self, df: DataFrame) -> Column:
        """Row rules: true when the row is checked (`where`) and does not pass."""
        failed = ~self.passes(df)
        return failed & F.coalesce(F.expr(self.where), F.lit(False)) if self.where else failed


def row(name: str, check: Check, severity: str = "warn", detail: str = "", where: str | None = None) -> Rule:
    return Rule(name, check, severity, detail or (check if isinstance(check, str) else name), where=where)


def unique(name: str, columns: tuple[str, ...], severity: str = "fail") -> Rule:
    return Rule(name, None, severity, f"({', '.join(columns)}) is unique", kind="unique", columns=columns)


def row_count_change(name: str, max_change: float, severity: str = "warn") -> Rule:
    return Rule(name, None, severity, f"row count changes by at most {max_change:.0%} from the previous "
                f"version", kind="row_count_change", max_change=max_change)


def freshness(name: str, column: str, max_age: timedelta, severity: str = "warn") -> Rule:
    return Rule(name, None, severity, f"newest {column} is at most {max_age} old", kind="freshness",
                columns=(column,), max_age=max_age)


@dataclass(frozen=True)
class TableRules:
    """The rules one job checks on one table's rows at one hop (e.g. silver.posts, bronze -> silver)."""

    table: str  # logical name of the table the rows are published to (or read from, for an input check)
    hop: str  # e.g. "bronze->silver"
    key: tuple[str, ...]  # columns shown as examples when a fail rule fails
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.table}: rule names must be unique, got {names}")

    def of(self, severity: str) -> list[Rule]:
        return [r for r in self.rules if r.severity == severity]

    def replace(self, *rules: Rule) -> TableRules:
        """A copy with `rules` added (a rule of the same name is replaced): tests and local policies."""
        names = {r.name for r in rules}
        return TableRules(self.table, self.hop, self.key,
                          tuple(r for r in self.rules if r.name not in names) + tuple(rules))


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
