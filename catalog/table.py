"""One table's declaration: `Table`. Each table is declared once, beside its transform (see the package).

A `Table` says what the table is (logical name `<layer>.<table>`, stored at `<lake>/<layer>/<table>`), its
grain (what one row is), its key (row identity: `tootlake diff`, examples of a failing rule), its columns
(and Spark schema where the layer owns one), its partitioning, the data-quality rules checked per hop
(`rules`: {hop: rules}) and the Great Expectations suite of the published table (`suite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tootlake.catalog.rules import Rule, TableRules
from tootlake.catalog.vocab import LAYERS

# A Great Expectations expectation: (class name in great_expectations.expectations, keyword arguments).
Expectation = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Table:
    name: str  # "<layer>.<table>"
    grain: str  # one row per ...
    key: tuple[str, ...]  # row identity
    columns: tuple[str, ...]
    schema: Any = None  # the schema the writer uses, when fixed: a Spark StructType (or a pyarrow Schema)
    partition_by: tuple[str, ...] = ()
    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)  # hop -> rules checked there
    suite: tuple[Expectation, ...] = ()  # GX expectations of the published table

    def __post_init__(self) -> None:
        layer, _, short = self.name.partition(".")
        if layer not in LAYERS or not short:
            raise ValueError(f"table name must be '<layer>.<table>' with a layer in {LAYERS}: {self.name!r}")
        if self.schema is not None and tuple(self.schema.names) != self.columns:  # Spark or pyarrow schema
            raise ValueError(f"{self.name}: columns differ from the schema's fields")
        unknown = [c for c in (*self.key, *self.partition_by) if c not in self.columns]
        if unknown:
            raise ValueError(f"{self.name}: key / partition columns {unknown} are not columns")
        for hop, rules in self.rules.items():
            TableRules(self.name, hop, self.key, rules)  # validates the rule names

    @property
    def layer(self) -> str:
        return self.name.partition(".")[0]

    @property
    def short_name(self) -> str:
        """The name inside its layer (its folder): `top_hashtag_daily` for gold.top_hashtag_daily."""
        return self.name.partition(".")[2]

    def rules_at(self, hop: str, *extra: Rule) -> TableRules:
        """The rules checked at `hop` (`extra` first: rules that need run-time values, e.g. the clock)."""
        return TableRules(self.name, hop, self.key, (*extra, *self.rules[hop]))


# --- Great Expectations suite building blocks ----------------------------------------------------------
def has_rows() -> Expectation:
    return ("ExpectTableRowCountToBeBetween", {"min_value": 1})


def not_null(*columns: str) -> tuple[Expectation, ...]:
    return tuple(("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns)


def unique_values(column: str) -> Expectation:
    return ("ExpectColumnValuesToBeUnique", {"column": column})


def unique_together(*columns: str) -> Expectation:
    return ("ExpectCompoundColumnsToBeUnique", {"column_list": list(columns)})


def between(column: str, low: float, high: float | None = None) -> Expectation:
    return ("ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high})


def one_of(column: str, values: tuple[str, ...]) -> Expectation:
    return ("ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(values)})
