"""produce_events without a broker: dry runs, filters, --max, the reporter, and the daemon's helpers."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tootlake.bronze.filters import FilterConfig
from tootlake.pipelines.settings import load_settings
from tootlake.pipelines.source.mastodon import ReplaySource, SourceEvent
from tootlake.pipelines.source.producer import produce_events, producer_config

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(tootlake_home=tmp_path, kafka_port=1999, producer_report_every_s=0.2)


@pytest.fixture
def no_kafka(monkeypatch):
    """Creating a producer or admin client fails the test: a dry run must not touch Kafka."""
    import confluent_kafka
    import confluent_kafka.admin

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a dry run created a Kafka client")

    monkeypatch.setattr(confluent_kafka, "Producer", forbidden)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", forbidden)


def test_dry_run_builds_counts_and_echoes_without_kafka(settings, no_kafka) -> None:
    lines: list[str] = []
    report = produce_events(settings, ReplaySource([FIXTURES]), dry_run=True, echo=lines.append)
    assert report.skipped_reasons == {"reblog": 7} and report.skipped_by_filter == 7
    assert report.produced == len(lines) == 422 - 7
    assert report.delivered == 0 and report.failed == 0 and report.malformed == 0
    key, kind, size = lines[0].split("\t")
    assert key.startswith("localhost:3000/") and kind == "status" and size.endswith(" bytes")
    assert "dry run: built 415 (status 415)" in report.summary()


def test_max_and_filters(settings, no_kafka) -> None:
    english = FilterConfig(languages=("en",))
    report = produce_events(settings, ReplaySource([TIMELINE]), dry_run=True, max_events=25, filters=english)
    assert report.produced == 25 and report.skipped_reasons.keys() <= {"language"}
    report = produce_events(settings, ReplaySource([TIMELINE]), dry_run=True, max_events=0)
    assert report.produced == 0


def test_deletes_pass_filters_and_malformed_counts_come_from_the_source(settings, no_kafka, tmp_path) -> None:
    events = [SourceEvent("delete", None, "42", "m.example", NOW)]
    report = produce_events(settings, events, dry_run=True,
                            filters=FilterConfig(include_keywords=("never-there",)))
    assert report.produced == 1 and report.events == {"delete": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + TIMELINE.read_text(encoding="utf-8").split("\n")[0] + "\n")
    report = produce_events(settings, ReplaySource([bad]), dry_run=True)
    assert (report.produced, report.malformed) == (1, 1)


def test_throughput_lines_also_while_the_source_is_quiet(settings, no_kafka, caplog) -> None:
    def slow():  # a quiet live stream: 0.3 s between posts, reports are due every 0.2 s
        for event in ReplaySource([TIMELINE]):
            yield event
            time.sleep(0.3)

    with caplog.at_level(logging.INFO, logger="tootlake.producer"):
        report = produce_events(settings, slow(), dry_run=True, max_events=4)
    lines = [r.getMessage() for r in caplog.records if "msg/s last" in r.getMessage()]
    assert len(lines) >= 3 and lines[-1].startswith(f"built {report.produced},")


def test_producer_config_is_idempotent_acks_all_and_compressed(settings) -> None:
    config = producer_config(settings)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["compression.type"] == "lz4"
    assert producer_config(settings.model_copy(update={"producer_compression": "zstd"}))[
        "compression.type"] == "zstd"


def test_envelope_value_is_compact_json_with_the_status_as_received(settings, no_kafka) -> None:
    from tootlake.bronze.records import encode_record

    raw = json.loads(TIMELINE.read_text(encoding="utf-8").split("\n")[0])
    event = next(iter(ReplaySource([TIMELINE], clock=lambda: NOW)))
    key, value = encode_record(event.envelope())
    assert key == f"mastodon.social/{raw['id']}".encode()
    assert json.loads(value) == {"schema_version": 1, "event": "status", "instance": "mastodon.social",
                                 "fetched_at": "2026-11-23T00:00:00.000Z", "status": raw}
    assert b'": ' not in value[:80]  # compact separators


# ---------------------------------------------------------------------------------------------------
# no record stops the producer: invalid text, oversized values, records that break the filters
# ---------------------------------------------------------------------------------------------------
class _Msg:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


class FakeKafka:
    """`confluent_kafka.Producer` stand-in. Like librdkafka, produce() refuses a value over the client's
    message size with MSG_SIZE_TOO_LARGE; like Kafka, a broker with a smaller limit refuses the whole batch
    that holds a larger record (every record in it gets MSG_SIZE_TOO_LARGE in its delivery callback).
    `down`: every delivery times out (the broker is unreachable). `hold`: poll() confirms nothing, only
    flush() does (one batch). `reverse`: confirmations come newest first (other partitions)."""

    def __init__(self, client_max: int = 1_000_000, broker_max: int | None = None, down: bool = False,
                 hold: bool = False, reverse: bool = False) -> None:
        self.client_max, self.broker_max, self.down = client_max, broker_max, down
        self.hold, self.reverse = hold, reverse
        self.topic: list[tuple[bytes, bytes]] = []
        self.pending: list = []
        self.on_produce = None
        self.lock = threading.RLock()

    def __call__(self, _config: dict) -> FakeKafka:  # stands in for the Producer class
        return self

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if len(key) + len(value) > self.client_max:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        with self.lock:
            self.pending.append((key, value, on_delivery))
        if self.on_produce is not None:
            self.on_produce(self)

    def _serve(self) -> int:
        from confluent_kafka import KafkaError

        with self.lock:
            batch, self.pending = self.pending, []
            too_large = self.broker_max is not None and any(len(v) > self.broker_max for _, v, _ in batch)
            for key, value, on_delivery in reversed(batch) if self.reverse else batch:
                if self.down:
                    on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(key, value))
                elif too_large:
                    on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), _Msg(key, value))
                else:
                    self.topic.append((key, value))
                    on_delivery(None, _Msg(key, value))
            return len(batch)

    def poll(self, _timeout: float = 0) -> int:
        return 0 if self.hold else self._serve()

    def flush(self, _timeout: float | None = None) -> int:
        self._serve()
        return 0


@pytest.fixture
def kafka(monkeypatch) -> FakeKafka:
    import confluent_kafka

    from tootlake.pipelines.source import producer

    fake = FakeKafka()
    monkeypatch.setattr(confluent_kafka, "Producer", fake)
    monkeypatch.setattr(producer, "_ensure_topic", lambda _s, timeout_s=15.0: (3, False), raising=False)
    monkeypatch.setattr(producer, "ensure_topic", lambda _settings, timeout_s=15.0: 3)
    return fake


def _replay_file(tmp_path: Path, lines: dict[int, str] | None = None, n: int = 30) -> Path:
    """The first `n` timeline statuses, with line i replaced by `lines[i]`."""
    out = _lines(TIMELINE)[:n]
    for i, line in (lines or {}).items():
        out[i] = line
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _with_content(line: str, content_json: str) -> str:
    """A status line whose content is the raw JSON string literal `content_json` (escapes kept)."""
    status = json.loads(line)
    status["content"] = "@@CONTENT@@"
    return json.dumps(status, ensure_ascii=False).replace('"@@CONTENT@@"', content_json)


def test_lone_surrogate_is_replaced_counted_and_the_post_kept(settings, kafka, tmp_path, caplog) -> None:
    lines = _lines(TIMELINE)
    bad = {3: _with_content(lines[3], '"<p>CANARY half an emoji \\ud83d, a whole one \\ud83d\\ude00</p>"'),
           7: _with_content(lines[7], '"<p>CANARY \\udc00 twice \\ud83d</p>"')}
    replay = _replay_file(tmp_path, bad)
    with caplog.at_level(logging.INFO, logger="tootlake.producer"):
        report = produce_events(settings, ReplaySource([replay]))
    assert (report.produced, report.delivered, report.failed) == (30, 30, 0)
    assert report.repaired == {"lone_surrogate": 2} and report.dead_lettered == 0
    values = {key.decode(): value for key, value in kafka.topic}
    fixed = json.loads(values[f"mastodon.social/{json.loads(lines[3])['id']}"].decode("utf-8"))
    assert fixed["status"]["content"] == "<p>CANARY half an emoji \ufffd, a whole one \U0001F600</p>"
    fixed = json.loads(values[f"mastodon.social/{json.loads(lines[7])['id']}"].decode("utf-8"))
    assert fixed["status"]["content"] == "<p>CANARY \ufffd twice \ufffd</p>"
    assert f"mastodon.social/{json.loads(lines[3])['id']}: 1 lone surrogate(s) replaced" in caplog.text
    assert "CANARY" not in caplog.text  # the key is logged, never the text
    assert "repaired: lone_surrogate 2" in report.summary()


def test_lone_surrogate_in_a_dry_run(settings, no_kafka, tmp_path) -> None:
    replay = _replay_file(tmp_path, {0: _with_content(_lines(TIMELINE)[0], '"\\ud83d"')}, n=3)
    report = produce_events(settings, ReplaySource([replay]), dry_run=True, echo=lambda _line: None)
    assert report.produced == 3 and report.repaired == {"lone_surrogate": 1}


def test_oversized_values_are_dead_lettered_and_the_rest_flows_on(settings, kafka, tmp_path, caplog) -> None:
    lines = _lines(TIMELINE)
    huge = '"<p>CANARY ' + "x" * 1_200_000 + ' \\ud83d</p>"'  # over the client's 1 MB
    large = '"<p>CANARY ' + "y" * 200_000 + '</p>"'  # under the client's limit, over the broker's
    replay = _replay_file(tmp_path, {2: _with_content(lines[2], huge), 5: _with_content(lines[5], large)})
    kafka.broker_max = 100_000
    kafka.hold = True  # one batch at the end: the broker refuses it all, for one record in it
    dead_letter = tmp_path / "state" / "dead-letter.jsonl"
    with caplog.at_level(logging.INFO, logger="tootlake.producer"):
        report = produce_events(settings, ReplaySource([replay]), dead_letter=dead_letter)
    assert (report.produced, report.delivered, report.failed) == (30, 28, 0)
    assert report.dead_letters == {"too_large": 2} and report.repaired == {"lone_surrogate": 1}
    assert len(kafka.topic) == 28
    keys = {f"mastodon.social/{json.loads(lines[i])['id']}" for i in (2, 5)}
    assert not keys & {key.decode() for key, _ in kafka.topic}
    raw = dead_letter.read_bytes()
    raw.decode("ascii")  # escapes only
    letters = [json.loads(line) for line in raw.decode().splitlines()]
    assert {d["key"] for d in letters} == keys and {d["reason"] for d in letters} == {"too_large"}
    for letter in letters:
        assert letter["size"] == len(letter["value"].encode()) > 100_000
        assert json.loads(letter["value"])["status"]["id"] in {k.split("/")[1] for k in keys}
    assert all(key in caplog.text for key in keys) and "CANARY" not in caplog.text
    assert "dead-lettered: too_large 2" in report.summary()


def test_a_value_over_the_message_size_does_not_stop_the_producer(settings, kafka, tmp_path) -> None:
    lines = _lines(TIMELINE)
    replay = _replay_file(tmp_path, {4: _with_content(lines[4], '"' + "z" * 1_100_000 + '"')}, n=10)
    report = produce_events(settings, ReplaySource([replay]))
    assert (report.delivered, report.failed, report.dead_letters) == (9, 0, {"too_large": 1})


def test_a_record_that_breaks_the_filters_is_dead_lettered(settings, kafka, tmp_path) -> None:
    status = json.loads(_lines(TIMELINE)[1])
    status["language"] = 5  # not a string: the language filter raises on it
    replay = _replay_file(tmp_path, {1: json.dumps(status)}, n=5)
    report = produce_events(settings, ReplaySource([replay]), filters=FilterConfig(languages=("tr", "en")),
                            dead_letter=tmp_path / "dl.jsonl")
    assert report.dead_letters == {"unprocessable": 1}
    assert report.delivered + report.skipped_by_filter == 4 and report.failed == 0
    letter = json.loads((tmp_path / "dl.jsonl").read_text())
    assert letter["key"] == f"mastodon.social/{status['id']}"
    assert json.loads(letter["value"])["status"] == status


def test_broker_down_fails_deliveries_as_before_and_dead_letters_nothing(settings, kafka, tmp_path) -> None:
    from tootlake.pipelines.source.producer import replay_progress

    kafka.down = True
    replay = _replay_file(tmp_path, n=10)
    progress = replay_progress(settings, [replay])
    report = produce_events(settings, ReplaySource([replay]), progress=progress,
                            dead_letter=tmp_path / "dl.jsonl")
    assert (report.produced, report.delivered, report.failed, report.dead_lettered) == (10, 0, 10, 0)
    assert not (tmp_path / "dl.jsonl").exists()
    assert replay_progress(settings, [replay]).position == 0  # nothing confirmed: all resent next time


def test_other_kafka_errors_from_produce_still_raise(settings, kafka, tmp_path) -> None:
    from confluent_kafka import KafkaError, KafkaException

    def unknown_topic(_fake) -> None:
        raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))

    kafka.on_produce = unknown_topic
    with pytest.raises(KafkaException):
        produce_events(settings, ReplaySource([_replay_file(tmp_path, n=3)]))


# ---------------------------------------------------------------------------------------------------
# a replay resumes where it stopped
# ---------------------------------------------------------------------------------------------------
def _keys(kafka: FakeKafka) -> list[str]:
    return [key.decode() for key, _ in kafka.topic]


def _all_keys() -> list[str]:
    return [f"mastodon.social/{json.loads(line)['id']}" for line in _lines(TIMELINE)]


def test_replay_resumes_where_it_stopped_and_max_counts_the_whole_replay(settings, kafka) -> None:
    from tootlake.pipelines.source.producer import replay_progress

    def run(max_events=None, **kwargs):
        return produce_events(settings, ReplaySource([TIMELINE]), max_events=max_events,
                              progress=replay_progress(settings, [TIMELINE]), **kwargs)

    first = run(100)
    assert (first.delivered, first.resumed_at) == (100, 0)
    assert run(100).produced == 0  # a restarted `--max 100` has nothing left to send
    second = run(300)
    assert (second.produced, second.resumed_at) == (200, 100)
    assert "replay resumed at event 100" in second.summary()
    assert run().delivered == 928 - 300
    assert run().produced == 0  # the replay is done
    assert _keys(kafka) == _all_keys()  # every record once, in order
    saved = json.loads(replay_progress(settings, [TIMELINE]).path.read_text())
    assert (saved["position"], saved["records"], saved["topic"]) == (928, 928, settings.kafka_topic)


def test_other_topic_or_fresh_state_or_new_topic_start_from_the_top(settings, kafka, monkeypatch,
                                                                    tmp_path) -> None:
    from tootlake.pipelines.source import producer
    from tootlake.pipelines.source.producer import replay_progress

    produce_events(settings, ReplaySource([TIMELINE]), max_events=50,
                   progress=replay_progress(settings, [TIMELINE]))
    assert replay_progress(settings, [TIMELINE]).position == 50
    other_topic = settings.model_copy(update={"kafka_topic": "another-topic"})
    assert replay_progress(other_topic, [TIMELINE]).position == 0
    fresh = settings.model_copy(update={"state_dir": tmp_path / "fresh-state"})
    assert replay_progress(fresh, [TIMELINE]).position == 0
    other_broker = settings.model_copy(update={"kafka_bootstrap_servers": "kafka.example:9092"})
    assert replay_progress(other_broker, [TIMELINE]).position == 0
    # the topic was deleted (or the broker wiped) since: this run creates it, and replays it all
    monkeypatch.setattr(producer, "_ensure_topic", lambda _settings, timeout_s=15.0: (3, True))
    report = produce_events(settings, ReplaySource([TIMELINE]),
                            progress=replay_progress(settings, [TIMELINE]))
    assert report.resumed_at == 0 and report.delivered == 928


def test_progress_only_counts_confirmed_deliveries(settings, kafka, monkeypatch) -> None:
    """What a SIGKILL would leave: the file never claims a record Kafka has not confirmed."""
    from tootlake.pipelines.source import producer
    from tootlake.pipelines.source.producer import replay_progress

    monkeypatch.setattr(producer, "PROGRESS_EVERY_S", 0.0)
    produce_events(settings, ReplaySource([TIMELINE]), max_events=20, progress=replay_progress(settings,
                                                                                              [TIMELINE]))
    kafka.hold = True  # from now on handed over, but not confirmed before the final flush
    progress = replay_progress(settings, [TIMELINE])
    seen: list[int] = []
    kafka.on_produce = lambda _fake: seen.append(json.loads(progress.path.read_text())["position"])
    report = produce_events(settings, ReplaySource([TIMELINE]), max_events=200, progress=progress)
    assert report.delivered == 180 and len(seen) == 180 and set(seen) == {20}
    assert json.loads(progress.path.read_text())["position"] == 200  # after the flush confirmed them


def test_out_of_order_confirmations_and_failures_keep_a_safe_position(settings, kafka) -> None:
    from tootlake.pipelines.source.producer import _Positions, replay_progress

    positions = _Positions(10, 4)
    positions.done(12, record=True)
    positions.done(10, record=False)
    assert (positions.position, positions.records) == (11, 4)
    positions.done(11, record=True)
    assert (positions.position, positions.records) == (13, 6)

    kafka.reverse = True
    report = produce_events(settings, ReplaySource([TIMELINE]), max_events=40,
                            progress=replay_progress(settings, [TIMELINE]))
    assert report.delivered == 40 and replay_progress(settings, [TIMELINE]).position == 40


def test_a_crashed_replay_loses_nothing_on_restart(settings, kafka) -> None:
    from tootlake.pipelines.source.producer import replay_progress

    def crash(fake) -> None:
        if len(fake.topic) + len(fake.pending) == 60:
            raise RuntimeError("crash")

    kafka.hold, kafka.on_produce = True, crash
    with pytest.raises(RuntimeError):
        produce_events(settings, ReplaySource([TIMELINE]), progress=replay_progress(settings, [TIMELINE]))
    kafka.hold, kafka.on_produce = False, None
    report = produce_events(settings, ReplaySource([TIMELINE]),
                            progress=replay_progress(settings, [TIMELINE]))
    assert report.resumed_at <= 60
    keys = _keys(kafka)
    assert set(keys) == set(_all_keys()) and len(keys) - len(set(keys)) <= 1  # at least once


def test_cli_replay_resumes_from_start_and_dry_run_leave_the_position(settings, kafka, tmp_path,
                                                                       capsys) -> None:
    import argparse

    from tootlake.pipelines.cli.produce import _passthrough, run_producer
    from tootlake.pipelines.source.producer import replay_progress

    def args(**kwargs) -> argparse.Namespace:
        values = dict(source="replay", files=[TIMELINE], max_events=None, rate=None, instance=None,
                      timeline=None, hashtag=None, dry_run=False, from_start=False, dead_letter=None)
        return argparse.Namespace(**{**values, **kwargs})

    assert run_producer(settings, args(max_events=300)) == 0
    assert run_producer(settings, args(dry_run=True)) == 0  # a dry run shows the whole replay
    assert "dry run: built 928" in capsys.readouterr().out
    assert run_producer(settings, args()) == 0
    assert "produced 628 (status 628)" in capsys.readouterr().out
    assert _keys(kafka) == _all_keys()
    assert run_producer(settings, args(from_start=True, max_events=10)) == 0
    assert replay_progress(settings, [TIMELINE]).position == 10
    assert _keys(kafka)[928:] == _all_keys()[:10]
    assert "--from-start" in _passthrough(args(from_start=True))


def test_a_full_local_queue_is_drained_by_polling_until_the_record_fits():
    from tootlake.pipelines.source.producer import send_when_queued

    class FullQueue:
        def __init__(self, full_for: int) -> None:
            self.full_for, self.polls, self.sent = full_for, [], []

        def produce(self, topic, key, value, on_delivery) -> None:
            if len(self.polls) < self.full_for:
                raise BufferError("Local: Queue full")
            self.sent.append((topic, key, value))

        def poll(self, timeout: float) -> int:
            self.polls.append(timeout)
            return 0

    producer = FullQueue(full_for=3)
    send_when_queued(producer, "t", b"k", b"v", lambda *_: None, poll_s=0.25)
    assert producer.polls == [0.25, 0.25, 0.25] and producer.sent == [("t", b"k", b"v")]
    at_once = FullQueue(full_for=0)
    send_when_queued(at_once, "t", b"k", b"v", lambda *_: None)
    assert at_once.polls == [] and len(at_once.sent) == 1
