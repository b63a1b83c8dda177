"""Poison-pill isolation, the last line of defence behind total parsing.

When a micro-batch fails on something record-level (a bug nobody foresaw: a UDF that raises, a cast that
overflows, a value a database refuses), the stage must not crash-loop on it forever. `bisect` splits the
batch in halves until the failing record(s) stand alone; every other record is committed, the poison
goes to the quarantine with the error text (Kafka Connect's dead-letter queue, Flink's side outputs).

Infrastructure errors (disk full, database or broker down, out of memory, a concurrent writer) are not
the records' fault: they are raised at once, for the stage's retries and its supervisor. If every single
record of a batch of ALL_FAILED_MIN_BATCH or more fails on its own, the cause is not the records either,
and the first error is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TypeVar

T = TypeVar("T")
# A batch at least this large whose every record fails on its own is not failing on its records. Below it
# (a post and its edit with the same bad text, say) every record is quarantined: never a crash loop.
ALL_FAILED_MIN_BATCH = 8

# Text that marks an error as the machine's, not a record's, whatever exception carries it.
_INFRASTRUCTURE_MARKERS = (
    "No space left on device",
    "java.io.IOException",
    "FileNotFoundException",
    "OutOfMemoryError",
    "Java heap space",
    "Connection refused",
    "connection to server",
    "server closed the connection",
    "SparkContext was shut down",
    "Cannot call methods on a stopped SparkContext",
    "Python worker exited unexpectedly",
)
# Spark error conditions (SQLSTATE-like names) that are about a value, not the machine.
_RECORD_CONDITIONS = (
    "CAST_", "ARITHMETIC_", "DATETIME_", "DIVIDE_BY_ZERO", "NUMERIC_", "INVALID_", "MALFORMED_",
    "VARIANT_", "CANNOT_PARSE", "INCOMPARABLE", "DELTA_MULTIPLE_SOURCE_ROW_MATCHING", "UNSUPPORTED_",
    "NULL_", "EXPRESSION_DECODING", "PYTHON_", "ARROW_", "STRING_", "CONVERSION_",
)


def is_record_level(exc: BaseException) -> bool:
    """True when `exc` can be caused by the content of a record (so isolating the record may help)."""
    if isinstance(exc, (OSError, MemoryError, KeyboardInterrupt, SystemExit)):
        return False
    from tootlake.pipelines.lake import commit_conflicts

    if isinstance(exc, commit_conflicts()):  # a concurrent Delta writer committed first
        return False
    text = f"{type(exc).__name__}: {exc}"
    if any(marker in text for marker in _INFRASTRUCTURE_MARKERS):
        return False
    if isinstance(exc, _spark_types()[0]):
        return True
    if _is_database_data_error(exc):
        return True
    condition = _condition(exc)
    if condition and condition.startswith(_RECORD_CONDITIONS):
        return True
    return isinstance(exc, (ValueError, TypeError, UnicodeError, OverflowError, KeyError, IndexError))


# Oracle errors about a value, not the server: unique / check / FK violations, NULL into NOT NULL, value
# too large, number precision, invalid number, date conversions.
_ORA_DATA_ERRORS = {1, 1400, 1407, 1438, 1722, 1830, 1840, 1841, 1843, 1847, 1861, 2290, 2291, 12899}


def _is_database_data_error(exc: BaseException) -> bool:
    # PostgreSQL SQLSTATE class 22 (data exception) and 23 (integrity violation): the row, not the server
    code = getattr(exc, "pgcode", None) or ""
    if code.startswith(("22", "23")):
        return True
    error = exc.args[0] if exc.args else None  # python-oracledb: args[0] is an _Error with .code
    return getattr(error, "code", None) in _ORA_DATA_ERRORS


@cache
def _spark_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(Spark's record-level exception types, (PythonException,)); empty without pyspark (the sync's
    pure parts run without it)."""
    try:
        from pyspark.errors import (
            ArithmeticException,
            ArrayIndexOutOfBoundsException,
            DateTimeException,
            IllegalArgumentException,
            NumberFormatException,
            PythonException,
            SparkRuntimeException,
        )
    except ImportError:
        return (), ()
    return ((ArithmeticException, ArrayIndexOutOfBoundsException, DateTimeException, IllegalArgumentException,
             NumberFormatException, PythonException, SparkRuntimeException), (PythonException,))


def _condition(exc: BaseException) -> str | None:
    getter = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    try:
        return getter() if getter else None
    except Exception:  # noqa: BLE001 - a JVM-side getter on a dead gateway
        return None


def error_text(exc: BaseException, limit: int = 500) -> str:
    """One line for the quarantine's `reason`: the exception type and the last line of its message (a
    Python traceback from a worker ends with the error itself)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    if lines and not isinstance(exc, _spark_types()[1]):
        message = lines[0]
    return f"{type(exc).__name__}: {message}"[:limit]


def bisect(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], None],
    record_level: Callable[[BaseException], bool] = is_record_level,
    failed_with: BaseException | None = None,
) -> list[tuple[T, BaseException]]:
    """Run `attempt` on halves of `items` until each failure is down to one item; return those items
    with their errors. Every other item has been attempted successfully exactly once (in some part).

    Raises at once on an error that is not record-level, and raises the first error when every item of
    a batch of ALL_FAILED_MIN_BATCH or more failed on its own (then it is not the records).
    `failed_with`: the error the whole batch already failed with (so it is not attempted again).
    """
    poisoned: list[tuple[T, BaseException]] = []
    pending: list[Sequence[T]] = [items]
    while pending:
        part = pending.pop()
        try:
            if failed_with is not None and part is items:
                raise failed_with
            attempt(part)
        except Exception as exc:
            if not record_level(exc):
                raise
            if len(part) == 1:
                poisoned.append((part[0], exc))
            else:
                middle = len(part) // 2
                pending.extend([part[middle:], part[:middle]])
    if len(items) >= ALL_FAILED_MIN_BATCH and len(poisoned) == len(items):
        raise poisoned[0][1]
    return poisoned
