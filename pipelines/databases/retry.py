"""Retry a whole batch transaction when the database connection is lost, then give up with a clear error."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")
logger = logging.getLogger(__name__)


class SyncError(RuntimeError):
    """A sync batch could not be written; the stream checkpoint was not advanced for it."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    base_s: float = 1.0  # back-off before try n+1: base * 2**(n-1), capped at max_s
    max_s: float = 30.0

    def wait(self) -> wait_exponential:
        return wait_exponential(multiplier=self.base_s, max=self.max_s, exp_base=2)

    def delays(self) -> list[float]:
        """The waits before tries 2..attempts (what `wait()` gives after each failed try)."""
        wait, state = self.wait(), RetryCallState(None, None, (), {})
        out = []
        for state.attempt_number in range(1, self.attempts):
            out.append(wait(state))
        return out


def with_retry(
    action: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = logger.info,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`; on a transient (connection) error call `on_retry` (drop the connection), back off, retry.

    `action` must be a whole transaction that is safe to repeat (our batches are: newer-wins upserts).
    Non-transient errors propagate at once. After the last try a SyncError says what to do.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        log(f"[sync] {what}: connection problem ({type(exc).__name__}); retry {state.attempt_number}/"
            f"{policy.attempts - 1} in {state.upcoming_sleep:.1f} s")

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise SyncError(
            f"{what}: connection lost and not back after {policy.attempts} tries over "
            f"{sum(policy.delays()):.1f} s ({type(exc).__name__}: {first_line}). "
            "Nothing was committed for this batch and the checkpoint did not advance: start the "
            "database (e.g. `tootlake services up`) and run `tootlake sync` again."
        ) from exc

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(policy.attempts),
        wait=policy.wait(),
        after=lambda _state: on_retry(),  # after every transient failure, the last one too
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        sleep=sleep,
    )
    return retrying(action)
