"""Copy every Delta table under the lake's gold/ folder to PostgreSQL schema `gold`, replaced per run.

Tables are discovered by listing the folder (any directory holding a `_delta_log`), so new gold tables
need no change here. Column types follow the Delta schema; structs are flattened to `<col>_<field>`,
arrays and maps become jsonb. All tables are swapped in one transaction: readers see the old set or
the new set, never a mix.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

from psycopg2 import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tootlake.pipelines.databases.postgres import copy_value
from tootlake.pipelines.databases.records import clean_text
from tootlake.pipelines.settings import Settings

logger = logging.getLogger(__name__)

GOLD_SCHEMA = "gold"


def gold_tables(gold_dir: Path | Settings) -> dict[str, Path | str]:
    """name -> path of every Delta table directly under `gold_dir` (sorted by name); given the settings,
    of every `gold.*` table of the lake (local or on object storage)."""
    if isinstance(gold_dir, Settings):
        from tootlake.pipelines.lake import list_tables

        return {name.split(".", 1)[1]: location for name, location in list_tables(gold_dir).items()
                if name.startswith("gold.")}
    if not gold_dir.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(gold_dir.iterdir())
        if child.is_dir() and (child / "_delta_log").is_dir()
    }


def table_name(name: str) -> str:
    """A Delta folder name as a PostgreSQL table name (lower-case, [a-z0-9_])."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower())
    return cleaned if not cleaned[:1].isdigit() else f"t_{cleaned}"


def flatten(df: DataFrame) -> DataFrame:
    """Top-level structs -> `<col>_<field>` columns; arrays/maps -> JSON text; binary -> hex text."""
    columns = []
    for f in df.schema.fields:
        if isinstance(f.dataType, T.StructType):
            for sub in f.dataType.fields:
                field = F.col(f"`{f.name}`.`{sub.name}`")
                columns.append(_plain(field, sub.dataType, f"{f.name}_{sub.name}"))
        else:
            columns.append(_plain(F.col(f"`{f.name}`"), f.dataType, f.name))
    return df.select(*columns)


def _plain(col, data_type: T.DataType, name: str):
    if isinstance(data_type, T.ArrayType | T.MapType | T.StructType):
        return F.to_json(col).alias(name)
    if isinstance(data_type, T.BinaryType):
        return F.hex(col).alias(name)
    return col.alias(name)


def pg_type(data_type: T.DataType, json: bool = False) -> str:
    if json:
        return "jsonb"
    mapping = [
        (T.BooleanType, "boolean"), (T.ByteType, "smallint"), (T.ShortType, "smallint"),
        (T.IntegerType, "integer"), (T.LongType, "bigint"), (T.FloatType, "real"),
        (T.DoubleType, "double precision"), (T.DateType, "date"), (T.TimestampNTZType, "timestamp"),
        (T.TimestampType, "timestamptz"),
    ]
    for spark_type, name in mapping:
        if isinstance(data_type, spark_type):
            return name
    if isinstance(data_type, T.DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    return "text"


def _column_types(original: T.StructType, flat: DataFrame) -> list[tuple[str, str]]:
    json_names = set()
    for f in original.fields:
        if isinstance(f.dataType, T.StructType):
            json_names |= {f"{f.name}_{s.name}" for s in f.dataType.fields
                           if isinstance(s.dataType, T.ArrayType | T.MapType | T.StructType)}
        elif isinstance(f.dataType, T.ArrayType | T.MapType):
            json_names.add(f.name)
    return [(f.name, pg_type(f.dataType, f.name in json_names)) for f in flat.schema.fields]


def copy_gold(
    spark: SparkSession, conn, gold_dir: Path | Settings, log: Callable[[str], None] = logger.info
) -> dict[str, int]:
    """Replace schema `gold`'s tables with the Delta tables under `gold_dir` (or the lake's gold layer, given
    the settings); returns rows per table."""
    tables = gold_tables(gold_dir)
    if not tables:
        log(f"[sync] gold: no Delta tables under {gold_dir}; nothing to copy")
        return {}
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(GOLD_SCHEMA)))
        for folder, path in tables.items():
            name = table_name(folder)
            df = spark.read.format("delta").load(str(path))
            flat = flatten(df)
            columns = _column_types(df.schema, flat)
            rows = flat.toArrow().to_pylist()
            target = sql.Identifier(GOLD_SCHEMA, name)
            loading = sql.Identifier(GOLD_SCHEMA, f"{name}__loading")
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(loading))
            definitions = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns
            )
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(loading, definitions))
            payload = "".join(
                "\t".join(copy_value(clean_text(v) if isinstance(v, str) else v) for v in row.values()) + "\n"
                for row in rows
            ).encode("utf-8")
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    loading, sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
                ).as_string(conn),
                io.BytesIO(payload),
            )
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(loading, sql.Identifier(name)))
            counts[name] = len(rows)
            log(f"[sync] gold: {name} <- {len(rows)} rows")
    conn.commit()
    return counts
