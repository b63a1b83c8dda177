"""The one-application mode's query supervision (pipelines/jobs/live.py) with stand-in queries: waiting for an
input, restart with back-off, the clear error, giving up to a fresh JVM, state for `status`, clean stop."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tootlake.pipelines.jobs.live import LiveApp, LiveQuery


class FakeQuery:
    """What LiveApp uses of a StreamingQuery."""

    def __init__(self, batches: int = 1) -> None:
        self.isActive = True
        self.error: BaseException | None = None
        self.recentProgress = [{"batchId": n, "numInputRows": 3} for n in range(batches)]
        self.stopped = False

    @property
    def lastProgress(self):
        return self.recentProgress[-1] if self.recentProgress else None

    def exception(self):
        return self.error

    def fail(self, message: str) -> None:
        self.isActive, self.error = False, RuntimeError(message)

    def stop(self) -> None:
        self.isActive, self.stopped = False, True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(settings, queries, tmp_path, clock):
    conf = settings.model_copy(update={"run_backoff_base_s": 2.0, "run_backoff_max_s": 60.0,
                                       "run_healthy_after_s": 120.0, "run_app_max_query_failures": 3})
    lines: list[str] = []
    app = LiveApp(conf, queries, state_file=tmp_path / "live.json", log=lines.append, clock=clock)
    return app, lines


def test_failed_query_restarts_after_back_off_with_its_clear_error(settings, tmp_path) -> None:
    clock = Clock()
    started: list[FakeQuery] = []

    def start():
        started.append(FakeQuery(batches=2))
        return started[-1]

    clear = ValueError("rule posts_unique failed")
    query = LiveQuery("silver", start, explain=lambda error: clear)
    other = LiveQuery("bronze", lambda: FakeQuery())
    app, lines = _app(settings, [other, query], tmp_path, clock)
    app.states["silver"].state = app.states["bronze"].state = "waiting"
    app.tick()
    assert app.states["silver"].state == "running" and len(started) == 1
    app.tick()  # progress is read on the next look
    assert app.states["silver"].last_batch_id == 1 and "[silver] batch 0: 3 rows" in "\n".join(lines)
    started[-1].fail("py4j noise")
    clock.now += 10
    app.tick()
    st = app.states["silver"]
    assert st.state == "backoff" and st.last_error == "ValueError: rule posts_unique failed"
    clock.now += 1.0
    app.tick()
    assert len(started) == 1 and st.next_start_in_s == 1.0  # 2 s back-off, 1 s to go
    clock.now += 1.0
    app.tick()
    assert len(started) == 2 and st.state == "running" and st.restarts == 1
    assert app.states["bronze"].state == "running" and app.states["bronze"].restarts == 0
    app.write_state(force=True)
    state = json.loads((tmp_path / "live.json").read_text())
    assert state["queries"]["silver"]["restarts"] == 1 and state["queries"]["bronze"]["state"] == "running"


def test_back_off_doubles_and_too_many_failures_end_the_application(settings, tmp_path) -> None:
    clock = Clock()
    attempts: list[FakeQuery] = []

    def start():
        attempts.append(FakeQuery())
        attempts[-1].fail("always")
        return attempts[-1]

    app, lines = _app(settings, [LiveQuery("sync", start)], tmp_path, clock)
    app.tick()  # started, fails at once
    app.tick()
    assert app.states["sync"].state == "backoff" and app.retry_at["sync"] == clock.now + 2.0
    clock.now += 2.0
    app.tick()  # second start
    app.tick()
    assert app.retry_at["sync"] == clock.now + 4.0
    clock.now += 4.0
    app.tick()
    app.tick()  # third failure in a row: the application gives up so the supervisor starts a new JVM
    assert app.exit_code == 1 and app.stop_requested
    assert "ending the application" in lines[-1]


def test_a_query_waits_for_its_input_and_a_start_error_is_retried(settings, tmp_path) -> None:
    clock = Clock()
    ready = [False]
    calls = [0]

    def start():
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("no silver table yet")
        return FakeQuery()

    app, _lines = _app(settings, [LiveQuery("gold", start, ready=lambda: ready[0])], tmp_path, clock)
    app.tick()
    assert calls[0] == 0 and app.states["gold"].state == "waiting"
    ready[0] = True
    app.tick()  # the start raises: retried like a failure
    assert app.states["gold"].state == "backoff" and "no silver table yet" in app.states["gold"].last_error
    clock.now += 2.0
    app.tick()
    assert app.states["gold"].state == "running"
    handle = app.running["gold"]
    app.stop_all()
    assert handle.stopped and app.states["gold"].state == "stopped" and not app.running


def test_maintenance_is_scheduled_never_at_start_and_never_twice_at_once() -> None:
    from tootlake.pipelines.ops.maintain import Schedule, never_seen_tombstones

    schedule = Schedule(every_s=60.0)
    assert not schedule.due(100.0)  # the first look only sets the clock: the queries start first
    assert not schedule.due(159.0) and schedule.due(160.0) and not schedule.due(161.0)
    assert schedule.due(221.0)
    assert not Schedule(every_s=0).due(10**9)  # 0 = never
    condition = never_seen_tombstones(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert condition == "is_deleted AND created_at IS NULL AND deleted_at < TIMESTAMP '2026-01-02 03:04:05'"


def test_a_slow_maintenance_is_not_started_again_while_it_runs(settings, tmp_path) -> None:
    import threading

    clock = Clock()
    release, runs = threading.Event(), []
    conf = settings.model_copy(update={"maintain_every_s": 10.0})
    app = LiveApp(conf, [], log=lambda _l: None, clock=clock,
                  maintenance=lambda: (runs.append(1), release.wait(5)))
    app.maybe_maintain()
    clock.now += 10
    app.maybe_maintain()
    clock.now += 10
    app.maybe_maintain()  # due again, but the first run still holds the thread
    release.set()
    app.maintenance_thread.join(5)
    assert runs == [1]


def test_new_progress_reads_the_last_update_and_the_recent_ones_only_after_a_gap() -> None:
    from tootlake.pipelines.jobs.streaming import new_progress

    class Counting(FakeQuery):
        reads = 0

        @property
        def recentProgress(self):
            Counting.reads += 1
            return self._updates

        @recentProgress.setter
        def recentProgress(self, value):
            self._updates = value

        @property
        def lastProgress(self):
            return self._updates[-1] if self._updates else None

    query = Counting(batches=3)
    assert [p["batchId"] for p in new_progress(query, set())] == [0, 1, 2]
    assert Counting.reads == 1
    assert new_progress(query, {0, 1, 2}) == []
    query._updates.append({"batchId": 3, "numInputRows": 1})
    assert [p["batchId"] for p in new_progress(query, {0, 1, 2})] == [3]
    assert Counting.reads == 1  # the next batch: lastProgress alone
    query._updates += [{"batchId": 4, "numInputRows": 1}, {"batchId": 5, "numInputRows": 1}]
    assert [p["batchId"] for p in new_progress(query, {0, 1, 2, 3})] == [4, 5]  # one missed: the recent ones
    assert Counting.reads == 2
