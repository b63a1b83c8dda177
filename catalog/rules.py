"""What a data-quality rule is (pure: no I/O). How rules are counted is tootlake.expectations.rules.

A `Rule` has a name, a check and a severity:
- `warn`: failing rows are counted (dq_metrics), nothing else happens;
- `drop`: failing rows leave the batch and go to the quarantine with the rule's name;
- `fail`: the job stops before it publishes, with a message naming the rule and a few example keys.

Checks are either row checks (a SQL predicate or a Column builder; true = the row passes; a null result
counts as a failure) or table checks on the whole batch: `unique` (a key), `row_count_change` (against the
previous version's row count) and `freshness` (the newest value of a timestamp column). Table checks cannot
`drop` (there is no single row to quarantine). Silver's quarantine rules are `drop` rules written the other
way round (`fails_when`: true = the record fails, null = it does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

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


def fails_when(name: str, fails: Callable[[DataFrame], Column], detail: str, severity: str = "drop") -> Rule:
    """A row rule given by when the row FAILS (true = fails; null = passes), e.g. a quarantine rule."""
    return Rule(name, lambda df: ~F.coalesce(fails(df), F.lit(False)), severity, detail)


def unique(name: str, columns: tuple[str, ...], severity: str = "fail") -> Rule:
    return Rule(name, None, severity, f"({', '.join(columns)}) is unique", kind="unique", columns=columns)


def row_count_change(name: str, max_change: float, severity: str = "warn") -> Rule:
    return Rule(name, None, severity, f"row count changes by at most {max_change:.0%} from the previous "
                f"version", kind="row_count_change", max_change=max_change)


def freshness(name: str, column: str, max_age: timedelta, severity: str = "warn") -> Rule:
    return Rule(name, None, severity, f"newest {column} is at most {max_age} old", kind="freshness",
                columns=(column,), max_age=max_age)


def null_or_in(column: str, values: tuple[str, ...], fold: str = "") -> str:
    """SQL predicate: `column` is null or (after `fold`, e.g. upper) one of `values`."""
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IS NULL OR {fold}({column}) IN ({listed})"


# Count-like columns of an aggregate table: never negative.
COUNT_SUFFIXES = ("posts", "users", "_days", "_hours")


def aggregate_rules(key: tuple[str, ...], columns: tuple[str, ...] | list[str],
                    strict: bool = False) -> tuple[Rule, ...]:
    """The rules of an aggregate (gold) table as it is overwritten: counts not negative, size change vs
    the previous version. These are `warn` rules (counted by the write itself); `strict` adds the key's
    uniqueness and makes negative counts `fail` (checked before the write, a pass per table)."""
    counts = [c for c in columns if c.endswith(COUNT_SUFFIXES)]
    severity = "fail" if strict else "warn"
    rules: list[Rule] = [row_count_change("row_count_change", 0.5, "warn")]
    if key and strict:
        rules.insert(0, unique("key_unique", key, "fail"))
    if counts:
        predicate = " AND ".join(f"coalesce({c}, 0) >= 0" for c in counts)
        rules.append(row("counts_not_negative", predicate, severity, f"{', '.join(counts)} >= 0"))
    return tuple(rules)


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
