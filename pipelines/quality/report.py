"""`tootlake dq report`: one self-contained HTML page over dq.metrics and the quarantine.

Per table and rule: the latest run's result (rows checked / failed, summed over the run's batches) and a
trend over runs (a matplotlib PNG per table, embedded as base64); the quarantine counts by rule; links to
the Great Expectations Data Docs. Everything is read with delta-rs (no Spark).
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tootlake.pipelines.quality.guard import METRICS_TABLE, QUARANTINE_TABLE
from tootlake.pipelines.quality.gx import docs_index, gx_root
from tootlake.pipelines.settings import Settings

RUN_KEY = ["run_id", "job", "table", "hop", "rule", "severity"]


def load_metrics(settings: Settings) -> pd.DataFrame:
    """dq.metrics as pandas (empty frame with the columns when the table does not exist yet)."""
    from tootlake.pipelines.lake import Lake
    from tootlake.pipelines.quality.guard import METRICS_SCHEMA

    lake = Lake(settings)
    if not lake.exists(METRICS_TABLE):
        return METRICS_SCHEMA.empty_table().to_pandas()
    return lake.table(METRICS_TABLE).to_pandas()


def per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run, table and rule: rows checked / failed summed over the run's batches."""
    if metrics.empty:
        return metrics.assign(batches=pd.Series(dtype="int64"))
    grouped = metrics.groupby(RUN_KEY, dropna=False).agg(
        rows_checked=("rows_checked", "sum"), rows_failed=("rows_failed", "sum"),
        batches=("batch_id", "size"), checked_at=("checked_at", "max"), note=("note", "last"))
    return grouped.reset_index().sort_values("checked_at")


def latest(runs: pd.DataFrame) -> pd.DataFrame:
    """The most recent run's result for every (job, table, rule)."""
    if runs.empty:
        return runs
    return runs.sort_values("checked_at").groupby(["job", "table", "rule"], dropna=False).tail(1)


def quarantine_by_rule(settings: Settings) -> dict[str, int]:
    from tootlake.pipelines.lake import Lake

    lake = Lake(settings)
    if not lake.exists(QUARANTINE_TABLE):
        return {}
    rules = lake.arrow(QUARANTINE_TABLE, columns=["rules"]).column("rules").to_pylist()
    counts: dict[str, int] = {}
    for names in rules:
        for name in names or ["(none)"]:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def trend_png(runs: pd.DataFrame, table: str) -> str:
    """Base64 PNG: rows checked per run (bars) and failed rows per rule (lines, rules that ever failed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = runs[runs["table"] == table]
    order = data.groupby("run_id")["checked_at"].max().sort_values()
    labels = [f"{i + 1}" for i in range(len(order))]
    position = {run: i for i, run in enumerate(order.index)}
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=100)
    checked = data.groupby("run_id")["rows_checked"].max().reindex(order.index).fillna(0)
    ax.bar(range(len(order)), checked.values, color="#d9e2ec", label="rows checked (max over rules)")
    ax.set_ylabel("rows")
    ax2 = ax.twinx()
    failing = [rule for rule, part in data.groupby("rule") if part["rows_failed"].sum() > 0]
    for rule in failing[:8]:
        part = data[data["rule"] == rule]
        xs = [position[r] for r in part["run_id"]]
        ax2.plot(xs, part["rows_failed"].values, marker="o", label=rule)
    ax2.set_ylabel("rows failed")
    ax2.set_ylim(bottom=0)
    ax.set_xticks(range(len(order)), labels)
    ax.set_xlabel("run (oldest -> newest)")
    ax.set_title(f"{table}: {'rules with failures' if failing else 'no rule failed in any run'}", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    names = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(handles, names, fontsize=7, loc="upper left", framealpha=0.8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2933; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccd; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .85em; }
th, td { border: 1px solid #d9e2ec; padding: .25em .6em; text-align: left; }
th { background: #f0f4f8; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1b7f3b; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.warn { color: #b54708; font-weight: 600; } .muted { color: #7b8794; }
"""


def _status(row: pd.Series) -> str:
    if int(row["rows_failed"]) == 0:
        return '<span class="ok">pass</span>'
    css = {"fail": "bad", "drop": "warn", "warn": "warn"}.get(str(row["severity"]), "bad")
    word = {"fail": "FAILED", "drop": "dropped", "warn": "warning"}.get(str(row["severity"]), "failed")
    return f'<span class="{css}">{word}</span>'


def _link(target: Path, out: Path) -> str:
    try:
        return os.path.relpath(target, out.parent)
    except ValueError:
        return target.as_uri()


def render(settings: Settings, out: Path, now: datetime | None = None) -> str:
    metrics = load_metrics(settings)
    runs = per_run(metrics)
    last = latest(runs)
    esc = html.escape
    now = now or datetime.now(UTC)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tootlake data quality</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>tootlake data quality</h1>",
             f"<p class='muted'>Generated {esc(now.strftime('%Y-%m-%d %H:%M:%S UTC'))} from "
             f"{esc(settings.table_uri(METRICS_TABLE))}: {metrics.shape[0]} metric rows, "
             f"{runs['run_id'].nunique() if not runs.empty else 0} runs.</p>"]
    index = docs_index(settings)
    if index.exists():
        parts.append(f"<p>Great Expectations Data Docs: <a id='data-docs' href='{esc(_link(index, out))}'>"
                     f"{esc(str(index))}</a></p>")
    else:
        parts.append("<p class='muted'>No Great Expectations Data Docs yet: run "
                     "<code>tootlake dq check --layer silver</code>.</p>")
    if last.empty:
        parts.append("<p>No data-quality metrics yet: run <code>tootlake demo</code> or a layer job.</p>")
    tables = list(dict.fromkeys(last.sort_values(["table", "job"])["table"])) if not last.empty else []
    if tables:
        parts.append("<h2>Summary</h2><table><tr><th>table</th><th>rules</th><th>failing now</th>"
                     "<th>last checked</th></tr>")
        for table in tables:
            rows = last[last["table"] == table]
            bad = int((rows["rows_failed"] > 0).sum())
            parts.append(f"<tr><td><a href='#t-{esc(table)}'>{esc(table)}</a></td><td class='n'>{len(rows)}"
                         f"</td><td class='n {'bad' if bad else 'ok'}'>{bad}</td>"
                         f"<td>{esc(str(rows['checked_at'].max())[:19])}</td></tr>")
        parts.append("</table>")
    for table in tables:
        rows = last[last["table"] == table].sort_values(["job", "severity", "rule"])
        parts.append(f"<h2 id='t-{esc(table)}'>{esc(table)}</h2>")
        png = trend_png(runs, table)
        parts.append(f"<img alt='trend of {esc(table)}' src='data:image/png;base64,{png}'>")
        parts.append("<table><tr><th>job</th><th>hop</th><th>rule</th><th>severity</th><th>rows checked</th>"
                     "<th>rows failed</th><th>failed %</th><th>status</th><th>batches</th><th>checked at</th>"
                     "<th>note</th></tr>")
        for _, r in rows.iterrows():
            checked, failed = int(r["rows_checked"]), int(r["rows_failed"])
            share = f"{failed / checked:.1%}" if checked else "-"
            parts.append(
                f"<tr><td>{esc(str(r['job']))}</td><td>{esc(str(r['hop']))}</td><td>{esc(str(r['rule']))}</td>"
                f"<td>{esc(str(r['severity']))}</td><td class='n'>{checked}</td><td class='n'>{failed}</td>"
                f"<td class='n'>{share}</td><td>{_status(r)}</td><td class='n'>{int(r['batches'])}</td>"
                f"<td>{esc(str(r['checked_at'])[:19])}</td>"
                f"<td class='muted'>{esc(str(r['note'] or ''))}</td></tr>")
        parts.append("</table>")
    quarantined = quarantine_by_rule(settings)
    parts.append(f"<h2 id='quarantine'>Quarantine ({esc(QUARANTINE_TABLE)}) by rule</h2>")
    if quarantined:
        parts.append("<table><tr><th>rule</th><th>records</th></tr>" + "".join(
            f"<tr><td>{esc(k)}</td><td class='n'>{v}</td></tr>" for k, v in quarantined.items()) + "</table>")
    else:
        parts.append("<p class='muted'>No quarantined records.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def default_report_path(settings: Settings) -> Path:
    return gx_root(settings) / "report.html"


def write_report(settings: Settings, out: Path | None = None) -> Path:
    out = out or default_report_path(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(settings, out), encoding="utf-8")
    return out


def summary_lines(settings: Settings, run_ids: list[str] | None = None) -> list[str]:
    """Short text for the demo: per run's table and rule with failures, and totals."""
    runs = per_run(load_metrics(settings))
    if run_ids:
        runs = runs[runs["run_id"].isin(run_ids)]
    if runs.empty:
        return ["  no data-quality metrics (DQ_ENABLED=false?)"]
    lines = []
    for (job, table), part in latest(runs).groupby(["job", "table"], sort=False):
        bad = part[part["rows_failed"] > 0]
        detail = ", ".join(f"{r['rule']} ({r['severity']}) {int(r['rows_failed'])}"
                           for _, r in bad.iterrows())
        lines.append(f"  {job:<10} {table:<26} {len(part):>3} rules, {int(part['rows_checked'].max())} rows "
                     f"checked; " + (f"failed: {detail}" if detail else "all passed"))
    return lines
