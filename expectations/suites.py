"""Great Expectations suites of the published tables, by layer (pure data: run by pipelines/quality/gx.py).

Each expectation is (GX class name in great_expectations.expectations, keyword arguments), declared with
its table (`Table.suite`, built with tootlake.catalog.table's helpers). The suites describe a table as it
is published (a whole-table sample), where the per-batch rules of tables.py guard each hop: `tootlake dq
check --layer silver` runs them on demand, the jobs once per run.
"""

from __future__ import annotations

from tootlake.catalog.registry import TABLES
from tootlake.catalog.table import Expectation

SUITE_LAYERS = ("bronze", "silver", "gold")

SUITES: dict[str, dict[str, list[Expectation]]] = {
    layer: {t.name: list(t.suite) for t in TABLES if t.layer == layer and t.suite} for layer in SUITE_LAYERS
}

LAYERS = tuple(SUITES)
