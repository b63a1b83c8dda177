"""silver.timestamps.utc_timestamp: every timestamp form the sources use -> the right UTC instant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pyspark.sql import functions as F

from tootlake.silver.timestamps import spark_literal, utc_timestamp

CASES = [
    # REST API form
    ("2023-10-20T15:55:35.889Z", datetime(2023, 10, 20, 15, 55, 35, 889000, UTC)),
    ("2023-10-20T15:55:35Z", datetime(2023, 10, 20, 15, 55, 35, tzinfo=UTC)),
    # Python isoformat (Mastodon.py dumps), with and without microseconds
    ("2023-10-19T18:29:55+00:00", datetime(2023, 10, 19, 18, 29, 55, tzinfo=UTC)),
    ("2023-10-19T18:29:57.331000+00:00", datetime(2023, 10, 19, 18, 29, 57, 331000, UTC)),
    # other offsets, with and without the colon
    ("2023-10-19T20:29:57+02:00", datetime(2023, 10, 19, 18, 29, 57, tzinfo=UTC)),
    ("2023-10-19T18:29:57.5-05:30", datetime(2023, 10, 19, 23, 59, 57, 500000, UTC)),
    ("2023-10-19 20:29:57+0200", datetime(2023, 10, 19, 18, 29, 57, tzinfo=UTC)),
    # naive and date-only: taken as UTC
    ("2023-10-19T00:00:00", datetime(2023, 10, 19, tzinfo=UTC)),
    ("2022-08-30", datetime(2022, 8, 30, tzinfo=UTC)),
    # nanoseconds are cut to microseconds
    ("2023-10-19T18:29:57.123456789Z", datetime(2023, 10, 19, 18, 29, 57, 123456, UTC)),
    # epoch seconds / milliseconds (Mastodon.py's int datetime form)
    ("1697740197", datetime(2023, 10, 19, 18, 29, 57, tzinfo=UTC)),
    ("1697740197123", datetime(2023, 10, 19, 18, 29, 57, 123000, UTC)),
    # Java zoned form
    ("2023-10-19T18:29:57Z[UTC]", datetime(2023, 10, 19, 18, 29, 57, tzinfo=UTC)),
    ("  2023-10-20T15:55:35.889Z ", datetime(2023, 10, 20, 15, 55, 35, 889000, UTC)),
]
BAD = ["garbage", "", "2023-13-45T99:00:00Z", None, "yesterday"]


def _micros(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _parse(spark, values):
    df = spark.createDataFrame([(v,) for v in values], "raw string")
    # unix_micros gives the instant without any session-zone rendering in between
    return [r[0] for r in df.select(F.unix_micros(utc_timestamp(F.col("raw")))).collect()]


def test_every_form_gives_the_utc_instant(spark):
    got = _parse(spark, [raw for raw, _ in CASES])
    for (raw, expected), value in zip(CASES, got, strict=True):
        assert value == _micros(expected), raw


def test_unparseable_values_are_null(spark):
    assert _parse(spark, BAD) == [None] * len(BAD)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_result_does_not_depend_on_the_session_time_zone(spark, zone):
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", zone)
    try:
        got = _parse(spark, ["2023-10-19T00:00:00", "2022-08-30", "2023-10-20T15:55:35.889Z"])
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert got == [_micros(datetime(2023, 10, 19, tzinfo=UTC)), _micros(datetime(2022, 8, 30, tzinfo=UTC)),
                   _micros(datetime(2023, 10, 20, 15, 55, 35, 889000, UTC))]


def test_spark_literal_is_the_same_instant(spark):
    instant = datetime(2024, 1, 2, 3, 4, 5, 6, UTC)
    assert spark.range(1).select(F.unix_micros(spark_literal(instant))).first()[0] == _micros(instant)
    with pytest.raises(ValueError):
        spark_literal(datetime(2024, 1, 2))
