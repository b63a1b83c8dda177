"""Great Expectations: validate a layer's published tables against expectations/suites.py, once per job
run or on demand (`tootlake dq check`), and build the Data Docs.

Why pandas and not Spark: GX on a Spark DataFrame costs ~10 s per validation even on tiny data. Each table
is read with delta-rs (no Spark) and a sample of DQ_GX_SAMPLE_ROWS rows is validated in pandas.
The GX project is a file context under <lake>/dq/ (gx/...); Data Docs end up in
<lake>/dq/gx/uncommitted/data_docs/local_site/index.html. No network: analytics are off.
Each expectation's result is also appended to dq.metrics (job "gx:<layer>"), so the report trends them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tootlake.expectations.suites import LAYERS, SUITES
from tootlake.pipelines.settings import Settings, is_object_store

logger = logging.getLogger(__name__)

DATASOURCE = "lake"
BATCH = "whole_sample"


@dataclass
class ExpectationOutcome:
    expectation: str  # e.g. expect_column_values_to_be_unique(post_id)
    success: bool
    element_count: int | None
    unexpected_count: int | None
    examples: list[Any] = field(default_factory=list)


@dataclass
class TableValidation:
    table: str
    success: bool
    rows_validated: int
    rows_total: int
    seconds: float
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    error: str | None = None  # the table could not be read (e.g. does not exist yet)


@dataclass
class LayerValidation:
    layer: str
    tables: list[TableValidation]
    docs_index: Path | None
    seconds: float

    @property
    def success(self) -> bool:
        return all(t.success for t in self.tables)


def gx_root(settings: Settings) -> Path:
    """The GX project (suites, Data Docs, the DQ report): `<lake>/dq`, or `<state>/dq` when the lake is on
    object storage (these are local HTML files, not lake tables)."""
    if is_object_store(settings.lake_dir):
        return settings.path(settings.state_dir) / "dq"
    return settings.path(settings.lake_dir) / "dq"


def docs_index(settings: Settings) -> Path:
    return gx_root(settings) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _context(settings: Settings):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no phone-home from a lake job
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = gx_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    bars = context.variables.progress_bars
    enabled = bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True)
    if enabled:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _sample(settings: Settings, table: str, rows: int):
    """(pandas sample, total rows) of a lake table read with delta-rs."""
    from tootlake.pipelines.lake import Lake

    lake = Lake(settings)
    if not lake.exists(table):
        raise FileNotFoundError(f"no Delta table {table} at {lake.location(table)}: "
                                "run that layer's job first")
    dataset = lake.table(table).to_pyarrow_dataset()
    total = dataset.count_rows()
    return dataset.head(rows).to_pandas(), total


def _label(name: str, kwargs: dict) -> str:
    target = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or "table"
    return f"{name}({target})"


def validate_table(context, settings: Settings, table: str, spec: list[tuple[str, dict]]) -> TableValidation:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    started = time.monotonic()
    try:
        frame, total = _sample(settings, table, settings.dq_gx_sample_rows)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable table is a failed check, said clearly
        return TableValidation(table, False, 0, 0, time.monotonic() - started, error=str(exc))
    source = context.data_sources.add_or_update_pandas(DATASOURCE)
    asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(table)
    batch = next((b for b in asset.batch_definitions if b.name == BATCH), None)
    batch = batch or asset.add_batch_definition_whole_dataframe(BATCH)
    present = set(frame.columns)
    expectations = [
        getattr(gxe, name)(**kwargs) for name, kwargs in spec
        if all(c in present for c in [kwargs.get("column"), *(kwargs.get("column_list") or [])] if c)
    ]
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=table, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=table, data=batch, suite=suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=table, validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "SUMMARY"}))
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    outcomes = []
    for run in result.run_results.values():
        for item in run.results:
            config = item.expectation_config
            outcome = item.result or {}
            outcomes.append(ExpectationOutcome(
                _label(config.type, config.kwargs),
                bool(item.success), outcome.get("element_count"), outcome.get("unexpected_count"),
                list(outcome.get("partial_unexpected_list") or [])[:5]))
    return TableValidation(table, bool(result.success), len(frame), total, time.monotonic() - started,
                           outcomes)


def validate_layer(settings: Settings, layer: str, run_id: str | None = None,
                   record: bool = True) -> LayerValidation:
    """Run the layer's suites (one checkpoint per table), rebuild the Data Docs, append to dq.metrics."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    started = time.monotonic()
    context = _context(settings)
    tables = [validate_table(context, settings, table, spec) for table, spec in SUITES[layer].items()]
    index = docs_index(settings)
    outcome = LayerValidation(layer, tables, index if index.exists() else None, time.monotonic() - started)
    if record:
        from tootlake.pipelines.quality.guard import append_metrics, new_run_id

        job = f"gx:{layer}"
        append_metrics(settings, metrics_rows(outcome, run_id or new_run_id(job), job, datetime.now(UTC)))
    return outcome


def metrics_rows(outcome: LayerValidation, run_id: str, job: str, at: datetime) -> list[dict[str, Any]]:
    rows = []
    for t in outcome.tables:
        if t.error:
            rows.append({"run_id": run_id, "job": job, "table": t.table, "hop": "gx",
                         "rule": "table_readable", "severity": "fail", "rows_checked": 0,
                         "rows_failed": 1, "batch_id": None,
                         "checked_at": at, "note": t.error[:300]})
        for o in t.outcomes:
            failed = o.unexpected_count if o.unexpected_count is not None else (0 if o.success else 1)
            rows.append({"run_id": run_id, "job": job, "table": t.table, "hop": "gx", "rule": o.expectation,
                         "severity": "fail", "rows_checked": o.element_count or t.rows_validated,
                         "rows_failed": int(failed), "batch_id": None,
                         "checked_at": at, "note": f"sample {t.rows_validated} of {t.rows_total} rows"})
    return rows


def format_validation(outcome: LayerValidation, verbose: bool = False) -> str:
    lines = [f"GX {outcome.layer}: {'PASSED' if outcome.success else 'FAILED'} "
             f"({len(outcome.tables)} tables, {outcome.seconds:.1f} s)"]
    for t in outcome.tables:
        if t.error:
            lines.append(f"  FAIL {t.table}: {t.error}")
            continue
        bad = [o for o in t.outcomes if not o.success]
        lines.append(f"  {'ok  ' if t.success else 'FAIL'} {t.table}: {len(t.outcomes) - len(bad)}/"
                     f"{len(t.outcomes)} expectations met on {t.rows_validated} of {t.rows_total} rows "
                     f"({t.seconds:.1f} s)")
        for o in bad if not verbose else t.outcomes:
            examples = f", e.g. {o.examples}" if o.examples else ""
            unexpected = o.unexpected_count if o.unexpected_count is not None else "?"
            lines.append(f"       {'ok' if o.success else 'x '} {o.expectation}: "
                         f"{unexpected} unexpected{examples}")
    if outcome.docs_index:
        lines.append(f"  Data Docs: {outcome.docs_index.as_uri()}")
    return "\n".join(lines)


def after_job_run(settings: Settings, layer: str, run_id: str | None = None,
                  log=logger.info) -> LayerValidation | None:
    """The jobs' once-per-run validation: logs a short result, never raises (the job already published;
    `tootlake dq check` is the gate)."""
    if not settings.dq_gx_enabled:
        return None
    try:
        outcome = validate_layer(settings, layer, run_id)
    except Exception as exc:  # noqa: BLE001
        log(f"[dq] Great Expectations on {layer} could not run: {type(exc).__name__}: {exc}")
        return None
    log(format_validation(outcome))
    return outcome
