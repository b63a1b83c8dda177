"""Query and plot helpers for the notebooks (notebooks/*.ipynb hold no logic of their own).

Queries are the scripts in `sql/duckdb/` run by DuckDB over the lake (`pipelines/lake.py`), so the notebooks,
`tootlake sql --file …` and the tests share one definition of each figure. Plots are matplotlib figures,
also written as PNG files to PLOTS_DIR (default `var/plots/`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from tootlake.package_data import package_path
from tootlake.pipelines import lake
from tootlake.pipelines.settings import Settings, load_settings

SQL_DIR = package_path("tootlake.sql", "duckdb")  # sql/duckdb of the checkout, shipped as package data
NOTEBOOKS = "notebooks"  # the notebooks' folder in the project root (not part of the package)
THREAT_COLOURS = {"NONE": "#9ecae1", "LOW": "#fdd49e", "MEDIUM": "#fc8d59", "HIGH": "#d7301f",
                  "UNSCORED": "#bdbdbd"}


def notebook_settings() -> Settings:
    """Settings for a notebook: TOOTLAKE_HOME when set, else the project root the notebook runs in.

    A notebook runs with notebooks/ as its working directory, so relative paths (LAKE_DIR, PLOTS_DIR)
    resolve against the folder above it, not against the cwd.
    """
    if os.environ.get("TOOTLAKE_HOME"):
        return load_settings()
    cwd = Path.cwd()
    return load_settings(tootlake_home=cwd.parent if cwd.name == NOTEBOOKS else cwd)


def require(settings: Settings, *names: str) -> None:
    """Stop a notebook early, saying what to run, when a table it reads is not in the lake yet."""
    missing = [name for name in names if name not in lake.list_tables(settings)]
    if missing:
        raise lake.LakeError(f"{', '.join(missing)} not in {settings.location(settings.lake_dir)} yet: run "
                             "`make demo` (or `tootlake silver` / `tootlake gold`) first")


# --- queries ------------------------------------------------------------------------------------------
def sql_text(name: str) -> str:
    """The statement of `sql/duckdb/<name>.sql` (name with or without the number prefix / suffix)."""
    matches = sorted(SQL_DIR.glob(f"{name}.sql")) or sorted(SQL_DIR.glob(f"*_{name}.sql"))
    if not matches:
        raise FileNotFoundError(f"no script {name!r} in {SQL_DIR}: "
                                f"{', '.join(p.stem for p in sorted(SQL_DIR.glob('*.sql')))}")
    return lake.strip_sql(matches[0].read_text(encoding="utf-8"))


def run_sql(settings: Settings, name_or_sql: str, as_of: dict[str, str | int] | None = None) -> pd.DataFrame:
    """A script from sql/duckdb by name (e.g. "top_hashtags") or a SQL statement, as a pandas DataFrame."""
    text = name_or_sql if " " in name_or_sql.strip() else sql_text(name_or_sql)
    return lake.query(settings, text, as_of).to_pandas()


def table_overview(settings: Settings) -> pd.DataFrame:
    """One row per lake table: current version, rows, last operation and when it ran."""
    rows = []
    for name in lake.list_tables(settings):
        table = lake.open_table(settings, name)
        last = lake.history(settings, name, limit=1)[0]
        rows.append({"table": name, "version": table.version(),
                     "rows": table.to_pyarrow_dataset().count_rows(),
                     "last_operation": last.operation, "last_commit_at": last.at})
    return pd.DataFrame(rows, columns=["table", "version", "rows", "last_operation", "last_commit_at"])


def versions(settings: Settings, name: str) -> pd.DataFrame:
    """One row per version of `name` (oldest first): when, operation, rows written, rows in the table."""
    rows = []
    for commit in reversed(lake.history(settings, name)):
        try:
            rows_then = lake.open_table(settings, name, commit.version).to_pyarrow_dataset().count_rows()
        except lake.LakeError:  # a version whose log was cleaned up (VACUUM / log retention)
            rows_then = None
        rows.append({"version": commit.version, "at": commit.at, "operation": commit.operation,
                     "rows_written": commit.rows_written, "rows": rows_then, "details": commit.details})
    return pd.DataFrame(rows)


def diff_summary(settings: Settings, name: str, from_version: int, to_version: int) -> pd.DataFrame:
    """Rows added / changed / removed between two versions as one row (keys as in `tootlake diff`)."""
    result = lake.diff(settings, name, from_version, to_version)
    return pd.DataFrame([{"table": name, "from": result.from_version, "to": result.to_version,
                          "key": ", ".join(result.key) or "(whole row)", **result.counts}])


# --- plots --------------------------------------------------------------------------------------------
def save(fig: Figure, settings: Settings, name: str) -> Path:
    """Write `fig` as <PLOTS_DIR>/<name>.png and return the path."""
    folder = settings.path(settings.plots_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes)


def _hour_axis(ax, hours: pd.Series) -> list[int]:
    """Bar positions 0..n-1 for the hours that have posts, labelled with at most ~12 readable ticks.

    Hours without posts are left out rather than drawn as empty time: the demo data is a few busy hours
    months apart, which a true time axis squeezes into invisible slivers.
    """
    labels = pd.to_datetime(hours).dt.strftime("%Y-%m-%d %H:00").tolist()
    positions = list(range(len(labels)))
    step = max(1, len(labels) // 12)
    ax.set_xticks(positions[::step], labels[::step], rotation=30, ha="right", fontsize=8)
    return positions


def plot_posts_per_hour(df: pd.DataFrame) -> Figure:
    """Bars of posts per UTC hour (df from the posts_per_hour script)."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    if df.empty:
        _empty(ax, "posts")
    else:
        ax.bar(_hour_axis(ax, df["hour_start"]), df["posts"], color="#3182bd")
    ax.set(title="Posts per hour (UTC; hours without posts left out)", xlabel="hour", ylabel="posts")
    return fig


def plot_top_hashtags(df: pd.DataFrame) -> Figure:
    """Horizontal bars of the most used hashtags (df from the top_hashtags script)."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(df))))
    if df.empty:
        _empty(ax, "hashtags")
    else:
        ordered = df.iloc[::-1]
        ax.barh("#" + ordered["hashtag"], ordered["posts"], color="#31a354")
    ax.set(title="Top hashtags", xlabel="posts")
    return fig


def plot_threat_levels(df: pd.DataFrame) -> Figure:
    """Stacked bars of posts per hour and threat level (df from the threat_levels_per_hour script)."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    if df.empty:
        _empty(ax, "scored posts")
    else:
        wide = df.pivot_table(index="hour_start", columns="threat_level", values="posts",
                              aggfunc="sum", fill_value=0)
        order = [level for level in THREAT_COLOURS if level in wide.columns]
        wide = wide[order]
        positions = _hour_axis(ax, pd.Series(wide.index))
        bottom = None
        for level in order:
            ax.bar(positions, wide[level], bottom=bottom, label=level, color=THREAT_COLOURS[level])
            bottom = wide[level].to_numpy() if bottom is None else bottom + wide[level].to_numpy()
        ax.legend(title="threat level", fontsize=8)
    ax.set(title="Threat levels over time (posts per hour, UTC)", xlabel="hour", ylabel="posts")
    return fig


def plot_sentiment_by_hashtag(df: pd.DataFrame) -> Figure:
    """Positive vs negative share per hashtag and net sentiment (df from the sentiment_by_hashtag script)."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.35 * len(df))))
    if df.empty:
        _empty(ax, "hashtags with scored posts")
    else:
        ordered = df.iloc[::-1]
        labels = "#" + ordered["hashtag"]
        ax.barh(labels, ordered["positive_share"], color="#1a9850", label="positive share")
        ax.barh(labels, -ordered["negative_share"], color="#d73027", label="negative share")
        ax.scatter(ordered["net_sentiment"], labels, color="black", zorder=3, label="net sentiment", s=14)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.legend(fontsize=8, loc="lower right")
    ax.set(title="Sentiment by hashtag", xlabel="share of scored posts (negative to the left)")
    return fig


def plot_versions(df: pd.DataFrame, name: str) -> Figure:
    """Rows in a table at each version (df from `versions`)."""
    fig, ax = plt.subplots(figsize=(8, 3))
    if df.empty:
        _empty(ax, "versions")
    else:
        ax.step(df["version"], df["rows"], where="post", marker="o")
        for _, row in df.iterrows():
            ax.annotate(row["operation"], (row["version"], row["rows"]), fontsize=7,
                        textcoords="offset points", xytext=(2, 4))
    ax.set(title=f"{name}: rows per version", xlabel="version", ylabel="rows")
    return fig


def plot_quarantine_by_rule(df: pd.DataFrame) -> Figure:
    """Quarantined records per rule (df from the quarantine_by_rule script)."""
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.4 * len(df))))
    if df.empty:
        _empty(ax, "quarantined records")
    else:
        ordered = df.iloc[::-1]
        ax.barh(ordered["rule"], ordered["records"], color="#756bb1")
    ax.set(title="Quarantined records by rule", xlabel="records")
    return fig


def plot_table_rows(df: pd.DataFrame) -> Figure:
    """Rows per lake table (df from `table_overview`), log scale since bronze dwarfs gold."""
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(df))))
    if df.empty:
        _empty(ax, "tables")
    else:
        ordered = df.iloc[::-1]
        ax.barh(ordered["table"], ordered["rows"].clip(lower=1), color="#636363")
        ax.set_xscale("log")
    ax.set(title="Rows per table (current version)", xlabel="rows (log scale)")
    return fig


# --- running the notebooks ----------------------------------------------------------------------------
def run_notebook(path: Path, executed_dir: Path | None = None, timeout_s: int = 300):
    """Execute one notebook on this interpreter's ipykernel (the kernel inherits LAKE_DIR, PLOTS_DIR, ...).

    The notebook in the repository is left as it is (outputs stay stripped); with `executed_dir`, the
    executed copy is written there. Returns the executed notebook; raises on the first failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # "python" in the kernel spec is replaced by this interpreter, so the kernel sees the same packages.
    NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    if executed_dir is not None:
        executed_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed_dir / path.name)
    return notebook


def run_notebooks(executed_dir: str | Path = "var/notebooks") -> int:
    """`make notebooks`: run every notebook on the lake (plots: PLOTS_DIR, executed copies: executed_dir)."""
    settings = notebook_settings()
    target = settings.path(Path(executed_dir))
    for path in sorted(settings.path(Path(NOTEBOOKS)).glob("*.ipynb")):
        print(f"running {path.name} ...", flush=True)
        run_notebook(path, target)
    print(f"plots in {settings.path(settings.plots_dir)}, executed notebooks in {target}")
    return 0
