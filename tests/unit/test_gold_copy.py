"""The gold copy's column mapping (Arrow as delta-rs reads a Delta table -> PostgreSQL columns)."""

import datetime as dt
import json

import pyarrow as pa

from tootlake.pipelines.databases.gold import flatten, pg_type


def test_structs_are_flattened_and_nested_values_become_json() -> None:
    window = pa.struct([("start", pa.timestamp("us", "UTC")), ("end", pa.timestamp("us", "UTC")),
                        ("tags", pa.list_(pa.string()))])
    start = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    table = pa.table({
        "window": pa.array([{"start": start, "end": start + dt.timedelta(minutes=1), "tags": ["a"]}, None],
                           window),
        "posts": pa.array([3, None], pa.int64()),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "langs": pa.array([[("de", 2)], []], pa.map_(pa.string(), pa.int32())),
        "raw": pa.array([b"\x01\xab", None], pa.binary()),
        "day": pa.array([dt.date(2026, 3, 1), None], pa.date32()),
    })
    columns, values = flatten(table)
    assert columns == [("window_start", "timestamptz"), ("window_end", "timestamptz"),
                       ("window_tags", "jsonb"), ("posts", "bigint"), ("tags", "jsonb"), ("langs", "jsonb"),
                       ("raw", "text"), ("day", "date")]
    rows = list(zip(*values, strict=True))
    first, second = rows
    assert first[:2] == (start, start + dt.timedelta(minutes=1))
    assert json.loads(first[2]) == ["a"] and json.loads(first[4]) == ["a", "b"]
    assert json.loads(first[5]) == {"de": 2} and first[6] == "01AB"
    # a null struct gives null fields, not the values of its (unset) children
    assert second[:3] == (None, None, None) and second[6] is None
    assert json.loads(second[5]) == {}  # an empty map is an empty object, as Spark's to_json writes it


def test_postgres_types_of_delta_columns() -> None:
    assert pg_type(pa.timestamp("us")) == "timestamp"  # timestamp_ntz
    assert pg_type(pa.timestamp("us", "UTC")) == "timestamptz"
    assert pg_type(pa.decimal128(10, 2)) == "numeric(10,2)"
    kinds = (pa.bool_(), pa.int16(), pa.int32(), pa.float32(), pa.float64(), pa.string())
    names = ["boolean", "smallint", "integer", "real", "double precision", "text"]
    assert [pg_type(t) for t in kinds] == names
