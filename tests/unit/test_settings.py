"""Settings: wrong values fail naming the setting, secrets stay hidden, .env.example documents everything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tootlake.pipelines.settings import SECRETS_FILE_ENV, Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray TOOTLAKE-related variables or project .env leak into these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv(SECRETS_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # `.env` is read from the working directory


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_PORT", "abc"),
        ("KAFKA_PORT", "80"),  # below 1024
        ("POSTGRES_PORT", "70000"),
        ("KAFKA_PARTITIONS", "0"),
        ("MASTODON_INSTANCE", "mastodon.social"),  # not a URL
        ("MASTODON_TIMELINE", "everything"),
        ("FILTER_EXCLUDE_REBLOGS", "perhaps"),
        ("REPLAY_RATE", "-1"),
    ],
)
def test_wrong_value_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert name in str(excinfo.value)
    assert ".env.example" in str(excinfo.value)


def test_wrong_value_in_dotenv_fails_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POSTGRES_PORT=not-a-port\n")
    with pytest.raises(SettingsError, match="POSTGRES_PORT"):
        load_settings()


def test_dotenv_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KAFKA_PORT=12345\nPOSTGRES_PORT=23456\n")
    monkeypatch.setenv("POSTGRES_PORT", "34567")
    settings = load_settings()
    assert settings.kafka_port == 12345
    assert settings.postgres_port == 34567


def test_defaults_use_embedded_services_on_loopback() -> None:
    settings = load_settings()
    assert settings.uses_embedded_kafka and settings.uses_embedded_postgres
    assert settings.bootstrap_servers == f"127.0.0.1:{settings.kafka_port}"
    assert "host=127.0.0.1" in settings.postgres_conninfo()


def test_external_services_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker.example:9092")
    monkeypatch.setenv("POSTGRES_DSN", "postgresql://app:pw@db.example/tootlake")
    settings = load_settings()
    assert not settings.uses_embedded_kafka and not settings.uses_embedded_postgres
    assert settings.bootstrap_servers == "broker.example:9092"
    assert settings.postgres_conninfo() == "postgresql://app:pw@db.example/tootlake"


def test_secrets_never_appear_in_repr_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "POSTGRES_DSN": "postgresql://app:pg-s3cret-1@db.example/tootlake",
        "POSTGRES_PASSWORD": "pg-s3cret-0",
        "ORACLE_DSN": "tcps://ora-s3cret-2.example:1522/svc",
        "ORACLE_PASSWORD": "ora-s3cret-3",
        "ORACLE_WALLET_PASSWORD": "wallet-s3cret-4",
        "MASTODON_ACCESS_TOKEN": "token-s3cret-5",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())])
    for value in secrets.values():
        assert value not in shown
    assert settings.oracle_password is not None
    assert settings.oracle_password.get_secret_value() == "ora-s3cret-3"


def test_embedded_postgres_password_from_its_file_or_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    import psycopg2.extensions

    settings = load_settings(tootlake_home=tmp_path)
    passfile = tmp_path / "var" / "state" / "postgres.pgpass"
    assert settings.postgres_passfile == passfile
    parts = psycopg2.extensions.parse_dsn(settings.postgres_conninfo())
    # the conninfo names the cluster's password file (libpq reads it); it holds no password itself
    assert parts["passfile"] == str(passfile) and "password" not in parts
    assert settings.postgres_password_value() is None  # no cluster yet
    passfile.parent.mkdir(parents=True)
    passfile.write_text("127.0.0.1:*:*:*:from\\:file\\\\x\n")
    passfile.chmod(0o600)
    assert settings.postgres_password_value() == "from:file\\x"

    # POSTGRES_PASSWORD (environment, .env or the secrets file of `tootlake run`) wins over the file
    monkeypatch.setenv("POSTGRES_PASSWORD", "pg pass'word")
    settings = load_settings(tootlake_home=tmp_path)
    parts = psycopg2.extensions.parse_dsn(settings.postgres_conninfo())
    assert parts["password"] == "pg pass'word" and "passfile" not in parts
    assert settings.postgres_password_value() == "pg pass'word"
    assert "pg pass'word" not in repr(settings) + str(settings) + settings.model_dump_json()


def test_secrets_file_named_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"postgres_password": "from-file", "mastodon_access_token": "tok-file"}))
    monkeypatch.setenv(SECRETS_FILE_ENV, str(path))
    settings = load_settings()
    assert settings.postgres_password is not None
    assert settings.postgres_password.get_secret_value() == "from-file"
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "tok-env")  # the environment wins over the file
    assert load_settings().mastodon_access_token.get_secret_value() == "tok-env"  # type: ignore[union-attr]
    path.write_text("{not json: from-file")
    with pytest.raises(SettingsError, match=SECRETS_FILE_ENV) as excinfo:
        load_settings()
    assert "from-file" not in str(excinfo.value)
    path.unlink()
    with pytest.raises(SettingsError, match=SECRETS_FILE_ENV):
        load_settings()


def test_secret_is_not_echoed_in_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "token-s3cret-6")
    monkeypatch.setenv("KAFKA_PORT", "abc")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "token-s3cret-6" not in str(excinfo.value)


def test_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILTER_LANGUAGES", "en, de ,,fr")
    monkeypatch.setenv("REPLAY_FILES", "a.jsonl,b.jsonl")
    settings = load_settings()
    assert settings.filter_languages == ["en", "de", "fr"]
    assert settings.replay_files == ["a.jsonl", "b.jsonl"]


def test_relative_paths_hang_from_the_project_root(tmp_path: Path) -> None:
    settings = load_settings(tootlake_home=tmp_path)
    assert settings.path(settings.lake_dir) == tmp_path / "var" / "lake"
    assert settings.table_path("silver.posts") == tmp_path / "var" / "lake" / "silver" / "posts"
    assert settings.path(Path("/abs/x")) == Path("/abs/x")


def test_env_example_documents_every_setting() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    documented = {name.lower() for name in re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE)}
    fields = set(Settings.model_fields)
    assert fields - documented == set(), "settings missing from .env.example"
    assert documented - fields == set(), ".env.example documents settings that do not exist"


def test_model_dirs_default_to_the_packaged_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings = load_settings(tootlake_home=tmp_path)
    assert settings.threat_model_dir is None and settings.sentiment_model_dir is None
    monkeypatch.setenv("THREAT_MODEL_DIR", "")  # as in .env.example: empty is unset
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(tmp_path / "sentiment"))
    settings = load_settings(tootlake_home=tmp_path)
    assert settings.threat_model_dir is None
    assert settings.sentiment_model_dir == tmp_path / "sentiment"
