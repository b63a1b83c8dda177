"""The notebooks execute (nbclient, the venv's ipykernel) on a small demo-like lake and draw their plots.

The lake is tests/analysis_lake.py (written with delta-rs); LAKE_DIR and PLOTS_DIR point the notebooks at
temporary folders, so the demo's lake and var/plots are never touched.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from analysis_lake import build_lake

from tootlake.pipelines.analysis import run_notebook

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"

# notebook -> the PNG files it must write to PLOTS_DIR
EXPECTED_PLOTS = {
    "01_overview.ipynb": {"overview_posts_per_hour", "overview_top_hashtags", "overview_threat_levels",
                          "overview_sentiment_by_hashtag"},
    "02_time_travel.ipynb": {"time_travel_versions", "time_travel_posts_per_hour_first_version"},
    "03_data_quality.ipynb": {"dq_table_rows", "dq_quarantine_by_rule"},
}


def test_every_notebook_is_covered() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == set(EXPECTED_PLOTS)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED_PLOTS))
def test_notebook_executes_and_plots(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_lake(tmp_path / "lake")
    plots = tmp_path / "plots"
    monkeypatch.setenv("TOOTLAKE_HOME", str(REPO_ROOT))
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("PLOTS_DIR", str(plots))
    # The kernel inherits this process's environment; "python" in the kernel spec becomes this interpreter.
    notebook = run_notebook(NOTEBOOKS / name, executed_dir=tmp_path / "executed", timeout_s=180)
    assert (tmp_path / "executed" / name).is_file()
    repo_copy = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not any(cell.get("outputs") for cell in repo_copy.cells)  # the repository's copy stays stripped

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == len(EXPECTED_PLOTS[name])
    assert {p.stem for p in plots.glob("*.png")} == EXPECTED_PLOTS[name]
    assert all(p.stat().st_size > 5_000 for p in plots.glob("*.png"))  # a real figure, not an empty file
    text = "".join(out.get("text", "") for out in outputs)
    assert str(tmp_path / "lake") in text  # it read the test lake, not the demo's
    assert "is missing" not in text  # every section had its table
