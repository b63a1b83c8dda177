"""Time travel, diff, restore and DuckDB SQL over a tiny delta-rs lake (tests/analysis_lake.py), no Spark."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from analysis_lake import build_lake

from tootlake.pipelines import lake
from tootlake.pipelines.cli import main
from tootlake.pipelines.cli.analysis import render
from tootlake.pipelines.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lake_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings (and env, for the CLI) pointing at a fresh tiny lake."""
    build_lake(tmp_path / "lake")
    monkeypatch.setenv("TOOTLAKE_HOME", str(REPO_ROOT))
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "lake"))
    return load_settings()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- discovery and versions ---------------------------------------------------------------------------
def test_list_tables_finds_delta_folders_only(lake_settings: Settings) -> None:
    (lake_settings.path(lake_settings.lake_dir) / "gold" / "not_delta").mkdir(parents=True)
    assert list(lake.list_tables(lake_settings)) == [
        "bronze.posts_raw", "gold.sentiment_by_hashtag", "silver.posts", "silver.posts_quarantine"]


def test_unknown_table_lists_the_valid_ones(lake_settings: Settings, capsys) -> None:
    code, _, err = run_cli(capsys, "history", "silver.postz")
    assert code == 2
    assert "unknown table 'silver.postz'" in err
    assert "silver.posts, silver.posts_quarantine" in err


def test_empty_lake_says_what_to_run(tmp_path: Path) -> None:
    settings = load_settings(tootlake_home=REPO_ROOT, lake_dir=tmp_path / "nothing")
    with pytest.raises(lake.LakeError, match="tootlake demo"):
        lake.table_path(settings, "silver.posts")


def test_parse_as_of() -> None:
    assert lake.parse_as_of("3") == 3
    assert lake.parse_as_of("2026-11-23T14:00:00") == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert lake.parse_as_of("2026-11-23T14:00:00Z") == datetime(2026, 11, 23, 14, tzinfo=UTC)
    plus2 = lake.parse_as_of("2026-11-23T16:00:00+02:00")
    assert plus2.utcoffset() == timedelta(hours=2) and plus2 == datetime(2026, 11, 23, 14, tzinfo=UTC)
    with pytest.raises(lake.LakeError, match="neither a version"):
        lake.parse_as_of("yesterday")


def test_history_newest_first_with_rows_written(lake_settings: Settings) -> None:
    commits = lake.history(lake_settings, "silver.posts")
    assert [c.version for c in commits] == [1, 0]
    assert [c.operation for c in commits] == ["WRITE", "WRITE"]
    assert [c.rows_written for c in commits] == [4, 4]
    assert "mode=Overwrite" in commits[0].details
    assert commits[0].at >= commits[1].at


def test_open_table_checks_versions_and_timestamps(lake_settings: Settings) -> None:
    assert lake.open_table(lake_settings, "silver.posts", "0").version() == 0
    with pytest.raises(lake.LakeError, match="versions 0..1; there is no version 7"):
        lake.open_table(lake_settings, "silver.posts", 7)
    with pytest.raises(lake.LakeError, match="did not exist yet"):
        lake.open_table(lake_settings, "silver.posts", "2001-01-01T00:00:00")
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert lake.open_table(lake_settings, "silver.posts", now.isoformat()).version() == 1


# --- show ---------------------------------------------------------------------------------------------
def test_show_as_of_version(lake_settings: Settings, capsys) -> None:
    code, out, _ = run_cli(capsys, "show", "silver.posts", "--as-of", "0",
                           "--columns", "post_id,threat_level")
    assert code == 0
    assert "silver.posts @ version 0: 4 rows, showing 4" in out
    assert "a/3" in out and "HIGH" in out and "a/5" not in out
    code, out, _ = run_cli(capsys, "show", "silver.posts", "--limit", "2", "--format", "json",
                           "--columns", "post_id,hashtags,created_at")
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [
        {"post_id": "a/1", "hashtags": ["Python", "python ", "data"],
         "created_at": "2023-05-01T10:05:00+00:00"},
        {"post_id": "a/2", "hashtags": ["python"], "created_at": "2023-05-01T10:45:00+00:00"},
    ]


def test_show_wrong_version_and_column(lake_settings: Settings, capsys) -> None:
    code, _, err = run_cli(capsys, "show", "silver.posts", "--as-of", "9")
    assert code == 2 and "no version 9" in err
    code, _, err = run_cli(capsys, "show", "silver.posts", "--columns", "nope")
    assert code == 2 and "unknown column(s) ['nope']" in err


# --- diff ---------------------------------------------------------------------------------------------
def test_diff_by_post_id(lake_settings: Settings, capsys) -> None:
    result = lake.diff(lake_settings, "silver.posts", 0, 1)
    assert result.key == ("post_id",)
    assert result.counts == {"added": 1, "changed": 1, "removed": 1}
    assert result.added.column("post_id").to_pylist() == ["a/5"]
    assert result.changed.column("post_id").to_pylist() == ["a/2"]
    assert result.removed.column("post_id").to_pylist() == ["a/3"]
    assert result.changed_columns == {"threat_level": 1, "contains_hate_speech": 1}
    code, out, _ = run_cli(capsys, "diff", "silver.posts", "--from", "0", "--to", "1")
    assert code == 0
    assert "added 1, changed 1, removed 1" in out
    assert "threat_level (1)" in out
    # Backwards is the mirror image.
    assert lake.diff(lake_settings, "silver.posts", 1, 0).counts == {"added": 1, "changed": 1, "removed": 1}
    assert lake.diff(lake_settings, "silver.posts", 1, 1).counts == {"added": 0, "changed": 0, "removed": 0}


def test_diff_tables_composite_key_null_safe() -> None:
    old = pa.table({"partition": [0, 0, None], "offset": [1, 2, 3], "v": ["a", None, "c"]})
    new = pa.table({"partition": [0, 0, None, 1], "offset": [1, 2, 3, 1], "v": ["a", "b", "c", "d"]})
    added, changed, removed, columns = lake.diff_tables(old, new, ("partition", "offset"))
    assert added.to_pylist() == [{"partition": 1, "offset": 1, "v": "d"}]
    assert changed.to_pylist() == [{"partition": 0, "offset": 2, "v": "b"}]  # null -> "b" is a change
    assert removed.num_rows == 0
    assert columns == {"v": 1}


def test_diff_without_key_compares_whole_rows() -> None:
    old = pa.table({"a": [1, 1, 2], "b": ["x", "x", "y"]})
    new = pa.table({"a": [1, 2, 3], "b": ["x", "z", "w"]})
    added, changed, removed, _ = lake.diff_tables(old, new)
    assert sorted(added.to_pylist(), key=str) == [{"a": 2, "b": "z"}, {"a": 3, "b": "w"}]
    assert changed.num_rows == 0
    # EXCEPT ALL: one of the two identical (1, x) rows is gone.
    assert sorted(removed.to_pylist(), key=str) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_every_table_key_names_real_columns() -> None:
    """The diff keys of the silver tables stay in step with the silver contract."""
    from tootlake.silver.schema import POSTS_SCHEMA, QUARANTINE_SCHEMA

    assert set(lake.table_keys()["silver.posts"]) <= set(POSTS_SCHEMA.fieldNames())
    assert set(lake.table_keys()["silver.posts_quarantine"]) <= set(QUARANTINE_SCHEMA.fieldNames())


# --- restore ------------------------------------------------------------------------------------------
def test_restore_refuses_without_terminal(lake_settings: Settings, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a tty, as in CI
    code, _, err = run_cli(capsys, "restore", "silver.posts", "--to", "0")
    assert code == 2
    assert "--yes" in err
    assert lake.open_table(lake_settings, "silver.posts").version() == 1


def test_restore_asks_on_a_terminal(lake_settings: Settings, capsys, monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    code, _, err = run_cli(capsys, "restore", "silver.posts", "--to", "0")
    assert code == 1 and "not restored" in err
    assert lake.open_table(lake_settings, "silver.posts").version() == 1


def test_restore_yes_brings_the_old_content_back(lake_settings: Settings, capsys) -> None:
    before = lake.read(lake_settings, "silver.posts", 0).sort_by("post_id")
    code, out, _ = run_cli(capsys, "restore", "silver.posts", "--to", "0", "--yes")
    assert code == 0
    assert "as version 2" in out
    assert lake.read(lake_settings, "silver.posts").sort_by("post_id").equals(before)
    latest = lake.history(lake_settings, "silver.posts")[0]
    assert (latest.version, latest.operation) == (2, "RESTORE")
    code, out, _ = run_cli(capsys, "restore", "silver.posts", "--to", "2", "--yes")
    assert code == 0 and "nothing to restore" in out


# --- sql ----------------------------------------------------------------------------------------------
def test_sql_schema_qualified_names_and_as_of(lake_settings: Settings, capsys) -> None:
    query = "SELECT count(*) AS n FROM silver.posts WHERE NOT is_deleted"
    code, out, _ = run_cli(capsys, "sql", query, "--format", "csv")
    assert (code, out) == (0, "n\n3\n")
    code, out, _ = run_cli(capsys, "sql", query, "--format", "csv", "--as-of", "silver.posts=0")
    assert (code, out) == (0, "n\n3\n")
    code, out, _ = run_cli(capsys, "sql", "SELECT post_id FROM silver.posts ORDER BY 1", "--format", "csv",
                           "--as-of", "silver.posts=0")
    assert out == "post_id\na/1\na/2\na/3\na/4\n"


def test_sql_errors(lake_settings: Settings, capsys) -> None:
    code, _, err = run_cli(capsys, "sql", "SELECT * FROM gold.nothing")
    assert code == 1 and "nothing does not exist" in err and "tables: bronze.posts_raw" in err
    code, _, err = run_cli(capsys, "sql", "SELECT 1", "--as-of", "silver.nope=1")
    assert code == 2 and "unknown table 'silver.nope'" in err
    code, _, err = run_cli(capsys, "sql", "SELECT 1", "--as-of", "silver.posts")
    assert code == 2 and "TABLE=VERSION" in err
    code, _, err = run_cli(capsys, "sql")
    assert code == 2 and "--file" in err


def sql_file(capsys, name: str, *extra: str) -> list[dict]:
    path = REPO_ROOT / "sql" / "duckdb" / name
    code, out, err = run_cli(capsys, "sql", "--file", str(path), "--format", "json", *extra)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_posts_per_hour_script(lake_settings: Settings, capsys) -> None:
    assert sql_file(capsys, "010_posts_per_hour.sql") == [
        {"post_date": "2023-05-01", "hour_start": "2023-05-01T10:00:00+00:00", "posts": 2, "users": 2},
        {"post_date": "2023-05-01", "hour_start": "2023-05-01T12:00:00+00:00", "posts": 1, "users": 1},
    ]
    old = sql_file(capsys, "010_posts_per_hour.sql", "--as-of", "silver.posts=0")
    assert [(r["hour_start"][11:13], r["posts"], r["users"]) for r in old] == [("10", 2, 2), ("11", 1, 1)]


def test_top_hashtags_script_counts_a_tag_once_per_post(lake_settings: Settings, capsys) -> None:
    assert sql_file(capsys, "020_top_hashtags.sql") == [
        {"hashtag": "data", "posts": 2, "users": 2}, {"hashtag": "python", "posts": 2, "users": 2}]
    old = sql_file(capsys, "020_top_hashtags.sql", "--as-of", "silver.posts=0")
    assert old == [{"hashtag": "python", "posts": 2, "users": 2}, {"hashtag": "data", "posts": 1, "users": 1}]


def test_threat_share_by_language_script(lake_settings: Settings, capsys) -> None:
    rows = sql_file(capsys, "030_threat_share_by_language.sql", "--as-of", "silver.posts=0")
    by_language = {r["language"]: r for r in rows}
    assert set(by_language) == {"en", "de", "und"}
    de = by_language["de"]
    assert (de["high_posts"], de["threat_share"], de["hate_share"]) == (1, 1.0, 1.0)
    assert (by_language["und"]["low_posts"], by_language["und"]["threat_share"]) == (1, 1.0)
    assert (by_language["en"]["none_posts"], by_language["en"]["threat_share"]) == (1, 0.0)
    now = {r["language"]: r for r in sql_file(capsys, "030_threat_share_by_language.sql")}
    assert (now["en"]["posts"], now["en"]["scored_posts"]) == (2, 1)  # a/5 is unscored


def test_most_active_accounts_script_qualifies_local_accounts(lake_settings: Settings, capsys) -> None:
    old = sql_file(capsys, "040_most_active_accounts.sql", "--as-of", "silver.posts=0")
    assert [(r["user_acct"], r["posts"]) for r in old] == [
        ("alice@mastodon.social", 2), ("bob@mastodon.social", 1)]
    assert old[0]["avg_text_length"] == 20.0


def test_threat_levels_sentiment_and_quarantine_scripts(lake_settings: Settings, capsys) -> None:
    levels = sql_file(capsys, "050_threat_levels_per_hour.sql", "--as-of", "silver.posts=0")
    assert [(r["hour_start"][11:13], r["threat_level"], r["posts"]) for r in levels] == [
        ("10", "HIGH", 1), ("10", "NONE", 1), ("11", "LOW", 1)]
    sentiment = sql_file(capsys, "060_sentiment_by_hashtag.sql")
    assert [r["hashtag"] for r in sentiment] == ["python", "data"]  # "rare" has < 3 scored posts
    rules = sql_file(capsys, "070_quarantine_by_rule.sql")
    assert [(r["rule"], r["records"]) for r in rules] == [
        ("missing_status", 2), ("envelope_corrupt", 1), ("missing_key", 1)]


# --- output formats -----------------------------------------------------------------------------------
def test_render_formats() -> None:
    table = pa.table({"name": ["a,b", None], "n": [1, 22],
                      "at": [datetime(2023, 5, 1, 10, tzinfo=UTC), None], "tags": [["x"], []]})
    text = render(table, "table").splitlines()
    assert text[0].split() == ["name", "n", "at", "tags"]
    assert text[2].startswith("a,b") and text[3].split() == ["22", "[]"]
    assert render(table, "csv") == 'name,n,at,tags\n"a,b",1,2023-05-01T10:00:00+00:00,"[""x""]"\n,22,,[]\n'
    assert [json.loads(x) for x in render(table, "json").splitlines()] == [
        {"name": "a,b", "n": 1, "at": "2023-05-01T10:00:00+00:00", "tags": ["x"]},
        {"name": None, "n": 22, "at": None, "tags": []}]
    assert render(table.slice(0, 0), "table").endswith("(no rows)\n")


def test_sql_leaves_out_an_unreadable_table(lake_settings: Settings, capsys) -> None:
    broken = lake_settings.path(lake_settings.lake_dir) / "gold" / "broken" / "_delta_log"
    broken.mkdir(parents=True)  # a log folder without commits: delta-rs cannot load it
    code, out, err = run_cli(capsys, "sql", "SELECT count(*) AS n FROM silver.posts", "--format", "csv")
    assert (code, out) == (0, "n\n4\n")
    assert "gold.broken is left out" in err
    code, _, err = run_cli(capsys, "sql", "SELECT 1", "--as-of", "gold.broken=0")
    assert code == 2 and "cannot open gold.broken" in err


def test_notebook_require_names_what_is_missing(lake_settings: Settings) -> None:
    from tootlake.pipelines import analysis

    analysis.require(lake_settings, "silver.posts", "gold.sentiment_by_hashtag")
    with pytest.raises(lake.LakeError, match=r"gold.posts_hourly not in .* yet: run `make demo`"):
        analysis.require(lake_settings, "silver.posts", "gold.posts_hourly")


def test_notebook_settings_root_is_the_folder_above_notebooks(tmp_path: Path, monkeypatch) -> None:
    from tootlake.pipelines.analysis import notebook_settings

    monkeypatch.delenv("TOOTLAKE_HOME", raising=False)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where a notebook's kernel runs
    assert notebook_settings().tootlake_home == tmp_path
    monkeypatch.chdir(tmp_path)  # `make notebooks`
    assert notebook_settings().tootlake_home == tmp_path
    monkeypatch.setenv("TOOTLAKE_HOME", str(tmp_path / "elsewhere"))
    assert notebook_settings().tootlake_home == tmp_path / "elsewhere"
