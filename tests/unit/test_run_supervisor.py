"""The supervisor with tiny stand-in stages (Python processes): restart, back-off, clean stop, --once."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from tootlake.pipelines.jobs.streaming import LIVE_STATE_FILE
from tootlake.pipelines.ops.status import checkpoint_info, kafka_lag
from tootlake.pipelines.ops.supervisor import (
    APP_STAGE,
    Stage,
    Supervisor,
    app_query_states,
    child_env,
    continuous_stages,
    read_state,
    run_once,
    settings_env,
    stop_orphans,
    tree_rss,
)
from tootlake.pipelines.settings import SECRETS_FILE_ENV, load_settings

# A stage that prints, then sleeps until SIGTERM, on which it says so and exits 0.
SLEEPER = ("import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(0)))\n"
           "print('[fake] batch 0: 7 rows', flush=True)\n"
           "time.sleep(600)\n")
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(tootlake_home=tmp_path, state_dir=tmp_path / "state", log_dir=tmp_path / "log",
                         checkpoint_dir=tmp_path / "cp", lake_dir=tmp_path / "lake",
                         run_backoff_base_s=0.2, run_backoff_max_s=1.0, run_stop_timeout_s=3.0)


def _stage(name: str, code: str, finite: bool = False) -> Stage:
    return Stage(name, (sys.executable, "-c", code), finite=finite)


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _run_in_thread(sup: Supervisor) -> threading.Thread:
    # signal handlers can only be set in the main thread: stub them for the supervisor thread
    thread = threading.Thread(target=sup.run, kwargs={"poll_s": 0.05}, daemon=True)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def _no_signal_in_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tootlake.pipelines.ops.supervisor.signal.signal", lambda *_args: signal.SIG_DFL)


def test_killed_stage_restarts_and_stop_is_clean(settings) -> None:
    sup = Supervisor(settings, [_stage("a", SLEEPER), _stage("done", "print('bye')", finite=True)],
                     log=lambda _l: None, env=dict(os.environ))
    thread = _run_in_thread(sup)
    _wait(lambda: sup.states["a"].state == "running" and sup.states["done"].state == "done")
    first_pid = sup.states["a"].pid
    os.killpg(first_pid, signal.SIGKILL)
    _wait(lambda: sup.states["a"].restarts == 1 and sup.states["a"].state == "running")
    assert sup.states["a"].pid != first_pid
    assert sup.states["a"].last_exit == -signal.SIGKILL
    state = read_state(settings)
    assert state is not None and state["stages"]["a"]["restarts"] == 1
    assert state["stages"]["done"]["state"] == "done" and state["stages"]["done"]["restarts"] == 0
    # stop once the new process has installed its SIGTERM handler (it prints after that)
    _wait(lambda: Path(sup.states["a"].log).read_text().count("\n[fake] batch 0") == 2)
    sup.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert sup.states["a"].state == "stopped" and sup.states["a"].last_exit == 0
    log_text = Path(sup.states["a"].log).read_text()
    assert log_text.count("=== ") == 2 and "got SIGTERM" in log_text  # one log, appended across restarts


def test_crash_loop_backs_off(settings) -> None:
    sup = Supervisor(settings, [_stage("crash", "import sys; sys.exit(3)")], log=lambda _l: None,
                     env=dict(os.environ))
    thread = _run_in_thread(sup)
    _wait(lambda: sup.states["crash"].restarts >= 3, timeout=30)
    st = sup.states["crash"]
    assert st.last_exit == 3 and st.failures_in_a_row >= 3
    sup.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert st.state == "stopped"


def test_stage_ignoring_sigterm_is_killed_after_timeout(settings) -> None:
    sup = Supervisor(settings, [_stage("stubborn", STUBBORN)], log=lambda _l: None, env=dict(os.environ))
    thread = _run_in_thread(sup)
    _wait(lambda: sup.states["stubborn"].state == "running")
    time.sleep(0.5)  # let it install its handler
    started = time.monotonic()
    sup.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert 2.5 <= time.monotonic() - started < 8
    assert sup.states["stubborn"].last_exit == -signal.SIGKILL


def test_once_runs_in_order_and_fails_when_a_stage_fails(settings, tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); sys.exit(int(sys.argv[3]))"
    stages = [Stage(n, (sys.executable, "-c", write, str(marker), n, code))
              for n, code in (("one", "0"), ("two", "4"), ("three", "0"))]
    assert run_once(settings, log=lambda _l: None, stages=stages, env=dict(os.environ)) == 1
    assert marker.read_text().split() == ["one", "two", "three"]  # a failure does not stop the rest
    ok = [s for s in stages if s.name != "two"]
    assert run_once(settings, log=lambda _l: None, stages=ok, env=dict(os.environ)) == 0


def test_settings_env_round_trips(settings) -> None:
    env = settings_env(settings.model_copy(update={"filter_languages": ["en", "de"], "run_trigger_s": 7}))
    assert env["FILTER_LANGUAGES"] == "en,de" and float(env["RUN_TRIGGER_S"]) == 7
    assert env["LAKE_DIR"] == str(settings.lake_dir)
    one_app = continuous_stages(settings.model_copy(update={"run_trigger_s": 0.5}))
    assert [s.name for s in one_app] == ["producer", APP_STAGE]
    assert one_app[1].argv[-4:-2] == ("--trigger", "500 milliseconds") and not one_app[1].needs
    per_stage = continuous_stages(settings.model_copy(update={"run_trigger_s": 7, "run_one_app": False}))
    assert [s.name for s in per_stage] == ["producer", "bronze", "silver", "gold", "sync"]
    assert "7000 milliseconds" in per_stage[1].argv and per_stage[2].needs


def test_application_queries_show_as_stages(settings, tmp_path: Path) -> None:
    """`status` and the drill see each query of the one application as a stage: its own state while the
    application that wrote live.json runs, the application's pid and log, restarts added up."""
    settings = settings.model_copy(update={"state_dir": tmp_path})
    app = {"name": APP_STAGE, "state": "running", "pid": 4242, "restarts": 2, "log": "pipeline.log"}
    live = settings.path(settings.state_dir) / LIVE_STATE_FILE
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_text(json.dumps({"pid": 4242, "queries": {
        "silver": {"state": "backoff", "restarts": 3, "last_error": "boom", "last_batch_id": 9}}}))
    stages = app_query_states(app, settings)
    assert set(stages) == {"bronze", "silver", "gold", "sync"}
    assert stages["silver"]["state"] == "backoff" and stages["silver"]["restarts"] == 5
    assert stages["silver"]["pid"] == 4242 and stages["silver"]["last_error"] == "boom"
    assert stages["bronze"]["state"] == "running" and stages["bronze"]["restarts"] == 2
    # a live.json of an earlier application (another pid) says nothing about this one
    stale = app_query_states({**app, "pid": 5151}, settings)
    assert stale["silver"]["state"] == "running" and stale["silver"]["restarts"] == 2
    # the application down: every query has its state
    down = app_query_states({**app, "state": "backoff"}, settings)
    assert {s["state"] for s in down.values()} == {"backoff"}


def test_tree_rss_counts_children() -> None:
    own = tree_rss([os.getpid()])
    assert own > 10 * 2**20  # this interpreter alone holds more than 10 MiB


def test_checkpoint_offsets_and_lag(tmp_path: Path) -> None:
    cp = tmp_path / "bronze"
    (cp / "commits").mkdir(parents=True)
    (cp / "offsets").mkdir()
    for n, offsets in ((0, {"0": 5, "1": 4}), (1, {"0": 9, "1": 4})):
        (cp / "offsets" / str(n)).write_text("v1\n{}\n" + json.dumps({"topic": offsets}))
    (cp / "commits" / "0").write_text("v1\n{}")
    info = checkpoint_info(cp)
    assert info is not None and info["batch"] == 0 and info["offsets"] == {"topic": {"0": 5, "1": 4}}
    assert kafka_lag({"0": 12, "1": 4, "2": 3}, info["offsets"], "topic") == {"0": 7, "1": 0, "2": None}
    assert checkpoint_info(tmp_path / "missing") is None


def test_stage_waits_for_its_input_table(settings, tmp_path: Path) -> None:
    needed = tmp_path / "lake" / "bronze" / "posts_raw" / "_delta_log"
    waiting = Stage("b", (sys.executable, "-c", SLEEPER), needs=(needed,))
    sup = Supervisor(settings, [waiting], log=lambda _l: None, env=dict(os.environ))
    thread = _run_in_thread(sup)
    _wait(lambda: sup.states["b"].state == "waiting")
    time.sleep(0.5)
    assert sup.states["b"].pid is None
    needed.mkdir(parents=True)
    _wait(lambda: sup.states["b"].state == "running")
    _wait(lambda: "\n[fake] batch 0" in Path(sup.states["b"].log).read_text())
    sup.request_stop()
    thread.join(10)
    assert sup.states["b"].restarts == 0 and sup.states["b"].last_exit == 0


def test_children_read_the_same_settings(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = settings.model_copy(update={"kafka_topic": "drill-x", "postgres_db": "drill_x",
                                         "filter_languages": ["en"], "spark_cores_max": 2})
    for name, value in settings_env(custom).items():
        monkeypatch.setenv(name, value)
    seen = load_settings()
    assert seen.model_dump() == custom.model_dump()


def test_stages_orphaned_by_a_dead_supervisor_are_stopped(settings) -> None:
    # a stand-in stage: its command line names an entry point (-m tootlake.pipelines...), own session
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                               "-m", "tootlake.pipelines.jobs.bronze"], start_new_session=True)
    not_ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                 "-m", "tootlake.pipelines.jobs.silver"])  # not a group leader
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = settings.path(settings.state_dir) / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": dead.pid, "stages": {"bronze": {"pid": orphan.pid},
                                                            "silver": {"pid": not_ours.pid}}}))
    try:
        assert stop_orphans(settings, log=lambda _l: None, timeout_s=5) == ["bronze"]
        assert orphan.wait(5) == -signal.SIGTERM
        assert not_ours.poll() is None
    finally:
        not_ours.kill()
        orphan.kill()


SECRETS = {
    "postgres_dsn": "host=db.example user=app password=pg-s3cret-1",
    "postgres_password": "pg-s3cret-2",
    "oracle_dsn": "tcps://ora-s3cret-3.example:1522/svc",
    "oracle_password": "ora-s3cret-4",
    "oracle_wallet_password": "wallet-s3cret-5",
    "mastodon_access_token": "token-s3cret-6",
}
PRINT_SECRETS = ("import json; from tootlake.pipelines.settings import load_settings; s = load_settings(); "
                 f"print(json.dumps({{n: getattr(s, n).get_secret_value() for n in {sorted(SECRETS)!r}}}))")


def test_child_env_holds_no_secret_yet_children_resolve_them(settings, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    for name, value in SECRETS.items():  # also inherited by the supervisor: must not pass through
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.delenv(SECRETS_FILE_ENV, raising=False)
    custom = settings.model_copy(update={name: SecretStr(value) for name, value in SECRETS.items()})
    assert not set(SECRETS) & {name.lower() for name in settings_env(custom)}
    env = child_env(custom, continuous=True)
    everything = "\n".join(f"{name}={value}" for name, value in env.items())
    for value in SECRETS.values():
        assert value not in everything
    # the secrets go through a file only its owner can read, in the state folder
    path = Path(env[SECRETS_FILE_ENV])
    assert path.is_relative_to(settings.path(settings.state_dir))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    result = subprocess.run([sys.executable, "-c", PRINT_SECRETS], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == SECRETS


def test_supervisor_removes_its_secrets_file_when_it_stops(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRETS_FILE_ENV, raising=False)
    custom = settings.model_copy(update={"mastodon_access_token": SecretStr("token-s3cret-7")})
    sup = Supervisor(custom, [_stage("a", SLEEPER)], log=lambda _l: None)
    path = Path(sup.env[SECRETS_FILE_ENV])
    assert "token-s3cret-7" not in "".join(sup.env.values()) and path.exists()
    thread = _run_in_thread(sup)
    _wait(lambda: sup.states["a"].state == "running")
    _wait(lambda: "\n[fake] batch 0" in Path(sup.states["a"].log).read_text())
    assert path.exists()  # while the stages run (a restarted stage reads it again)
    sup.request_stop()
    thread.join(10)
    assert not thread.is_alive() and not path.exists()
    # once-mode writes its own and removes it too
    assert run_once(custom, log=lambda _l: None, stages=[_stage("x", "pass")]) == 0
    assert not any((settings.path(settings.state_dir) / "secrets").iterdir())
