"""All of tootlake's settings in one object, read from the environment and `.env`.

Every setting is documented in `.env.example`. A wrong value fails at start-up with a message that
names the setting (see `load_settings`). Secrets are `SecretStr`: they print as `**********`.

Where a value comes from, first wins: keyword arguments, the environment, the secrets file named by
`TOOTLAKE_SECRETS_FILE` (how `tootlake run` hands secrets to its stages without putting them in their
environment: see `write_secrets_file`), `.env`, the default. The embedded PostgreSQL's password is not a
setting: clients read it from the cluster's password file `<state>/postgres.pgpass` (written when the
cluster is created, mode 0600), unless POSTGRES_PASSWORD is given.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

SECRETS_FILE_ENV = "TOOTLAKE_SECRETS_FILE"
POSTGRES_PASSFILE = "postgres.pgpass"  # in the state folder: the embedded cluster's password (pgpass format)
S3_CREDENTIALS_FILE = "s3proxy.keys.json"  # in the state folder: the embedded s3proxy's key pair (0600)
SECRETS_DIR = "secrets"  # in the state folder: the secrets files of `tootlake run` (mode 0700)


class SettingsError(RuntimeError):
    """Raised when a setting has a wrong value; the message names the setting."""


class FromSettings(enum.Enum):
    """The type of `FROM_SETTINGS`: a job option left to the settings (e.g. `dq=FROM_SETTINGS`: a data-quality
    guard when DQ_ENABLED, none otherwise), as opposed to a value the caller passes."""

    FROM_SETTINGS = "from settings"


FROM_SETTINGS = FromSettings.FROM_SETTINGS


class _SecretsFileSource(PydanticBaseSettingsSource):
    """Settings from the JSON file named by TOOTLAKE_SECRETS_FILE (written by `write_secrets_file`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(SECRETS_FILE_ENV)
        if not path:
            return {}
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise SettingsError(f"{SECRETS_FILE_ENV}={path}: cannot read it ({exc.strerror}); it is written "
                                "by `tootlake run` for its stages: unset it to run on your own") from None
        except ValueError:
            raise SettingsError(f"{SECRETS_FILE_ENV}={path}: not a JSON object of settings") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{SECRETS_FILE_ENV}={path}: not a JSON object of settings")
        fields = self.settings_cls.model_fields
        return {name.lower(): value for name, value in data.items() if name.lower() in fields}


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- where things live -------------------------------------------------------------------
    tootlake_home: Path = Field(default_factory=Path.cwd, description="project root for relative paths")
    # a folder (relative to TOOTLAKE_HOME) or an s3a://bucket/prefix URI (see the S3 settings below)
    lake_dir: str = "var/lake"
    checkpoint_dir: str = "var/checkpoints"
    state_dir: Path = Path("var/state")
    log_dir: Path = Path("var/log")
    jars_dir: Path = Path("jars")
    shared_data_dir: Path = Path("../shared/data")  # the labelled and real data sets (never in the package)
    threat_model_dir: Path | None = None  # unset: the threat model artifact shipped in the package
    sentiment_model_dir: Path | None = None  # unset: the sentiment pipeline shipped in the package

    # --- Kafka -----------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = None  # unset: the embedded broker on 127.0.0.1:kafka_port
    kafka_port: int = Field(19092, ge=1024, le=65535)
    kafka_controller_port: int = Field(19093, ge=1024, le=65535)
    kafka_topic: str = Field("mastodon-raw-posts", min_length=1)
    kafka_partitions: int = Field(3, ge=1, le=1000)
    kafka_heap: str = "512m"

    # --- PostgreSQL ------------------------------------------------------------------------------
    postgres_dsn: SecretStr | None = None  # unset: the embedded cluster on 127.0.0.1:postgres_port
    postgres_port: int = Field(15432, ge=1024, le=65535)
    postgres_db: str = "tootlake"
    postgres_user: str = "tootlake"
    # unset: the embedded cluster's password file <state>/postgres.pgpass (see postgres_conninfo)
    postgres_password: SecretStr | None = None

    # --- S3-compatible object storage (when LAKE_DIR / CHECKPOINT_DIR is an s3a:// URI) -----------------
    # unset: the embedded s3proxy on 127.0.0.1:s3proxy_port; AWS S3: https://s3.<region>.amazonaws.com
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_path_style: bool = True  # bucket in the path (s3proxy, most stores) rather than in the host name
    s3_tls: bool | None = None  # unset: from the endpoint's scheme (https unless it says http://)
    s3_access_key_id: SecretStr | None = None  # unset with the embedded s3proxy: its generated key file
    s3_secret_access_key: SecretStr | None = None
    # delta-rs commits (DQ metrics, restore): "unsafe_rename" = one writer per table at a time;
    # "conditional_put" = put-if-absent (If-None-Match: AWS S3 since 2024, R2, ...). delta-rs 1.x has no
    # DynamoDB lock any more.
    s3_delta_rs_commit: Literal["unsafe_rename", "conditional_put"] = "unsafe_rename"
    s3proxy_port: int = Field(19000, ge=1024, le=65535)
    s3proxy_heap: str = "256m"

    # --- sync (silver -> PostgreSQL / Oracle) ------------------------------------------------------
    # Cap on the silver Parquet read per sync micro-batch (also the first batch of a new checkpoint on a
    # large lake), so the driver holds one bounded batch; 0 = no cap.
    sync_max_batch_mb: int = Field(64, ge=0)
    # Rows the driver holds at once: a micro-batch above it (whole Parquet files: a compacted 128 MB file
    # is ~200,000 posts) is written in chunks of whole posts (by post_id hash).
    sync_chunk_rows: int = Field(20_000, ge=100)
    sync_retry_attempts: int = Field(5, ge=1, le=100)  # tries per batch when the connection is lost
    sync_retry_base_s: float = Field(1.0, gt=0)  # back-off: base * 2**n seconds, capped at sync_retry_max_s
    sync_retry_max_s: float = Field(30.0, gt=0)

    # --- Oracle (no server here: tested with a fake connection, or for real when ORACLE_DSN is set)
    oracle_dsn: SecretStr | None = None
    oracle_user: str | None = None
    oracle_password: SecretStr | None = None
    oracle_wallet_dir: Path | None = None
    oracle_wallet_password: SecretStr | None = None

    # --- Mastodon source -------------------------------------------------------------------------
    mastodon_instance: str = "https://mastodon.social"
    mastodon_access_token: SecretStr | None = None  # optional for public data
    mastodon_timeline: Literal["public", "local", "hashtag", "trending", "poll"] = "public"
    mastodon_hashtag: str | None = None
    mastodon_poll_interval_s: float = Field(30.0, gt=0)
    mastodon_ratelimit_method: Literal["pace", "wait", "throw"] = "pace"  # Mastodon.py rate-limit handling
    replay_files: CsvList = Field(default_factory=list)
    replay_rate: float = Field(0.0, ge=0, description="posts per second; 0 = as fast as possible")

    # --- filters (applied by the producer on the plain text) --------------------------------------
    filter_exclude_reblogs: bool = True
    filter_languages: CsvList = Field(default_factory=list)  # empty: every language
    filter_include_keywords: CsvList = Field(default_factory=list)
    filter_exclude_keywords: CsvList = Field(default_factory=list)

    # --- producer daemon -------------------------------------------------------------------------
    producer_pid_file: Path = Path("var/run/producer.pid")
    producer_log_file: Path = Path("var/log/producer.log")
    producer_report_every_s: float = Field(10.0, gt=0)
    producer_source: Literal["live", "replay"] = "replay"  # default for `tootlake producer run|start`
    producer_compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = "lz4"

    # --- Spark -----------------------------------------------------------------------------------
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = Field(4, ge=1)
    spark_executor_memory: str = "1g"  # per executor on a cluster (SPARK_MASTER=spark://...)
    spark_cores_max: int | None = Field(None, ge=1)  # cluster: cap on cores per job (unset: all offered)
    spark_event_log_dir: Path | None = None  # set: Spark event logs there (Spark history server, profiling)

    # --- tootlake run (supervisor) -------------------------------------------------------------------
    # One Spark application hosts bronze, silver, the gold stream and sync (false: a JVM per stage).
    run_one_app: bool = True
    run_driver_memory: str = "1g"  # spark.driver.memory of the application (of EACH stage's JVM if not one)
    run_trigger_s: float = Field(1.0, ge=0.1)  # micro-batch interval of bronze, silver and sync under `run`
    run_app_max_query_failures: int = Field(5, ge=1)  # a query failing this often in a row restarts the JVM
    run_backoff_base_s: float = Field(2.0, gt=0)  # restart delay: base * 2**n, capped at run_backoff_max_s
    run_backoff_max_s: float = Field(60.0, gt=0)
    run_healthy_after_s: float = Field(120.0, gt=0)  # a stage up this long resets its back-off
    run_stop_timeout_s: float = Field(60.0, gt=0)  # SIGTERM -> wait this long -> SIGKILL

    # --- tootlake maintain (also every maintain_every_s under `tootlake run`; 0 = never) -------------
    maintain_every_s: float = Field(3600.0, ge=0)
    maintain_target_file_mb: int = Field(128, ge=1)  # OPTIMIZE bin-packs small files up to about this
    maintain_vacuum_retain_hours: int = Field(168, ge=0)  # VACUUM keeps this much time travel
    maintain_log_retention_days: int = Field(30, ge=1)  # delta.logRetentionDuration
    maintain_tombstone_days: float = Field(30.0, ge=0)  # never-seen tombstones older than this go (0 = keep)

    # --- silver ----------------------------------------------------------------------------------
    silver_max_content_chars: int = Field(50_000, ge=1)  # longer HTML content -> quarantine
    silver_future_tolerance_s: float = Field(300.0, ge=0)  # created_at later than now + this -> quarantine
    silver_small_batch_rows: int = Field(500, ge=0)  # batches up to this many rows run in one partition
    silver_arrow_batch_size: int = Field(1024, ge=1, le=100_000)  # arrow.maxRecordsPerBatch for scoring
    silver_threat_batch_size: int = Field(32, ge=1, le=4096)  # texts per onnxruntime run
    silver_threat_threads: int = Field(0, ge=0)  # onnxruntime threads per worker; 0 = cores / tasks

    # --- gold ------------------------------------------------------------------------------------
    active_min: int = Field(5, ge=1)
    # `tootlake gold` rebuilds in full while silver holds fewer rows than this: on a small lake the ~16
    # keyed writes of an incremental refresh cost more than rebuilding (measured: 34 s vs 12 s at 10k posts)
    gold_incremental_min_rows: int = Field(250_000, ge=0)
    gold_watermark_minutes: int = Field(10, ge=0)  # streaming 1-minute counts: allowed event-time delay
    gold_stream_trigger_s: int = Field(30, ge=1)  # streaming 1-minute counts: micro-batch interval

    # --- analysis --------------------------------------------------------------------------------
    plots_dir: Path = Path("var/plots")  # where the notebooks' helpers write their PNG figures

    # --- data quality (expectations/, pipelines/dq*.py) ---------------------------------------------
    dq_enabled: bool = True  # per-batch rules + dq.metrics in silver, gold, sync (silver quarantines anyway)
    dq_gx_enabled: bool = True  # Great Expectations suites once per job run (+ Data Docs)
    dq_gx_sample_rows: int = Field(20_000, ge=1)  # rows of each table the GX suites validate

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _SecretsFileSource(settings_cls), dotenv_settings,
                file_secret_settings)

    @classmethod
    def secret_names(cls) -> tuple[str, ...]:
        """The settings that are secrets (passwords, tokens, DSNs): every `SecretStr` field."""
        return tuple(name for name, info in cls.model_fields.items()
                     if info.annotation is SecretStr or SecretStr in get_args(info.annotation))

    @field_validator("replay_files", "filter_languages", "filter_include_keywords",
                     "filter_exclude_keywords", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("threat_model_dir", "sentiment_model_dir", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("lake_dir", "checkpoint_dir", mode="before")
    @classmethod
    def _location(cls, value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str) and "://" in value:
            scheme, _, rest = value.partition("://")
            if scheme != "s3a":
                raise ValueError(f"{scheme}:// is not supported: use a local folder or s3a://bucket/prefix")
            if not rest.strip("/"):
                raise ValueError("an s3a:// URI needs a bucket: s3a://bucket/prefix")
            return "s3a://" + rest.rstrip("/")
        return value

    @field_validator("s3_endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().rstrip("/") or None
        if isinstance(value, str) and "://" in value and not value.startswith(("http://", "https://")):
            raise ValueError("must be host[:port] or an http:// or https:// URL")
        return value

    @field_validator("mastodon_instance")
    @classmethod
    def _instance_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be a URL such as https://mastodon.social")
        return value.rstrip("/")

    # --- derived ---------------------------------------------------------------------------------
    def path(self, value: Path | str) -> Path:
        """Resolve a configured path against the project root (a local path: see `location` for URIs)."""
        if is_object_store(value):
            raise SettingsError(f"{value} is an object-store URI, not a local path (use Settings.location)")
        value = Path(value)
        return value if value.is_absolute() else (self.tootlake_home / value)

    def location(self, value: Path | str) -> str:
        """A lake or checkpoint location as Spark and delta-rs take it: an s3a:// URI as it is, a local path
        resolved against the project root."""
        text = str(value)
        return text.rstrip("/") if is_object_store(text) else str(self.path(text))

    @property
    def uses_object_store(self) -> bool:
        """Whether the lake or the checkpoints live on S3-compatible object storage (s3a://)."""
        return is_object_store(self.lake_dir) or is_object_store(self.checkpoint_dir)

    @property
    def uses_embedded_s3(self) -> bool:
        """The project's own s3proxy serves the lake: an s3a:// location and no S3_ENDPOINT."""
        return self.uses_object_store and not self.s3_endpoint

    @property
    def s3_credentials_file(self) -> Path:
        """The embedded s3proxy's generated key pair (JSON, mode 0600; written by `services up`)."""
        return self.path(self.state_dir) / S3_CREDENTIALS_FILE

    def s3_endpoint_url(self) -> str:
        """The S3 endpoint as a URL: the embedded s3proxy (http on loopback) or S3_ENDPOINT, whose scheme
        wins; without one, S3_TLS decides (default https)."""
        if not self.s3_endpoint:
            return f"http://127.0.0.1:{self.s3proxy_port}"
        if "://" in self.s3_endpoint:
            return self.s3_endpoint
        return ("http://" if self.s3_tls is False else "https://") + self.s3_endpoint

    def s3_uses_tls(self) -> bool:
        return self.s3_endpoint_url().startswith("https://")

    def s3_keys(self) -> tuple[str, str] | None:
        """(access key id, secret key) in clear (never log them): S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY,
        else the embedded s3proxy's key file; None when neither is there (the store's default chain)."""
        if self.s3_access_key_id is not None and self.s3_secret_access_key is not None:
            return self.s3_access_key_id.get_secret_value(), self.s3_secret_access_key.get_secret_value()
        if self.uses_embedded_s3:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                keys = json.loads(self.s3_credentials_file.read_text(encoding="utf-8"))
                return str(keys["access_key_id"]), str(keys["secret_access_key"])
        return None

    def delta_storage_options(self) -> dict[str, str] | None:
        """delta-rs `storage_options` for the lake (secrets inside: never log them); None for a local lake."""
        if not is_object_store(self.lake_dir):
            return None
        options = {"AWS_ENDPOINT_URL": self.s3_endpoint_url(), "AWS_REGION": self.s3_region,
                   "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false" if self.s3_path_style else "true",
                   "AWS_ALLOW_HTTP": "false" if self.s3_uses_tls() else "true"}
        keys = self.s3_keys()
        if keys is not None:
            options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = keys
        if self.s3_delta_rs_commit == "unsafe_rename":
            options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        else:
            options["AWS_CONDITIONAL_PUT"] = "etag"
        return options

    def spark_s3a_conf(self) -> dict[str, str]:
        """Spark's `spark.hadoop.fs.s3a.*` conf for the lake and checkpoints (secrets inside: Spark redacts
        `*.secret.key` / `*.access.key` in its UI and logs); empty when nothing is on s3a://."""
        if not self.uses_object_store:
            return {}
        s3a = "spark.hadoop.fs.s3a."
        conf = {f"{s3a}endpoint": self.s3_endpoint_url(), f"{s3a}endpoint.region": self.s3_region,
                f"{s3a}path.style.access": str(self.s3_path_style).lower(),
                f"{s3a}connection.ssl.enabled": str(self.s3_uses_tls()).lower(),
                f"{s3a}impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
        if is_object_store(self.checkpoint_dir):
            # The default (FileContext) manager wants a parent folder to exist before it creates a file in
            # it; object stores have no folders (an empty "folder" is at best a marker object, which not
            # every store keeps): the FileSystem-based one just writes the object.
            conf["spark.sql.streaming.checkpointFileManagerClass"] = (
                "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager")
        keys = self.s3_keys()
        if keys is not None:
            conf[f"{s3a}access.key"], conf[f"{s3a}secret.key"] = keys
            conf[f"{s3a}aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        return conf

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.postgres_dsn is None

    @property
    def postgres_passfile(self) -> Path:
        """The embedded cluster's password file (pgpass format, mode 0600; written by `services up`)."""
        return self.path(self.state_dir) / POSTGRES_PASSFILE

    def postgres_password_value(self) -> str | None:
        """The embedded cluster's password for clients that need it in clear (never log it):
        POSTGRES_PASSWORD, else the password file; None when neither is there."""
        if self.postgres_password is not None:
            return self.postgres_password.get_secret_value()
        with contextlib.suppress(OSError):
            return read_pgpass_password(self.postgres_passfile)
        return None

    def postgres_conninfo(self) -> str:
        """libpq connection string (a secret when POSTGRES_DSN / POSTGRES_PASSWORD is set: never log it).

        The embedded cluster's conninfo names its password file (`passfile=`, read by libpq at each
        connection), so the string itself holds no password unless POSTGRES_PASSWORD is set.
        """
        if self.postgres_dsn is not None:
            return self.postgres_dsn.get_secret_value()
        auth = ({"password": self.postgres_password.get_secret_value()} if self.postgres_password is not None
                else {"passfile": str(self.postgres_passfile)})
        return conninfo(host="127.0.0.1", port=self.postgres_port, dbname=self.postgres_db,
                        user=self.postgres_user, **auth)

    def table_uri(self, logical_name: str) -> str:
        """`silver.posts` -> <lake>/silver/posts, as Spark and delta-rs take it (local path or s3a:// URI)."""
        layer, _, table = logical_name.partition(".")
        return f"{self.location(self.lake_dir)}/{layer}/{table}"

    def checkpoint_uri(self, job: str) -> str:
        """A streaming job's checkpoint location (local path or s3a:// URI)."""
        return f"{self.location(self.checkpoint_dir)}/{job}"

    def table_path(self, logical_name: str) -> Path:
        """`silver.posts` -> <lake>/silver/posts as a local Path (a local lake only: see `table_uri`)."""
        layer, _, table = logical_name.partition(".")
        return self.path(self.lake_dir) / layer / table

    def checkpoint_path(self, job: str) -> Path:
        """A job's checkpoint folder as a local Path (local checkpoints only: see `checkpoint_uri`)."""
        return self.path(self.checkpoint_dir) / job


def is_object_store(location: object) -> bool:
    """Whether a lake / checkpoint location is an s3a:// URI (rather than a local folder)."""
    return str(location).startswith("s3a://")


def conninfo(**parts: object) -> str:
    """A libpq key=value connection string; values quoted where needed."""
    def value(raw: object) -> str:
        text = str(raw)
        if text and not any(ch in text for ch in " \t\n'\\"):
            return text
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{name}={value(raw)}" for name, raw in parts.items())


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (0600) from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pgpass_line(password: str, host: str = "127.0.0.1") -> str:
    """One line of a libpq password file: host, any port, database and user (`:` and `\\` escaped)."""
    return f"{host}:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n"


def read_pgpass_password(path: Path) -> str | None:
    """The password of the first entry of a libpq password file (None when it has none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields, current, escaped = [], "", False
        for ch in line:
            if escaped:
                current, escaped = current + ch, False
            elif ch == "\\":
                escaped = True
            elif ch == ":" and len(fields) < 4:
                fields.append(current)
                current = ""
            else:
                current += ch
        return current if len(fields) == 4 else None
    return None


def write_secrets_file(settings: Settings) -> Path | None:
    """Put the secret settings that are set into a new file only this user can read, for child processes.

    The file is `<state>/secrets/<pid>-<random>.json` (mode 0600, folder 0700); children get its path in
    TOOTLAKE_SECRETS_FILE and their `load_settings()` reads it, so no secret sits in any process
    environment. The writer removes it when done; files of writers that no longer run are removed here.
    Returns None when no secret is set.
    """
    values = {name: getattr(settings, name).get_secret_value() for name in type(settings).secret_names()
              if getattr(settings, name) is not None}
    if not values:
        return None
    from tootlake.pipelines.ops import processes

    folder = settings.path(settings.state_dir) / SECRETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for old in folder.glob("*-*.json"):  # left by a writer that died (SIGKILL, OOM)
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not processes.exists(int(pid)):
            old.unlink(missing_ok=True)
    path = folder / f"{os.getpid()}-{secrets.token_hex(8)}.json"
    write_private_file(path, json.dumps(values))
    return path


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`, failing with a message naming the bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid setting(s): " + "; ".join(problems) + " (see .env.example)") from None
