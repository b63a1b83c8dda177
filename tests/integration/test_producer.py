"""Producer against the real (embedded) Kafka broker: counts, keys, partitions, dry run, malformed lines,
resumed replays, records the broker refuses, and the daemon's start/status/stop round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from tootlake.pipelines.source.mastodon import ReplaySource
from tootlake.pipelines.source.producer import ensure_topic, produce_events

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"
SSE_DOCS = DATA / "mastodon-streaming-sse" / "mastodon_docs.dev.sse"


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark per partition ({} when the topic does not exist)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.partitions}
    finally:
        consumer.close()


def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, deadline = [], time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                messages.append(msg)
        extra = consumer.poll(1.0)  # nothing beyond what we expect
        assert extra is None or extra.error() is not None, "more messages than expected on the topic"
    finally:
        consumer.close()
    return messages


@pytest.fixture
def topic_settings(settings, kafka_bootstrap, unique_name):
    return settings.model_copy(update={"kafka_topic": unique_name, "producer_report_every_s": 1.0})


@pytest.fixture
def cli_env(topic_settings, tmp_path) -> dict[str, str]:
    """Environment that makes a `tootlake` child process use the test broker and this test's topic."""
    env = dict(os.environ)
    env.update({
        "TOOTLAKE_HOME": str(topic_settings.tootlake_home),
        "KAFKA_PORT": str(topic_settings.kafka_port),
        "KAFKA_CONTROLLER_PORT": str(topic_settings.kafka_controller_port),
        "KAFKA_TOPIC": topic_settings.kafka_topic,
        "PRODUCER_PID_FILE": str(tmp_path / "run" / "producer.pid"),
        "PRODUCER_LOG_FILE": str(tmp_path / "log" / "producer.log"),
        "STATE_DIR": str(tmp_path / "state"),  # replay positions and dead letters stay with the test
        "PRODUCER_REPORT_EVERY_S": "1",
        "SHARED_DATA_DIR": str(DATA.resolve()),
    })
    if topic_settings.kafka_bootstrap_servers:
        env["KAFKA_BOOTSTRAP_SERVERS"] = topic_settings.kafka_bootstrap_servers
    return env


def _tootlake(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tootlake.pipelines.cli", *args], env=env, timeout=timeout,
                          capture_output=True, text=True, cwd=env["TOOTLAKE_HOME"])


def test_replay_n_statuses_gives_exactly_n_messages_with_post_keys_on_3_partitions(topic_settings) -> None:
    bootstrap, topic = topic_settings.bootstrap_servers, topic_settings.kafka_topic
    raw = [json.loads(line) for line in _lines(TIMELINE)]
    report = produce_events(topic_settings, ReplaySource([TIMELINE]))
    assert (report.produced, report.delivered, report.failed) == (len(raw), len(raw), 0)

    watermarks = _watermarks(bootstrap, topic)
    assert len(watermarks) == 3 == topic_settings.kafka_partitions
    assert sum(watermarks.values()) == len(raw)  # exactly N records
    assert all(count > 0 for count in watermarks.values())  # keys spread over the partitions

    messages = _consume_all(bootstrap, topic, len(raw))
    by_key = {m.key().decode(): json.loads(m.value()) for m in messages}
    assert set(by_key) == {f"mastodon.social/{s['id']}" for s in raw}
    envelope = by_key[f"mastodon.social/{raw[0]['id']}"]
    assert envelope["schema_version"] == 1 and envelope["event"] == "status"
    assert envelope["instance"] == "mastodon.social" and envelope["fetched_at"].endswith("Z")
    assert envelope["status"] == raw[0]  # as received
    print(f"\nproducer: {report.summary()}")


def test_edits_and_deletes_of_a_post_share_its_key_and_partition(topic_settings) -> None:
    source = ReplaySource([FIXTURES, SSE_DOCS])
    report = produce_events(topic_settings, source)
    assert report.failed == 0 and report.produced == 422 + 10 - report.skipped_by_filter
    assert report.skipped_reasons == {"reblog": 7}  # FILTER_EXCLUDE_REBLOGS defaults to true
    messages = _consume_all(topic_settings.bootstrap_servers, topic_settings.kafka_topic, report.produced)
    partitions_of = defaultdict(set)
    events_of = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        partitions_of[m.key()].add(m.partition())
        events_of[m.key()].append(json.loads(m.value())["event"])
    assert all(len(p) == 1 for p in partitions_of.values())
    repeated = [k for k, events in events_of.items() if len(events) > 1]
    assert len(repeated) > 50  # fixtures hold several states of one post
    deleted = [k for k, events in events_of.items() if "delete" in events]
    assert len(deleted) == 2 and all(events_of[k][0] != "delete" for k in deleted)


def test_dry_run_writes_nothing(topic_settings, cli_env) -> None:
    bootstrap, topic = topic_settings.bootstrap_servers, topic_settings.kafka_topic
    # a missing topic is not even created
    report = produce_events(topic_settings, ReplaySource([TIMELINE]), dry_run=True, max_events=100)
    assert report.produced == 100 and report.delivered == 0
    assert _watermarks(bootstrap, topic) == {}

    produce_events(topic_settings, ReplaySource([TIMELINE]), max_events=10)
    before = _watermarks(bootstrap, topic)
    assert sum(before.values()) == 10
    result = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(TIMELINE), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "\tstatus\t" in line]
    assert len(lines) == 928 and lines[0].startswith("mastodon.social/")
    assert "dry run: built 928" in result.stdout
    assert _watermarks(bootstrap, topic) == before  # offsets unchanged


def test_malformed_line_is_reported_with_its_line_number_and_the_rest_goes_through(
        topic_settings, cli_env, tmp_path: Path) -> None:
    good = _lines(TIMELINE)[:20]
    replay = tmp_path / "with-bad-line.jsonl"
    replay.write_text("\n".join(good[:6] + ['{"id": "1", "content": '] + good[6:]) + "\n")
    result = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(replay))
    assert result.returncode == 0, result.stderr
    assert f"{replay}:7: malformed record skipped (invalid JSON" in result.stderr
    assert "produced 20 (status 20); delivered 20, failed 0, filtered 0, malformed 1" in result.stdout
    watermarks = _watermarks(topic_settings.bootstrap_servers, topic_settings.kafka_topic)
    assert sum(watermarks.values()) == 20


def test_producer_daemon_start_status_stop(topic_settings, cli_env, tmp_path: Path) -> None:
    pid_file = Path(cli_env["PRODUCER_PID_FILE"])
    log_file = Path(cli_env["PRODUCER_LOG_FILE"])
    assert _tootlake(cli_env, "producer", "status").returncode == 3

    started = _tootlake(cli_env, "producer", "start", "--source", "replay", "--file", str(TIMELINE),
                        "--rate", "50")
    assert started.returncode == 0, started.stderr + started.stdout
    pid = int(pid_file.read_text())
    assert f"producer started (pid {pid})" in started.stdout
    again = _tootlake(cli_env, "producer", "start")
    assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout

    time.sleep(3)  # a few throughput lines (every second)
    status = _tootlake(cli_env, "producer", "status")
    assert status.returncode == 0 and f"producer running (pid {pid})" in status.stdout

    stopped = _tootlake(cli_env, "producer", "stop")
    assert stopped.returncode == 0 and f"producer stopped (pid {pid})" in stopped.stdout
    assert not pid_file.exists()
    assert _tootlake(cli_env, "producer", "status").returncode == 3

    log = log_file.read_text()
    assert "SIGTERM received: stopping, flushing" in log
    assert "msg/s last" in log  # periodic throughput lines
    final = next(line for line in log.splitlines() if line.startswith("stopped by signal; produced "))
    produced = int(final.split("produced ")[1].split()[0])
    assert 0 < produced < 928  # stopped mid-replay
    assert f"delivered {produced}, failed 0" in final  # SIGTERM flushed everything queued
    watermarks = _watermarks(topic_settings.bootstrap_servers, topic_settings.kafka_topic)
    assert sum(watermarks.values()) == produced


def test_stale_pid_file_is_handled(cli_env) -> None:
    pid_file = Path(cli_env["PRODUCER_PID_FILE"])
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n")
    status = _tootlake(cli_env, "producer", "status")
    assert status.returncode == 3 and "not running" in status.stdout
    assert not pid_file.exists()
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a producer: a recycled PID
    assert _tootlake(cli_env, "producer", "stop").stdout.strip() == "producer not running"
    assert not pid_file.exists()


def test_ensure_topic_is_idempotent(topic_settings) -> None:
    assert ensure_topic(topic_settings) == 3
    assert ensure_topic(topic_settings) == 3


def test_replay_resumes_where_it_stopped_and_from_start_replays_it(topic_settings, cli_env,
                                                                   tmp_path: Path) -> None:
    replay = tmp_path / "twenty.jsonl"
    replay.write_text("\n".join(_lines(TIMELINE)[:20]) + "\n")

    def total() -> int:
        return sum(_watermarks(topic_settings.bootstrap_servers, topic_settings.kafka_topic).values())

    first = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(replay), "--max", "8")
    assert first.returncode == 0, first.stderr
    assert total() == 8
    rest = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(replay))
    assert rest.returncode == 0, rest.stderr
    assert "produced 12 (status 12)" in rest.stdout and "replay resumed at event 8" in rest.stdout
    assert "replay resumes at event 8" in rest.stderr
    messages = _consume_all(topic_settings.bootstrap_servers, topic_settings.kafka_topic, 20)
    assert sorted(m.key().decode() for m in messages) == sorted(
        f"mastodon.social/{json.loads(line)['id']}" for line in _lines(replay))  # each once
    done = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(replay))
    assert done.returncode == 0 and "produced 0" in done.stdout and total() == 20
    again = _tootlake(cli_env, "produce", "--source", "replay", "--file", str(replay), "--from-start")
    assert again.returncode == 0 and "produced 20 (status 20)" in again.stdout and total() == 40


def test_invalid_text_and_values_over_the_broker_limit_do_not_stop_the_producer(
        topic_settings, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from tootlake.pipelines.source.producer import replay_progress

    bootstrap, topic = topic_settings.bootstrap_servers, topic_settings.kafka_topic
    replication = 1 if topic_settings.uses_embedded_kafka else -1
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=replication,
                                  config={"max.message.bytes": "100000"})])[topic].result(timeout=30)
    lines = _lines(TIMELINE)[:12]
    statuses = [json.loads(line) for line in lines]
    big, broken = statuses[4], statuses[7]
    big["content"] = "<p>" + os.urandom(200_000).hex() + "</p>"  # 400 kB that lz4 cannot shrink
    lines[4] = json.dumps(big)
    lines[7] = json.dumps(broken).replace('"content": "', '"content": "\\ud83d half an emoji ', 1)
    replay = tmp_path / "bad-records.jsonl"
    replay.write_text("\n".join(lines) + "\n")
    dead_letter = tmp_path / "dead-letter.jsonl"

    own = topic_settings.model_copy(update={"state_dir": tmp_path / "state"})
    report = produce_events(own, ReplaySource([replay]), dead_letter=dead_letter,
                            progress=replay_progress(own, [replay]))
    assert (report.produced, report.delivered, report.failed) == (12, 11, 0)
    assert replay_progress(own, [replay]).position == 12  # the dead letter is done with too
    assert report.dead_letters == {"too_large": 1} and report.repaired == {"lone_surrogate": 1}
    letter = json.loads(dead_letter.read_text())
    assert letter["key"] == f"mastodon.social/{big['id']}" and letter["reason"] == "too_large"
    assert json.loads(letter["value"])["status"]["content"] == big["content"]

    messages = _consume_all(bootstrap, topic, 11)
    by_key = {m.key().decode(): json.loads(m.value().decode("utf-8")) for m in messages}
    assert f"mastodon.social/{big['id']}" not in by_key
    fixed = by_key[f"mastodon.social/{broken['id']}"]["status"]["content"]
    assert fixed.startswith("\ufffd half an emoji ")
