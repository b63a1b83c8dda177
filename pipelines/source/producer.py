"""Mastodon events → Kafka topic (confluent-kafka): idempotent, acks=all, compressed, keyed by post key.

`produce_events` is the one entry point (CLI, daemon, demo and tests call it). Filters run here, on the
producer side; the envelope keeps the status as received (but see `encode_event` for invalid text).

No record stops the producer: a record that cannot be encoded, or that Kafka refuses (too large), is
counted per reason, logged by post key (never its text) and, when a dead-letter file is given, appended to
it (`DeadLetters`); everything else flows on. Infrastructure errors (broker down, unknown topic, fatal
producer errors) are not record errors: they fail deliveries or raise, as before.

A replay can resume: `ReplayProgress` persists how far it got (after delivery is confirmed) in the state
folder, and the next run with the same files, topic and broker skips what was already sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, wait_fixed

from tootlake.bronze.filters import FilterConfig, drop_reason
from tootlake.bronze.records import encode_record
from tootlake.pipelines.source.mastodon import SourceEvent

log = logging.getLogger("tootlake.producer")
# librdkafka's own log (one line per failed connection attempt, every ~50 ms while a broker is down) goes
# here, silenced: failures reach us through delivery callbacks and `ensure_topic`'s check instead.
kafka_log = logging.getLogger("tootlake.kafka")
kafka_log.setLevel(logging.CRITICAL)


# Kafka errors about records, not the broker. The broker refuses a whole batch for one record in it (the
# others get the same error, or _INVALID_DIFFERENT_RECORD), so a record refused by the broker is sent once
# more on its own, and dead-lettered only when refused alone too (or by the producer itself: over its size).
RECORD_ERRORS = {"MSG_SIZE_TOO_LARGE": "too_large", "RECORD_LIST_TOO_LARGE": "too_large",
                 "INVALID_MSG_SIZE": "too_large", "INVALID_RECORD": "invalid_record",
                 "_INVALID_DIFFERENT_RECORD": "invalid_record"}
PROGRESS_EVERY_S = 1.0  # how often a replay's progress file is rewritten while it runs


@dataclass
class ProduceReport:
    """What one run did. `produced` = records that passed the filters and were handed to Kafka (or built,
    in a dry run); once flushed, produced = delivered + failed + dead-lettered.
    `repaired` counts records sent with invalid text replaced, `dead_letters` records given up, per reason.
    `resumed_at`: the replay position this run started from (0: from the top)."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    skipped_by_filter: int = 0
    malformed: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    skipped_reasons: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)
    resumed_at: int = 0

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def rate(self) -> float:
        """Messages per second over the whole run (delivered, or built in a dry run)."""
        done = self.produced if self.dry_run else self.delivered
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "none"
        head = "dry run: built" if self.dry_run else "produced"
        text = (f"{head} {self.produced} ({kinds}); delivered {self.delivered}, failed {self.failed}, "
                f"filtered {self.skipped_by_filter}, malformed {self.malformed}; "
                f"{self.elapsed_s:.1f} s, {self.rate:.0f} msg/s")
        for label, counts in (("filtered", self.skipped_reasons), ("repaired", self.repaired),
                              ("dead-lettered", self.dead_letters)):
            if counts:
                text += f" [{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "]"
        if self.resumed_at:
            text += f" [replay resumed at event {self.resumed_at}]"
        return text


def filter_config(settings: Any) -> FilterConfig:
    return FilterConfig(
        exclude_reblogs=settings.filter_exclude_reblogs,
        languages=tuple(settings.filter_languages),
        include_keywords=tuple(settings.filter_include_keywords),
        exclude_keywords=tuple(settings.filter_exclude_keywords),
    )


def producer_config(settings: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,  # no duplicates or reordering on retries
        "acks": "all",
        "compression.type": settings.producer_compression,
        "linger.ms": 20,  # small batches: throughput without noticeable latency
        "client.id": "tootlake-producer",
        "logger": kafka_log,
    }


def ensure_topic(settings: Any, timeout_s: float = 15.0) -> int:
    """Create the topic with KAFKA_PARTITIONS partitions when missing; return its partition count."""
    return _ensure_topic(settings, timeout_s)[0]


def _ensure_topic(settings: Any, timeout_s: float = 15.0) -> tuple[int, bool]:
    """(partition count, whether this call created the topic)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "logger": kafka_log})
    topic = settings.kafka_topic
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise RuntimeError(f"Kafka at {settings.bootstrap_servers} does not answer ({exc}); "
                           "start it with `tootlake services up` or set KAFKA_BOOTSTRAP_SERVERS") from None
    if topic in metadata.topics and not metadata.topics[topic].error:
        partitions = len(metadata.topics[topic].partitions)
        if partitions != settings.kafka_partitions:
            log.warning("topic %s has %d partitions, KAFKA_PARTITIONS says %d (left as is)",
                        topic, partitions, settings.kafka_partitions)
        return partitions, False
    # The embedded broker has one node; elsewhere take the broker's default replication (-1).
    replication = 1 if settings.uses_embedded_kafka else -1
    futures = admin.create_topics([NewTopic(topic, num_partitions=settings.kafka_partitions,
                                            replication_factor=replication)])
    try:
        futures[topic].result(timeout=timeout_s)
        log.info("created topic %s with %d partitions", topic, settings.kafka_partitions)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race with another producer: fine
            raise
        return settings.kafka_partitions, False
    return settings.kafka_partitions, True


# ---------------------------------------------------------------------------------------------------
# records: encoding, invalid text, dead letters
# ---------------------------------------------------------------------------------------------------
def encode_event(event: SourceEvent) -> tuple[bytes, bytes, int]:
    """(key, value, number of lone surrogates replaced) for one event.

    Text can hold a lone UTF-16 surrogate (JSON `"\\ud83d"` without its pair: a client cut an emoji in
    half), which has no UTF-8 form. Such a post is kept, each lone surrogate replaced with U+FFFD (the
    Unicode replacement character), and the caller counts the record as `repaired`. Dropping the post for
    one broken code unit would lose much more than that code unit, and escaping it in the JSON would only
    move the failure downstream (Spark decodes the escape into the same invalid string): this way bronze
    and silver only ever see valid UTF-8. Surrogates that do form a pair become their character.
    Other encoding failures raise (the caller dead-letters the record).
    """
    try:
        return (*encode_record(event.envelope()), 0)
    except UnicodeEncodeError:
        envelope, replaced = _replace_lone_surrogates(event.envelope())
        return (*encode_record(envelope), replaced)


def _replace_lone_surrogates(value: Any) -> tuple[Any, int]:
    """`value` (plain JSON) with lone surrogates replaced by U+FFFD in every string and key; the count."""
    if isinstance(value, str):
        if not any("\ud800" <= ch <= "\udfff" for ch in value):
            return value, 0
        fixed = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return fixed, fixed.count("\ufffd") - value.count("\ufffd")
    if isinstance(value, Mapping):
        out, total = {}, 0
        for key, item in value.items():
            new_key, in_key = _replace_lone_surrogates(key)
            new_item, in_item = _replace_lone_surrogates(item)
            out[new_key] = new_item
            total += in_key + in_item
        return out, total
    if isinstance(value, list | tuple):
        items = [_replace_lone_surrogates(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def _text(data: bytes | str | None) -> str | None:
    """Bytes as text without failing (invalid UTF-8 kept as `\\xNN`)."""
    if data is None or isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "backslashreplace")


class DeadLetters:
    """Records the producer gives up on, so that none of them stops it.

    Each is counted per reason in `report.dead_letters`, logged with its post key and size (never its
    text; the first 20 of a run, then every 1000th) and, when `path` is set, appended to that JSONL file:
    one line `{"at", "key", "reason", "size", "value"}` per record, `value` being the Kafka value as text
    (the envelope, for a record that could not be encoded) written with JSON escapes only (ASCII), so a
    lone surrogate or invalid byte stays visible and the file is always valid UTF-8.
    Reasons: `too_large` (over the client's or broker's message size), `invalid_record` (refused by the
    broker), `unprocessable` (the filters or the encoding raised on it).
    """

    def __init__(self, report: ProduceReport, path: Path | None = None) -> None:
        self.report, self.path = report, path

    def add(self, key: bytes | str | None, reason: str, value: bytes | str | None, detail: str = "") -> None:
        self.report.dead_letters[reason] += 1
        count = self.report.dead_lettered
        key_text = _text(key) or "?"
        size = len(value) if value is not None else 0
        if count <= 20 or count % 1000 == 0:
            log.warning("record %s dead-lettered (%s%s, %d bytes)%s", key_text, reason,
                        f": {detail}" if detail else "", size, f"; see {self.path}" if self.path else "")
        if self.path is None:
            return
        line = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "key": key_text, "reason": reason,
                "size": size, "value": _text(value)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=True) + "\n")


def _envelope_text(event: SourceEvent) -> str | None:
    """The envelope as ASCII JSON for a dead letter (None if even that fails)."""
    try:
        return json.dumps(event.envelope(), ensure_ascii=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return None


def _event_key(event: SourceEvent) -> str:
    try:
        return event.key
    except (TypeError, ValueError, KeyError):
        return f"{event.instance}/?"


# ---------------------------------------------------------------------------------------------------
# replay progress
# ---------------------------------------------------------------------------------------------------
@dataclass
class ReplayProgress:
    """How far a replay of `files` into `topic` got: its first `position` events are done (delivered,
    filtered out or dead-lettered), and `records` of them were records (what `--max` counts).

    One small JSON file per (files, topic, broker) under `<STATE_DIR>/producer/`, so other files, another
    topic or broker, or a fresh state folder start from the top; so does a file that has shrunk since it
    was written (other contents). It is rewritten atomically while the replay runs, only up to what Kafka
    confirmed: after a crash or SIGKILL the next run sends again at most the last second's records (at
    least once; silver deduplicates by post key) and never skips one.
    """

    path: Path
    files: list[str]
    topic: str
    bootstrap: str
    position: int = 0
    records: int = 0

    @classmethod
    def load(cls, state_dir: Path, files: Iterable[Path | str], topic: str, bootstrap: str) -> ReplayProgress:
        resolved = [str(Path(f).resolve()) for f in files]
        identity = json.dumps({"files": resolved, "topic": topic, "bootstrap": bootstrap}, sort_keys=True)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        progress = cls(Path(state_dir) / "producer" / f"replay-{digest}.json", resolved, topic, bootstrap)
        try:
            saved = json.loads(progress.path.read_text(encoding="utf-8"))
            position, records = int(saved["position"]), int(saved["records"])
            sizes = list(saved.get("sizes") or [])
        except FileNotFoundError:
            return progress
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("replay progress %s unreadable (%s): the replay starts from the top",
                        progress.path, type(exc).__name__)
            return progress
        if any(int(size) > _size(Path(f)) for f, size in zip(resolved, sizes, strict=False)):
            log.warning("a replay file is shorter than when %s was written: the replay starts from the top",
                        progress.path)
            return progress
        progress.position, progress.records = max(position, 0), max(records, 0)
        return progress

    def reset(self) -> None:
        self.position = self.records = 0

    def save(self) -> None:
        data = {"files": self.files, "topic": self.topic, "bootstrap": self.bootstrap,
                "position": self.position, "records": self.records,
                "sizes": [_size(Path(f)) for f in self.files],
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # whoever reads it (the next run, after a SIGKILL) sees old or new


def replay_progress(settings: Any, files: Iterable[Path | str]) -> ReplayProgress:
    """The saved progress of replaying `files` into KAFKA_TOPIC (position 0 when there is none)."""
    return ReplayProgress.load(settings.path(settings.state_dir), files, settings.kafka_topic,
                               settings.bootstrap_servers)


def dead_letter_path(settings: Any) -> Path:
    """Where the CLI appends dead-lettered records: `<STATE_DIR>/producer/dead-letter.jsonl`."""
    return settings.path(settings.state_dir) / "producer" / "dead-letter.jsonl"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Positions:
    """Which source events are done, for the replay progress. Events finish out of order (deliveries on
    different partitions), so the position is the length of the done prefix: nothing below it is still in
    flight or failed. `records` counts the records (events not filtered out) below the position.
    Disabled (a live source: no position to keep), it keeps nothing."""

    def __init__(self, position: int = 0, records: int = 0, enabled: bool = True) -> None:
        self.position, self.records, self.enabled = position, records, enabled
        self._done: dict[int, bool] = {}
        self._lock = threading.Lock()

    def done(self, index: int, record: bool) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._done[index] = record
            while self.position in self._done:
                self.records += self._done.pop(self.position)
                self.position += 1


class _Reporter(threading.Thread):
    """Logs a throughput line every `every_s` seconds, also while the source is quiet (a live stream),
    and serves delivery callbacks meanwhile so `delivered` stays current."""

    def __init__(self, every_s: float, report: ProduceReport, producer: Any) -> None:
        super().__init__(name="producer-report", daemon=True)
        self.every_s, self.report, self.producer = every_s, report, producer
        self.last_at, self.last_count = time.monotonic(), 0
        self.done = threading.Event()

    def line(self) -> None:
        now = time.monotonic()
        count = self.report.produced
        window = (count - self.last_count) / max(now - self.last_at, 1e-9)
        log.info("%s %d, delivered %d, failed %d, filtered %d (%.0f msg/s last %.0f s)",
                 "built" if self.report.dry_run else "produced", count, self.report.delivered,
                 self.report.failed, self.report.skipped_by_filter, window, now - self.last_at)
        self.last_at, self.last_count = now, count

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            if self.producer is not None:
                self.producer.poll(0)
            self.line()


def produce_events(
    settings: Any,
    events: Iterable[SourceEvent],
    dry_run: bool = False,
    max_events: int | None = None,
    filters: FilterConfig | None = None,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] | None = None,
    flush_timeout_s: float = 60.0,
    progress: ReplayProgress | None = None,
    dead_letter: Path | None = None,
) -> ProduceReport:
    """Send `events` to KAFKA_TOPIC; return counts.

    - `dry_run`: envelopes are built and counted (and passed to `echo` as one line each: key, event,
      size — never the text), but no producer is created and nothing reaches Kafka (nor `progress`,
      nor `dead_letter`).
    - `max_events`: stop after that many records (after filters).
    - `stop`: set it (e.g. from a SIGTERM handler) to stop reading; what is queued is still flushed.
    - `progress` (a replay: `events` must have a `skip` attribute, as `ReplaySource` has): start at
      `progress.position` and save the position as deliveries are confirmed (every PROGRESS_EVERY_S and
      at the end). `max_events` then counts the whole replay's records, earlier runs included, so a
      restarted `--max N` still sends N records in all. A topic that this run had to create (it was
      deleted, or the broker's data wiped) starts the replay from the top.
    - `dead_letter`: JSONL file for the records given up on (see `DeadLetters`); None: counted and logged.
    Delivery callbacks count `delivered` / `failed` and hand records the broker refused to the main loop
    (see RECORD_ERRORS); a throughput line is logged every PRODUCER_REPORT_EVERY_S seconds and
    a summary at the end.
    """
    filters = filters if filters is not None else filter_config(settings)
    stop = stop or threading.Event()
    report = ProduceReport(dry_run=dry_run)
    progress = None if dry_run else progress
    dead = DeadLetters(report, None if dry_run else dead_letter)
    producer = None
    if not dry_run:
        from confluent_kafka import Producer

        _, created = _ensure_topic(settings)
        if progress is not None and created and progress.position:
            log.warning("topic %s did not exist: the replay starts from the top", settings.kafka_topic)
            progress.reset()
            progress.save()
        producer = Producer(producer_config(settings))
    start = progress.position if progress is not None else 0
    if progress is not None:
        events.skip = start  # type: ignore[attr-defined]
        report.resumed_at = start
        if start:
            log.info("replay resumes at event %d (%d records sent before); --from-start replays it all",
                     start, progress.records)
    positions = _Positions(start, progress.records) if progress is not None else _Positions(enabled=False)
    budget = None if max_events is None else max(0, max_events - positions.records)
    if budget == 0 and positions.records:
        log.info("the replay has sent its %d records (--max) already; --from-start replays it", max_events)

    counts_lock = threading.Lock()  # callbacks run in whichever thread polls: main or reporter
    refused: list[tuple[int, int, bytes, bytes, str]] = []  # (index, attempt, key, value, reason)

    def on_delivery(index: int, attempt: int, err: Any, msg: Any) -> None:
        with counts_lock:
            if err is None:
                report.delivered += 1
                positions.done(index, record=True)
                return
            reason = RECORD_ERRORS.get(err.name())
            if reason is not None:  # about the record: the main loop retries it alone or dead-letters it
                refused.append((index, attempt, msg.key(), msg.value(), reason))
                return
            report.failed += 1
        if report.failed <= 10:
            log.error("delivery failed: %s", err)

    def settle_refused() -> None:
        """Records the broker refused: each is sent again alone (its batch-mates were refused with it),
        and dead-lettered when refused alone too."""
        while refused:
            with counts_lock:
                items = refused[:]
                refused.clear()
            retry = [item for item in items if item[1] == 0]
            for index, _, key, value, reason in (item for item in items if item[1] > 0):
                dead.add(key, reason, value, detail="refused by the broker")
                positions.done(index, record=True)
            if retry:
                producer.flush(flush_timeout_s)  # let the rest of the refused batches settle first
            for index, _, key, value, _ in retry:
                refusal = _produce(producer, settings.kafka_topic, key, value,
                                   functools.partial(on_delivery, index, 1))
                if refusal is not None:
                    dead.add(key, refusal, value, detail="refused by the producer")
                    positions.done(index, record=True)
                producer.flush(flush_timeout_s)  # alone in its batch

    started = time.monotonic()
    saved_at = started
    reporter = _Reporter(settings.producer_report_every_s, report, producer)
    reporter.start()
    try:
        for index, event in enumerate(events, start=start):
            if stop.is_set() or (budget is not None and report.produced >= budget):
                break
            try:
                reason = drop_reason(event.status, filters) if event.status is not None else None
                if reason is None:
                    key, value, replaced = encode_event(event)
            except Exception as exc:  # noqa: BLE001 - a record must never stop the producer
                report.produced += 1
                report.events[event.kind] += 1
                dead.add(_event_key(event), "unprocessable", _envelope_text(event), detail=type(exc).__name__)
                positions.done(index, record=True)
                continue
            if reason is not None:
                report.skipped_by_filter += 1
                report.skipped_reasons[reason] += 1
                positions.done(index, record=False)
                continue
            report.produced += 1
            report.events[event.kind] += 1
            if replaced:
                report.repaired["lone_surrogate"] += 1
                log.warning("record %s: %d lone surrogate(s) replaced by U+FFFD", key.decode(), replaced)
            if producer is None:
                if echo is not None:
                    echo(f"{key.decode()}\t{event.kind}\t{len(value)} bytes")
            else:
                refusal = _produce(producer, settings.kafka_topic, key, value,
                                   functools.partial(on_delivery, index, 0))
                if refusal is not None:
                    dead.add(key, refusal, value, detail="refused by the producer")
                    positions.done(index, record=True)
                settle_refused()
            if progress is not None and time.monotonic() - saved_at >= PROGRESS_EVERY_S:
                _save_progress(progress, positions)
                saved_at = time.monotonic()
            if budget is not None and report.produced >= budget:
                break
    finally:
        report.malformed = int(getattr(events, "malformed", 0))
        reporter.done.set()
        reporter.join()
        if producer is not None:
            remaining = producer.flush(flush_timeout_s)
            if remaining:
                log.error("%d message(s) still undelivered after %.0f s flush", remaining, flush_timeout_s)
                report.failed += remaining
            settle_refused()
        if progress is not None:
            _save_progress(progress, positions)
        report.elapsed_s = time.monotonic() - started
        reporter.line()
        log.debug("%s", report.summary())
    return report


def _save_progress(progress: ReplayProgress, positions: _Positions) -> None:
    if (progress.position, progress.records) == (positions.position, positions.records):
        return
    progress.position, progress.records = positions.position, positions.records
    progress.save()


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable) -> str | None:
    """Queue one record. Returns the dead-letter reason when the producer refuses the record itself (over
    its message size), else None; other Kafka errors (unknown topic, fatal producer state) raise."""
    from confluent_kafka import KafkaException

    try:
        send_when_queued(producer, topic, key, value, on_delivery)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        reason = RECORD_ERRORS.get(error.name()) if hasattr(error, "name") else None
        if reason is None:
            raise
        return reason
    producer.poll(0)  # serve delivery callbacks
    return None


def send_when_queued(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable,
                     poll_s: float = 0.5) -> None:
    """`producer.produce(...)`; while librdkafka's local queue is full (BufferError), let it drain for
    `poll_s` (poll: deliveries go out, callbacks run) and try again, for as long as it takes."""
    send = functools.partial(producer.produce, topic, key=key, value=value, on_delivery=on_delivery)
    try:
        send()  # the usual case, without the retry machinery's cost per record
    except BufferError:
        Retrying(retry=retry_if_exception_type(BufferError), wait=wait_fixed(poll_s), sleep=producer.poll,
                 reraise=True)(send)
