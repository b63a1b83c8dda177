"""Timestamp normalisation: every form a Mastodon timestamp arrives in -> a UTC `timestamp` column.

Forms seen in the sources (see ../shared/data/*/README.md):
- REST API: `2023-10-20T15:55:35.889Z` (ISO 8601, `Z`, milliseconds);
- Mastodon.py / Python isoformat: `2023-10-19T18:29:55+00:00`, `2023-10-19T18:29:57.331000+00:00`,
  other offsets (`+02:00`, `-0530`), naive `2023-10-19T00:00:00` and date-only `2022-08-30` (both UTC);
- Mastodon.py's epoch form for datetimes: integer seconds or milliseconds (`1697740197`, `1697740197123`);
- Java's zoned form `2023-10-19T18:29:57Z[UTC]`.
The result never depends on the session time zone: zone-less values get an explicit `Z` before parsing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pyspark.sql import Column
from pyspark.sql import functions as F

# The first Mastodon release (v0.1.0, 2016-03-16): a post cannot be older.
MASTODON_EPOCH = datetime(2016, 3, 16, tzinfo=UTC)

_EPOCH_NUMBER = r"^-?[0-9]{1,16}(\.[0-9]+)?$"
_HAS_ZONE = r"(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
_DATE_ONLY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MILLIS_ABOVE = 100_000_000_000
# Epoch values at or above this (in ms: the year 5138) are not a timestamp: null, never a cast overflow.
_EPOCH_LIMIT = 100_000_000_000_000
# Every timestamp a row can hold must survive Python (datetime: years 1..9999) and both databases.
EARLIEST_TIMESTAMP = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC)


def utc_timestamp(raw: Column) -> Column:
    """A string column holding any of the forms above -> UTC timestamp; null when empty, unparseable or
    outside years 1..9999 (total: no input makes it raise, e.g. a 16-digit epoch or `+10000-01-01`)."""
    text = F.regexp_replace(F.trim(raw), r"\[[^\]]*\]$", "")  # `...Z[UTC]` -> `...Z`
    number = F.when(text.rlike(_EPOCH_NUMBER), text.try_cast("double"))
    number = F.when(F.abs(number) < _EPOCH_LIMIT, number)
    epoch_micros = F.when(F.abs(number) >= _MILLIS_ABOVE, number * 1_000).otherwise(number * 1_000_000)
    iso = (
        F.when(text.rlike(_DATE_ONLY), F.concat(text, F.lit("T00:00:00Z")))
        .when(text.rlike(_HAS_ZONE), text)
        .otherwise(F.concat(text, F.lit("Z")))
    )
    parsed = (
        F.when(text.isNull() | (text == ""), F.lit(None).cast("timestamp"))
        .when(text.rlike(_EPOCH_NUMBER), F.timestamp_micros(epoch_micros.try_cast("long")))
        .otherwise(iso.try_cast("timestamp"))
    )
    in_range = parsed.between(spark_literal(EARLIEST_TIMESTAMP), spark_literal(LATEST_TIMESTAMP))
    return F.when(in_range, parsed)


def spark_literal(ts: datetime) -> Column:
    """An aware datetime as a timestamp literal that means the same instant whatever the session zone."""
    if ts.tzinfo is None:
        raise ValueError("pass an aware datetime (UTC) so the instant is unambiguous")
    return F.timestamp_micros(F.lit(int(ts.timestamp() * 1_000_000)))
