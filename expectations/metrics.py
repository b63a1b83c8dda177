"""dq.metrics: the counts every data-quality check appends (written by pipelines/quality/guard.py)."""

from __future__ import annotations

import pyarrow as pa

from tootlake.catalog.table import Table
from tootlake.catalog.vocab import DQ_METRICS

METRICS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("job", pa.string()),
    ("table", pa.string()),
    ("hop", pa.string()),
    ("rule", pa.string()),
    ("severity", pa.string()),
    ("rows_checked", pa.int64()),
    ("rows_failed", pa.int64()),
    ("batch_id", pa.int64()),
    ("checked_at", pa.timestamp("us", tz="UTC")),
    ("note", pa.string()),
])

METRICS = Table(
    DQ_METRICS,
    grain="one row per job run, batch, table and rule (job: silver, gold, sync, or gx:<layer>)",
    key=(),  # append-only counts: `tootlake diff` compares it row by row
    columns=tuple(METRICS_SCHEMA.names),
    schema=METRICS_SCHEMA,
)
