"""Mastodon events → Kafka topic (confluent-kafka): idempotent, acks=all, compressed, keyed by post key.

`produce_events` is the one entry point (CLI, daemon, demo and tests call it). Filters run here, on the
producer side; the envelope keeps the status exactly as received.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tootlake.bronze.filters import FilterConfig, drop_reason
from tootlake.bronze.records import encode_record
from tootlake.pipelines.mastodon_source import SourceEvent

log = logging.getLogger("tootlake.producer")
# librdkafka's own log (one line per failed connection attempt, every ~50 ms while a broker is down) goes
# here, silenced: failures reach us through delivery callbacks and `ensure_topic`'s check instead.
kafka_log = logging.getLogger("tootlake.kafka")
kafka_log.setLevel(logging.CRITICAL)


@dataclass
class ProduceReport:
    """What one run did. `produced` = records handed to Kafka (or built, in a dry run)."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    skipped_by_filter: int = 0
    malformed: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    skipped_reasons: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Messages per second over the whole run (delivered, or built in a dry run)."""
        done = self.produced if self.dry_run else self.delivered
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "none"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_reasons.items()))
        head = "dry run: built" if self.dry_run else "produced"
        text = (f"{head} {self.produced} ({kinds}); delivered {self.delivered}, failed {self.failed}, "
                f"filtered {self.skipped_by_filter}, malformed {self.malformed}; "
                f"{self.elapsed_s:.1f} s, {self.rate:.0f} msg/s")
        return text + (f" [filtered: {reasons}]" if reasons else "")


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
        return partitions
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
    return settings.kafka_partitions


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
) -> ProduceReport:
    """Send `events` to KAFKA_TOPIC; return counts.

    - `dry_run`: envelopes are built and counted (and passed to `echo` as one line each: key, event,
      size — never the text), but no producer is created and nothing reaches Kafka.
    - `max_events`: stop after that many records (after filters).
    - `stop`: set it (e.g. from a SIGTERM handler) to stop reading; what is queued is still flushed.
    Delivery callbacks count `delivered` / `failed`; a throughput line is logged every
    PRODUCER_REPORT_EVERY_S seconds and a summary at the end.
    """
    filters = filters if filters is not None else filter_config(settings)
    stop = stop or threading.Event()
    report = ProduceReport(dry_run=dry_run)
    producer = None
    if not dry_run:
        from confluent_kafka import Producer

        ensure_topic(settings)
        producer = Producer(producer_config(settings))

    counts_lock = threading.Lock()  # callbacks run in whichever thread polls: main or reporter

    def on_delivery(err: Any, _msg: Any) -> None:
        with counts_lock:
            if err is None:
                report.delivered += 1
                return
            report.failed += 1
        if report.failed <= 10:
            log.error("delivery failed: %s", err)

    started = time.monotonic()
    reporter = _Reporter(settings.producer_report_every_s, report, producer)
    reporter.start()
    try:
        for event in events:
            if stop.is_set() or (max_events is not None and report.produced >= max_events):
                break
            if event.status is not None:
                reason = drop_reason(event.status, filters)
                if reason is not None:
                    report.skipped_by_filter += 1
                    report.skipped_reasons[reason] += 1
                    continue
            key, value = encode_record(event.envelope())
            report.produced += 1
            report.events[event.kind] += 1
            if producer is None:
                if echo is not None:
                    echo(f"{key.decode()}\t{event.kind}\t{len(value)} bytes")
            else:
                _produce(producer, settings.kafka_topic, key, value, on_delivery)
            if max_events is not None and report.produced >= max_events:
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
        report.elapsed_s = time.monotonic() - started
        reporter.line()
        log.debug("%s", report.summary())
    return report


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            break
        except BufferError:  # local queue full: let librdkafka drain it
            producer.poll(0.5)
    producer.poll(0)  # serve delivery callbacks
