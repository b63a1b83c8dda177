"""Builds the SparkSession every job uses: Delta Lake + the Kafka source, jars from `jars/spark`; with the
lake or checkpoints on `s3a://`, also the s3a filesystem (`jars/s3a`) and its `fs.s3a.*` conf."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from tootlake.package_data import package_path
from tootlake.pipelines.settings import Settings

LOG4J2_CONFIG = package_path("tootlake.pipelines", "conf", "log4j2.properties")  # package data


def spark_jars(settings: Settings) -> list[Path]:
    jars = sorted(settings.path(settings.jars_dir).joinpath("spark").glob("*.jar"))
    if not jars:
        raise FileNotFoundError(
            f"no Spark jars in {settings.path(settings.jars_dir) / 'spark'}: run `make setup` first"
        )
    return jars


def s3a_classpath(settings: Settings) -> str | None:
    """The s3a filesystem's jars (hadoop-aws + the AWS SDK bundle, `jars/s3a`) as a class path, when the lake
    or checkpoints are on s3a://; else None. They go on the driver's and executors' class path rather than
    in `spark.jars`: the SDK bundle is ~650 MB, which Spark would copy into every application's work folder
    (executors on a cluster read them at the same path: the project is installed at the same path on every
    worker host anyway, see the README's scale-out section)."""
    if not settings.uses_object_store:
        return None
    folder = settings.path(settings.jars_dir) / "s3a"
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith("hadoop-aws-") for jar in jars):
        raise FileNotFoundError(f"no hadoop-aws jar in {folder} (the lake or checkpoints are on s3a://): "
                                "run `make setup-objectstore` first")
    return os.pathsep.join(str(jar) for jar in jars)


def build_spark(settings: Settings, app_name: str, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A SparkSession with Delta and Kafka; reuses the active one under spark-submit."""
    # Python workers must run the project's interpreter (onnxruntime, tokenizers live there).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, whatever the hostname says
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", ",".join(str(jar) for jar in spark_jars(settings)))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.executor.memory", settings.spark_executor_memory)  # cluster executors only
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Spark's default: plan strings list at most 25 fields per node. Each query execution renders its
        # plan for the listeners even with the UI off; with the wide Mastodon schemas at 500 fields that
        # was ~10 % of the live driver's CPU (the truncation warning is silenced in log4j2.properties).
        .config("spark.sql.debug.maxToStringFields", "25")
        # DuckDB / delta-rs read the same tables: keep deletion vectors off.
        .config("spark.databricks.delta.properties.defaults.enableDeletionVectors", "false")
        # Delta rebuilds a table's state with 50 tasks by default: far too many for small tables on 2 cores.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # Silver materialises each step with localCheckpoint; its blocks go when the JVM collects the
        # plan, so a long-running query must not wait for the default 30-minute periodic GC.
        .config("spark.cleaner.periodicGC.interval", "3min")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}")
    )
    if settings.spark_cores_max:
        builder = builder.config("spark.cores.max", str(settings.spark_cores_max))
    if settings.spark_event_log_dir:  # every job and stage with its timing, for the history server
        event_logs = settings.path(settings.spark_event_log_dir)
        event_logs.mkdir(parents=True, exist_ok=True)
        event_conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(event_logs),
                      "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}
        for key, value in event_conf.items():
            builder = builder.config(key, value)
    classpath = s3a_classpath(settings)
    if classpath:
        builder = (builder.config("spark.driver.extraClassPath", classpath)
                   .config("spark.executor.extraClassPath", classpath))
    for key, value in settings.spark_s3a_conf().items():
        builder = builder.config(key, value)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


class BatchFrames:
    """Materialises the DataFrames one micro-batch reuses, and lets them go when the batch ends.

    In local mode: `localCheckpoint` (blocks in the one JVM, lineage cut, so each later step plans
    against one node instead of re-analysing the whole tree). On a cluster: `persist`, because a
    local-checkpoint block lost with an executor (a worker dies) fails the job for good, while a
    persisted block is recomputed from its lineage by Spark's task retries.
    """

    def __init__(self, spark: SparkSession) -> None:
        self.local = spark.sparkContext.master.startswith("local")
        self.held: list = []

    def keep(self, df):
        if self.local:
            return df.localCheckpoint(eager=True)
        from pyspark import StorageLevel

        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        self.held.append(df)
        return df

    def release(self) -> None:
        for df in self.held:
            df.unpersist()
        self.held.clear()

    def __enter__(self) -> BatchFrames:
        return self

    def __exit__(self, *_exc) -> None:
        self.release()
