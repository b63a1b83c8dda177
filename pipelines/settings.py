"""All of tootlake's settings in one object, read from the environment and `.env`.

Every setting is documented in `.env.example`. A wrong value fails at start-up with a message that
names the setting (see `load_settings`). Secrets are `SecretStr`: they print as `**********`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(RuntimeError):
    """Raised when a setting has a wrong value; the message names the setting."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- where things live -------------------------------------------------------------------
    tootlake_home: Path = Field(default_factory=Path.cwd, description="project root for relative paths")
    lake_dir: Path = Path("var/lake")
    checkpoint_dir: Path = Path("var/checkpoints")
    state_dir: Path = Path("var/state")
    log_dir: Path = Path("var/log")
    jars_dir: Path = Path("jars")
    shared_data_dir: Path = Path("../shared/data")

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

    # --- sync (silver -> PostgreSQL / Oracle) ------------------------------------------------------
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

    # --- tootlake run (supervisor) -------------------------------------------------------------------
    run_driver_memory: str = "768m"  # spark.driver.memory of EACH stage's JVM under `tootlake run`
    run_trigger_s: int = Field(10, ge=1)  # micro-batch interval of bronze, silver and sync under `run`
    run_backoff_base_s: float = Field(2.0, gt=0)  # restart delay: base * 2**n, capped at run_backoff_max_s
    run_backoff_max_s: float = Field(60.0, gt=0)
    run_healthy_after_s: float = Field(120.0, gt=0)  # a stage up this long resets its back-off
    run_stop_timeout_s: float = Field(60.0, gt=0)  # SIGTERM -> wait this long -> SIGKILL

    # --- silver ----------------------------------------------------------------------------------
    silver_max_content_chars: int = Field(50_000, ge=1)  # longer HTML content -> quarantine
    silver_future_tolerance_s: float = Field(300.0, ge=0)  # created_at later than now + this -> quarantine
    silver_arrow_batch_size: int = Field(1024, ge=1, le=100_000)  # arrow.maxRecordsPerBatch for scoring
    silver_threat_batch_size: int = Field(32, ge=1, le=4096)  # texts per onnxruntime run
    silver_threat_threads: int = Field(0, ge=0)  # onnxruntime threads per worker; 0 = cores / tasks

    # --- gold ------------------------------------------------------------------------------------
    active_min: int = Field(5, ge=1)
    gold_watermark_minutes: int = Field(10, ge=0)  # streaming 1-minute counts: allowed event-time delay
    gold_stream_trigger_s: int = Field(30, ge=1)  # streaming 1-minute counts: micro-batch interval

    # --- analysis --------------------------------------------------------------------------------
    plots_dir: Path = Path("var/plots")  # where the notebooks' helpers write their PNG figures

    # --- data quality (expectations/, pipelines/dq*.py) ---------------------------------------------
    dq_enabled: bool = True  # per-batch rules + dq.metrics in silver, gold, sync (silver quarantines anyway)
    dq_gx_enabled: bool = True  # Great Expectations suites once per job run (+ Data Docs)
    dq_gx_sample_rows: int = Field(20_000, ge=1)  # rows of each table the GX suites validate

    @field_validator("replay_files", "filter_languages", "filter_include_keywords",
                     "filter_exclude_keywords", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("mastodon_instance")
    @classmethod
    def _instance_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be a URL such as https://mastodon.social")
        return value.rstrip("/")

    # --- derived ---------------------------------------------------------------------------------
    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project root."""
        return value if value.is_absolute() else (self.tootlake_home / value)

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.postgres_dsn is None

    def postgres_conninfo(self) -> str:
        """libpq connection string (a secret: never log it)."""
        if self.postgres_dsn is not None:
            return self.postgres_dsn.get_secret_value()
        return f"host=127.0.0.1 port={self.postgres_port} dbname={self.postgres_db} user={self.postgres_user}"

    def table_path(self, logical_name: str) -> Path:
        """`silver.posts` -> <lake>/silver/posts."""
        layer, _, table = logical_name.partition(".")
        return self.path(self.lake_dir) / layer / table

    def checkpoint_path(self, job: str) -> Path:
        return self.path(self.checkpoint_dir) / job


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
