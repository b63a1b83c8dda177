"""`pip install .` (not editable) gives a working `tootlake`: the SQL scripts, the model artifacts and
Spark's log configuration are package data found through importlib.resources in the installed copy.

The checkout's sources are copied to a temporary folder and installed with the venv's pip into a target
folder: no network (--no-index), no build isolation (the venv's setuptools), no dependencies (they are
the venv's). Everything then runs from a third folder with only the target on PYTHONPATH, so nothing can
come from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = (".git", ".venv", "var", "jars", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
               ".ruff_cache", "tests", "notebooks", "spark-warehouse", "metastore_db")

PROBE = r"""
import json, sys
from pathlib import Path

import tootlake
from tootlake.models.data import shared_data_dir
from tootlake.models.sentiment import DEFAULT_ARTIFACT_DIR as SENTIMENT, model_version
from tootlake.models.threat import DEFAULT_ARTIFACT_DIR as THREAT, ThreatModel
from tootlake.pipelines.analysis import SQL_DIR as DUCKDB_DIR, sql_text
from tootlake.pipelines.databases.dbinit import SQL_DIR, script_files
from tootlake.pipelines.spark import LOG4J2_CONFIG

proba = ThreatModel.load().predict_proba(["have a nice day", "I will find you"])
print(json.dumps({
    "package": tootlake.__file__,
    "sql_dir": str(SQL_DIR),
    "postgres": [p.name for p in script_files("postgres")],
    "oracle": [p.name for p in script_files("oracle")],
    "duckdb_dir": str(DUCKDB_DIR),
    "top_hashtags": sql_text("top_hashtags"),
    "threat": str(THREAT),
    "threat_files": sorted(p.name for p in THREAT.iterdir()),
    "threat_rows": len(proba),
    "sentiment": str(SENTIMENT),
    "sentiment_version": model_version(),
    "log4j2": str(LOG4J2_CONFIG) if LOG4J2_CONFIG.is_file() else None,
    "shared_data": str(shared_data_dir()),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(target folder, environment that sees only it, a working directory outside the checkout)."""
    root = tmp_path_factory.mktemp("packaging")
    source, target, elsewhere = root / "src", root / "site", root / "elsewhere"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES), symlinks=True)
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600, cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(source)  # the installed copy must not point back at its sources either
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "TOOTLAKE_HOME", "SHARED_DATA_DIR", "THREAT_MODEL_DIR",
                           "SENTIMENT_MODEL_DIR")}
    env.update(PYTHONPATH=str(target), PYTHONNOUSERSITE="1", SHARED_DATA_DIR=str(elsewhere / "data"))
    return target, env, elsewhere


def _files(folder: Path) -> set[str]:
    """Relative paths of the files Spark and onnxruntime need (Spark's .crc checksums are not shipped)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_console_script_help(installed) -> None:
    target, env, elsewhere = installed
    for argv in (["--help"], ["db", "init", "--help"], ["bench", "gold", "--help"]):
        done = subprocess.run([str(target / "bin" / "tootlake"), *argv], capture_output=True, text=True,
                              timeout=120, cwd=elsewhere, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: tootlake"), done.stdout


def test_package_data_comes_from_the_installed_copy(installed) -> None:
    target, env, elsewhere = installed
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                          cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    package = target / "tootlake"
    assert Path(found["package"]) == package / "__init__.py"
    for key in ("sql_dir", "duckdb_dir", "threat", "sentiment", "log4j2"):
        assert found[key] is not None and Path(found[key]).is_relative_to(package), (key, found[key])
    assert found["postgres"] == sorted(p.name for p in (REPO_ROOT / "sql" / "postgres").glob("*.sql"))
    assert found["oracle"] == sorted(p.name for p in (REPO_ROOT / "sql" / "oracle").glob("*.sql"))
    assert found["threat_files"] == ["config.json", "model.onnx", "tokenizer.json"]
    assert found["threat_rows"] == 2
    checkout_pipeline = REPO_ROOT / "models" / "sentiment" / "artifact" / "pipeline"
    assert _files(Path(found["sentiment"])) == _files(checkout_pipeline)

    from tootlake.models.sentiment import model_version
    from tootlake.pipelines.analysis import sql_text

    assert found["sentiment_version"] == model_version(checkout_pipeline)
    assert found["top_hashtags"] == sql_text("top_hashtags")
    # the shared data folder comes from the settings, never from where the code is
    assert found["shared_data"] == str(elsewhere / "data")
