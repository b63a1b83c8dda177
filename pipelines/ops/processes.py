"""Processes: is a PID still the program we started, its command line, memory and CPU of a process tree,
PID files and JSON state files, stopping a process, and polling until something is true (psutil and
tenacity; no `/proc`)."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psutil
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


def read_pid(path: Path) -> int | None:
    """The PID in the first word of a PID file (ours, Kafka's, postmaster.pid); None if unreadable."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Write a JSON state file atomically (a temporary file, then a rename): a reader such as `tootlake
    status` never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def read_state_file(path: Path) -> dict[str, Any] | None:
    """A JSON state file written by `write_state_file`; None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def exists(pid: int) -> bool:
    return psutil.pid_exists(pid)


def command_line(pid: int) -> list[str] | None:
    """The arguments of a live process; None when it is gone, a zombie, or not ours to read."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_running(pid: int, matches: Callable[[list[str]], bool] = lambda _args: True) -> bool:
    """True when `pid` runs (not a zombie) and its command line `matches` (a recycled PID does not)."""
    args = command_line(pid)
    return args is not None and matches(args)


def _tree(pids: Iterable[int]) -> list[psutil.Process]:
    """`pids` and all their descendants (JVMs, Python workers) that still run."""
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found.setdefault(pid, process)
            for child in process.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(found.values())


def rss_bytes(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def tree_rss(pids: Iterable[int]) -> int:
    """Sum of RSS over `pids` and all their descendants, in bytes."""
    total = 0
    for process in _tree(pids):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


class CpuMeter:
    """CPU seconds (user + system) a process tree spent since the meter was made, counted per process.

    `sample(pids)` records every live process of the tree; `seconds()` is the sum, over each process seen,
    of its last sampled time minus its time at the start (0 for a process born after the start). A
    process that exits keeps the time last seen, so the figure never goes backwards when workers exit
    (a sum over the *current* tree does: an exited worker's time leaves it unless its parent reaps it);
    what it loses is an exited process's last slice, at most one sampling period of it. Sample often.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._start: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._lock = threading.Lock()  # a sampler thread and the caller may sample at once
        self._made_at = time.time()
        self._sample(pids, first=True)

    def sample(self, pids: Iterable[int]) -> None:
        self._sample(pids, first=False)

    def _sample(self, pids: Iterable[int], first: bool) -> None:
        seen = []
        for process in _tree(pids):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seen.append(((process.pid, process.create_time()), times.user + times.system))
        with self._lock:
            for key, used in seen:
                # running when the meter was made (also one that joins the tree later, e.g. a server the
                # stack connects to mid-run): only what it spends from its first sample on counts; one
                # born since counts from zero
                born_before = key[1] < self._made_at - 1.0
                self._start.setdefault(key, used if first or born_before else 0.0)
                self._last[key] = max(used, self._last.get(key, 0.0))

    def seconds(self) -> float:
        with self._lock:
            return sum(self._last[key] - start for key, start in self._start.items())


def wait_until(condition: Callable[[], T], timeout: float, every: float = 0.2,
               between: Callable[[], None] = lambda: None) -> T:
    """Call `condition` every `every` s until it returns something true or `timeout` s have passed; returns
    its last value. `between` runs before each pause; an exception of `condition` propagates at once."""

    def last_value(state: RetryCallState) -> T:
        return state.outcome.result()

    return Retrying(retry=retry_if_result(lambda value: not value), stop=stop_after_delay(timeout),
                    wait=wait_fixed(every), before_sleep=lambda _state: between(),
                    retry_error_callback=last_value)(condition)


def wait_gone(pid: int, matches: Callable[[list[str]], bool], timeout: float, every: float = 0.2) -> bool:
    """Wait until `pid` no longer runs `matches` (reaping it when it is our child); True when it is gone."""

    def gone() -> bool:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(0)  # reaps our own child; a no-op wait for other processes
        return not is_running(pid, matches)

    return wait_until(gone, timeout, every)


def signal_process(pid: int, signum: int) -> None:
    """Send `signum` to `pid`; a process already gone is not an error."""
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).send_signal(signum)


def terminate(pid: int, matches: Callable[[list[str]], bool], timeout: float,
              on_kill: Callable[[], None] = lambda: None, kill_wait_s: float = 10.0) -> bool:
    """SIGTERM, wait up to `timeout` for the process to go, then `on_kill()` and SIGKILL. True when SIGTERM
    was enough."""
    signal_process(pid, signal.SIGTERM)
    if wait_gone(pid, matches, timeout):
        return True
    on_kill()
    signal_process(pid, signal.SIGKILL)
    wait_gone(pid, matches, kill_wait_s)
    return False
