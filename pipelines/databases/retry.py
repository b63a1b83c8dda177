"""Retry a whole batch transaction when the database connection is lost, then give up with a clear error."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class SyncError(RuntimeError):
    """A sync batch could not be written; the stream checkpoint was not advanced for it."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    base_s: float = 1.0  # back-off before try n+1: base * 2**(n-1), capped at max_s
    max_s: float = 30.0

    def delays(self) -> list[float]:
        return [min(self.max_s, self.base_s * 2**n) for n in range(self.attempts - 1)]


def with_retry(
    action: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`; on a transient (connection) error call `on_retry` (drop the connection), back off, retry.

    `action` must be a whole transaction that is safe to repeat (our batches are: newer-wins upserts).
    Non-transient errors propagate at once. After the last try a SyncError says what to do.
    """
    delays = policy.delays()
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            on_retry()
            if attempt == policy.attempts:
                waited = sum(delays)
                first_line = (str(exc).strip().splitlines() or [""])[0]
                raise SyncError(
                    f"{what}: connection lost and not back after {policy.attempts} tries over {waited:.1f} s "
                    f"({type(exc).__name__}: {first_line}). "
                    "Nothing was committed for this batch and the checkpoint did not advance: start the "
                    "database (e.g. `tootlake services up`) and run `tootlake sync` again."
                ) from exc
            delay = delays[attempt - 1]
            log(f"[sync] {what}: connection problem ({type(exc).__name__}); retry {attempt}/"
                f"{policy.attempts - 1} in {delay:.1f} s")
            sleep(delay)
    raise AssertionError("unreachable")
