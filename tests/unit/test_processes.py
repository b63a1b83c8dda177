"""pipelines/ops/processes.py on real child processes (no services needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tootlake.pipelines.ops import processes

SLEEP = "import time; time.sleep(60)"
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")


def _is_sleeper(args: list[str]) -> bool:
    return "time.sleep(60)" in " ".join(args)


@pytest.fixture
def child():
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_read_pid(tmp_path: Path) -> None:
    (tmp_path / "a.pid").write_text("1234\n/var/lib/data\n")
    (tmp_path / "b.pid").write_text("not a pid")
    assert processes.read_pid(tmp_path / "a.pid") == 1234
    assert processes.read_pid(tmp_path / "b.pid") is None and processes.read_pid(tmp_path / "none") is None


def test_a_process_is_running_only_with_a_matching_command_line(child) -> None:
    proc = child(SLEEP)
    assert processes.is_running(proc.pid, _is_sleeper)
    assert not processes.is_running(proc.pid, lambda args: "kafka.Kafka" in args)
    proc.kill()
    time.sleep(0.3)  # a zombie until reaped: not running
    assert not processes.is_running(proc.pid, _is_sleeper) and processes.command_line(proc.pid) is None
    proc.wait()


def test_terminate_sends_sigkill_when_sigterm_is_ignored(child) -> None:
    polite, stubborn = child(SLEEP), child(STUBBORN)
    assert stubborn.stdout.readline().strip() == "ready"
    assert processes.terminate(polite.pid, _is_sleeper, timeout=10) is True
    killed = []
    assert processes.terminate(stubborn.pid, _is_sleeper, 0.5, on_kill=lambda: killed.append(1)) is False
    assert killed == [1] and not processes.is_running(stubborn.pid, _is_sleeper)


def test_tree_rss_and_cpu_count_the_children(child) -> None:
    own = processes.tree_rss([os.getpid()])
    child(SLEEP)
    assert own > 10 * 2**20  # this interpreter alone holds more than 10 MiB
    assert processes.tree_rss([os.getpid()]) > own
    assert processes.tree_rss([2**22 + 1]) == 0  # no such process


BURN = ("import time; end = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
        "print('burnt', flush=True); time.sleep(60)")


def test_cpu_meter_keeps_the_time_of_a_child_that_exited(child) -> None:
    meter = processes.CpuMeter([os.getpid()])
    assert meter.seconds() == 0  # what this interpreter spent before the meter does not count
    burner = child(BURN)
    assert burner.stdout.readline().strip() == "burnt"
    meter.sample([os.getpid()])
    seen = meter.seconds()
    assert seen >= 0.35
    burner.kill()
    burner.wait()
    meter.sample([os.getpid()])  # the child is gone from the tree: its time stays counted
    assert meter.seconds() >= seen
    assert processes.CpuMeter([2**22 + 1]).seconds() == 0  # no such process


def test_cpu_meter_counts_a_process_that_joins_the_tree_late_from_its_first_sample() -> None:
    sum(range(3_000_000))  # make sure this interpreter has spent some CPU already
    meter = processes.CpuMeter([])
    meter.sample([os.getpid()])  # an old process (a server) seen for the first time
    assert meter.seconds() < 0.05  # not its whole lifetime
    sum(range(3_000_000))
    meter.sample([os.getpid()])
    assert meter.seconds() > 0


def test_wait_until_returns_the_first_true_value_or_the_last_one() -> None:
    calls, between = [], []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert processes.wait_until(third_time, timeout=5, every=0.01, between=lambda: between.append(1)) == 3
    assert len(between) == 2
    started = time.monotonic()
    assert processes.wait_until(lambda: None, timeout=0.3, every=0.05) is None
    assert 0.3 <= time.monotonic() - started < 2


def test_wait_until_lets_an_error_through() -> None:
    def boom() -> bool:
        raise RuntimeError("the run exited")

    with pytest.raises(RuntimeError, match="the run exited"):
        processes.wait_until(boom, timeout=5)
