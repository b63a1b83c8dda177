"""Where posts come from: one small interface, a live (Mastodon.py) and a replay (JSONL / SSE files) source.

Both yield `SourceEvent`s whose `status` is plain JSON (datetimes as ISO 8601 strings, ids as they came),
so the producer, filters and tests never see client-library objects.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from tootlake.bronze.records import (
    MalformedRecord,
    build_envelope,
    check_status,
    infer_instance,
    instance_host,
    post_key,
    status_id_str,
    to_jsonable,
    unwrap,
)
from tootlake.catalog.vocab import EventKind

log = logging.getLogger("tootlake.source")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SourceEvent:
    """One thing that happened to a post: it appeared (`status`), was edited, or was deleted."""

    kind: EventKind
    status: dict[str, Any] | None  # plain JSON; None for `delete`
    status_id: str | None  # always set for `delete`
    instance: str  # host we read from, e.g. "mastodon.social"
    fetched_at: datetime  # aware, UTC

    @property
    def key(self) -> str:
        """The post key (see `tootlake.bronze.records`)."""
        return post_key(self.instance, self.status_id if self.status_id is not None else self.status["id"])

    def envelope(self) -> dict[str, Any]:
        status = self.status if self.status is not None else {"id": self.status_id}
        return build_envelope(self.kind, self.instance, self.fetched_at, status)


@runtime_checkable
class MastodonSource(Protocol):
    """Anything that yields `SourceEvent`s. `malformed` counts records that were skipped as unusable."""

    malformed: int

    def __iter__(self) -> Iterator[SourceEvent]: ...

    def close(self) -> None:
        """Stop as soon as possible (called from a signal handler: must not block)."""


def status_event(kind: EventKind, status: Mapping[str, Any], instance: str, fetched_at: datetime,
                 is_json: bool = False) -> SourceEvent:
    """A `status`/`status.update` event from a status as received (Mastodon.py object or parsed JSON).

    `is_json`: the status came from `json.loads` (replay), so the round trip to plain JSON is skipped.
    """
    plain = check_status(status) if is_json else to_jsonable(check_status(status))
    return SourceEvent(kind, plain, status_id_str(plain["id"]), instance_host(instance), fetched_at)


def delete_event(status_id: object, instance: str, fetched_at: datetime) -> SourceEvent:
    return SourceEvent("delete", None, status_id_str(status_id), instance_host(instance), fetched_at)


# --------------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------------
@dataclass
class MalformedLine:
    file: str
    line: int
    reason: str


@dataclass
class ReplaySource:
    """Replays statuses from files, optionally at `rate` events per second.

    Formats, detected per file:
    - JSONL, one status per line, as the REST API returns it (string ids, `…Z` timestamps) or as
      Mastodon.py dumped it (int ids, Python isoformat datetimes), also Mastodon.py 2.x `to_json()`
      wrappers and our own envelopes (a dump of the topic, which keeps the event kind);
    - SSE recordings (`*.sse`, or a file starting with `:`/`event:`): `update`, `status.update` and
      `delete` events; other stream events (notifications, …) are ignored.
    The instance is `instance` if given, else inferred per file from its local accounts, else
    `default_instance`. A malformed line is logged with file and line number, counted and skipped.

    `skip`: pass over the first `skip` events (a resumed replay, see `tootlake.pipelines.source.producer`):
    they are read but not yielded, not rate-limited, and malformed lines among them are not reported
    again. Event positions count yielded events over all files, so the same files give the same positions.
    """

    files: list[Path]
    default_instance: str = "mastodon.social"
    instance: str | None = None
    rate: float = 0.0
    clock: Clock = utc_now
    skip: int = 0
    malformed: int = 0
    ignored: int = 0
    skipped: int = 0
    malformed_lines: list[MalformedLine] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _quiet: bool = field(default=False, init=False, repr=False)

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[SourceEvent]:
        events = itertools.chain.from_iterable(self._events(Path(f)) for f in self.files)
        if self.skip > 0:
            self._quiet = True
            try:
                self.skipped = sum(1 for _ in itertools.islice(events, self.skip))
            finally:
                self._quiet = False
        started = time.monotonic()
        for index, event in enumerate(events):
            if self._stop.is_set():
                return
            if self.rate > 0:
                delay = started + index / self.rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            yield event

    # -- helpers ------------------------------------------------------------------------------
    def _bad(self, path: Path, line_no: int, reason: str) -> None:
        if self._quiet:  # before the resume position: reported by the run that read it
            return
        self.malformed += 1
        if len(self.malformed_lines) < 1000:
            self.malformed_lines.append(MalformedLine(str(path), line_no, reason))
        # The reason never quotes the record itself: posts stay out of logs.
        log.warning("%s:%d: malformed record skipped (%s)", path, line_no, reason)

    def _file_instance(self, path: Path, sample: list[Mapping[str, Any]]) -> str:
        return instance_host(self.instance or infer_instance(sample) or self.default_instance)

    def _events(self, path: Path) -> Iterator[SourceEvent]:
        if not path.is_file():
            raise FileNotFoundError(f"replay file not found: {path}")
        if _is_sse(path):
            yield from self._sse_events(path)
        else:
            yield from self._jsonl_events(path)

    def _jsonl_events(self, path: Path) -> Iterator[SourceEvent]:
        sample: list[Mapping[str, Any]] = []
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in itertools.islice(fh, 200):  # enough local accounts to tell
                try:
                    _, payload = unwrap(json.loads(line))
                    if isinstance(payload, Mapping):
                        sample.append(payload)
                except ValueError:
                    continue
        instance = self._file_instance(path, sample)
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    kind, payload = unwrap(json.loads(line))
                    yield self._to_event(kind or "status", payload, instance)
                except (ValueError, MalformedRecord) as exc:  # JSONDecodeError is a ValueError
                    self._bad(path, line_no, _reason(exc))

    def _sse_events(self, path: Path) -> Iterator[SourceEvent]:
        raw: list[tuple[int, str, str]] = []  # (line of the data, event name, data)
        name, data, data_line = None, [], 0
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(itertools.chain(fh, ["\n"]), start=1):
                line = line.rstrip("\r\n")
                if line == "":
                    if name is not None:
                        raw.append((data_line or line_no, name, "\n".join(data)))
                    name, data, data_line = None, [], 0
                elif line.startswith(":"):
                    continue  # heartbeat / comment
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                    data_line = data_line or line_no
        sample = []
        for _, event_name, payload in raw:
            if event_name in ("update", "status.update"):
                with contextlib.suppress(ValueError):
                    sample.append(json.loads(payload))
        instance = self._file_instance(path, sample)
        for line_no, event_name, payload in raw:
            if event_name not in ("update", "status.update", "delete"):
                self.ignored += 1
                continue
            try:
                if event_name == "delete":
                    yield delete_event(_bare_id(payload), instance, self.clock())
                else:
                    kind: EventKind = "status" if event_name == "update" else "status.update"
                    yield self._to_event(kind, json.loads(payload), instance)
            except (ValueError, MalformedRecord) as exc:
                self._bad(path, line_no, _reason(exc))

    def _to_event(self, kind: str, payload: object, instance: str) -> SourceEvent:
        if kind == "delete":
            status_id = payload.get("id") if isinstance(payload, Mapping) else payload
            return delete_event(status_id, instance, self.clock())
        if kind not in ("status", "status.update"):
            raise MalformedRecord(f"unknown event kind {kind!r}")
        if not isinstance(payload, Mapping):
            raise MalformedRecord(f"expected a JSON object, got {type(payload).__name__}")
        return status_event(kind, payload, instance, self.clock(), is_json=True)  # type: ignore[arg-type]


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg}, column {exc.colno}"
    return str(exc)


def _bare_id(payload: str) -> object:
    """Delete payloads are a bare id: `108914398911648589` or `"108914398911648589"`."""
    value = json.loads(payload) if payload.strip() else None
    if isinstance(value, Mapping):
        value = value.get("id")
    return value


def _is_sse(path: Path) -> bool:
    if path.suffix == ".sse":
        return True
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                return line.startswith((":", "event:"))
    return False


# --------------------------------------------------------------------------------------------------
# Live
# --------------------------------------------------------------------------------------------------
Mode = Literal["public", "local", "hashtag", "trending", "poll"]
PAGE_LIMIT = 40  # the most statuses Mastodon returns per timeline request


class Backoff:
    """Exponential back-off: initial, 2×, 4×, … capped at `maximum`; `reset()` after a success."""

    def __init__(self, initial: float = 1.0, maximum: float = 300.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.initial


def make_client(settings: Any) -> Any:
    """A Mastodon.py client for `settings.mastodon_instance` (token optional for public data).

    Rate limits: Mastodon.py reads the server's rate-limit headers and, with `pace`, spreads requests
    over the window, with `wait`, sleeps when the limit is hit (setting MASTODON_RATELIMIT_METHOD).
    """
    from mastodon import Mastodon  # imported here: replay and tests never need it

    token = settings.mastodon_access_token.get_secret_value() if settings.mastodon_access_token else None
    return Mastodon(
        api_base_url=settings.mastodon_instance,
        access_token=token,
        ratelimit_method=settings.mastodon_ratelimit_method,
        request_timeout=30,
        version_check_mode="none",  # no extra request at start-up
    )


def _listener_class() -> type:
    from mastodon import StreamListener

    class QueueListener(StreamListener):
        """Turns stream callbacks into queue items; raising here ends the blocking stream read."""

        def __init__(self, source: LiveSource) -> None:
            super().__init__()
            self.source = source
            self.received = 0

        def _put(self, item: tuple[str, Any]) -> None:
            if self.source._stop.is_set():
                raise _Stopped()
            self.received += 1
            self.source._queue.put(item)

        def on_update(self, status: Any) -> None:
            self._put(("status", status))

        def on_status_update(self, status: Any) -> None:
            self._put(("status.update", status))

        def on_delete(self, status_id: Any) -> None:
            self._put(("delete", status_id))

        def on_abort(self, err: Exception) -> None:
            self.source.last_error = f"{type(err).__name__}: {err}"

        def on_unknown_event(self, name: str, unknown_event: Any = None) -> None:
            pass  # new server event types must not kill the stream

    return QueueListener


class _Stopped(Exception):
    pass


class LiveSource:
    """Live statuses from a Mastodon instance with Mastodon.py.

    Modes: `public` / `local` / `hashtag` stream (server-sent events; update, status.update and delete
    events), `trending` polls trending statuses (each status once), `poll` polls the public timeline
    and pages forward with `min_id` (see `_poll`). A lost stream or failed request is retried with
    exponential back-off (1 s … 5 min, reset after a success). `client` may be any object with
    Mastodon.py's methods (tests pass a fake).
    """

    def __init__(
        self,
        settings: Any,
        client: Any = None,
        mode: Mode | None = None,
        hashtag: str | None = None,
        clock: Clock = utc_now,
        wait: Callable[[float], bool] | None = None,
        max_backoff_s: float = 300.0,
    ) -> None:
        self.settings = settings
        self.mode: Mode = mode or settings.mastodon_timeline
        self.hashtag = (hashtag or settings.mastodon_hashtag or "").lstrip("#")
        if self.mode == "hashtag" and not self.hashtag:
            raise ValueError("hashtag mode needs MASTODON_HASHTAG (or --hashtag)")
        self.instance = instance_host(settings.mastodon_instance)
        self.poll_interval_s = float(settings.mastodon_poll_interval_s)
        self.clock = clock
        self.malformed = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._client = client
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._backoff = Backoff(1.0, max_backoff_s)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[SourceEvent]:
        if self.mode in ("public", "local", "hashtag"):
            return self._stream()
        return self._poll()

    # -- events ---------------------------------------------------------------------------------
    def to_event(self, kind: str, payload: Any) -> SourceEvent | None:
        """A Mastodon.py callback payload → `SourceEvent` (None and counted if unusable)."""
        try:
            if kind == "delete":
                return delete_event(payload, self.instance, self.clock())
            return status_event(kind, payload, self.instance, self.clock())  # type: ignore[arg-type]
        except (MalformedRecord, TypeError, ValueError) as exc:
            self.malformed += 1
            log.warning("malformed %s event from %s skipped (%s)", kind, self.instance, exc)
            return None

    # -- streaming ------------------------------------------------------------------------------
    def _open_stream(self, listener: Any) -> None:
        """Blocks while the stream is open (Mastodon.py's synchronous mode)."""
        if self.mode == "hashtag":
            self.client.stream_hashtag(self.hashtag, listener, run_async=False)
        else:
            self.client.stream_public(listener, run_async=False, local=self.mode == "local")

    def _stream_worker(self) -> None:
        listener = _listener_class()(self)
        while not self._stop.is_set():
            before = listener.received
            try:
                self._open_stream(listener)
                reason = "stream closed by the server"
            except _Stopped:
                return
            except Exception as exc:  # any failure means: wait, then reconnect
                reason = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set():
                return
            if listener.received > before:
                self._backoff.reset()
            delay = self._backoff.next()
            self.reconnects += 1
            self.last_error = reason
            log.warning("%s stream from %s lost (%s); reconnecting in %.0f s", self.mode, self.instance,
                        reason, delay)
            if self._wait(delay):
                return

    def _stream(self) -> Iterator[SourceEvent]:
        self._thread = threading.Thread(target=self._stream_worker, name="mastodon-stream", daemon=True)
        self._thread.start()
        log.info("streaming %s timeline from %s", self.mode, self.instance)
        while not self._stop.is_set():
            try:
                kind, payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            event = self.to_event(kind, payload)
            if event is not None:
                yield event

    # -- polling --------------------------------------------------------------------------------
    def _fetch(self, min_id: str | None) -> list[Any]:
        if self.mode == "trending":
            return list(self.client.trending_statuses(limit=PAGE_LIMIT))
        return list(self.client.timeline_public(min_id=min_id, limit=PAGE_LIMIT))

    def _poll(self) -> Iterator[SourceEvent]:
        """Poll every MASTODON_POLL_INTERVAL_S; `poll` mode pages forward so no status is skipped.

        Mastodon answers `since_id` with the *newest* `limit` statuses above it, so more than `limit` new
        statuses per interval would silently leave a gap. `min_id` returns the `limit` statuses right
        above it instead (still newest first in the response): ask again with min_id = the highest id
        seen until a page comes back short, then wait. The first request (no min_id) starts from the
        newest page: a poller does not backfill the whole timeline. Statuses are emitted oldest first.
        """
        min_id: str | None = None
        seen: OrderedDict[str, None] = OrderedDict()  # trending repeats statuses: emit each once
        log.info("polling %s statuses from %s every %.0f s", self.mode, self.instance, self.poll_interval_s)
        while not self._stop.is_set():
            try:
                page = self._fetch(min_id)
            except Exception as exc:
                self.reconnects += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = self._backoff.next()
                log.warning("%s request to %s failed (%s); retrying in %.0f s", self.mode, self.instance,
                            self.last_error, delay)
                if self._wait(delay):
                    return
                continue
            self._backoff.reset()
            previous = min_id
            # oldest first, so min_id and Kafka order follow the timeline
            for status in sorted(page, key=lambda s: _id_order(s.get("id"))):
                sid = str(status.get("id"))
                if self.mode == "trending":
                    if sid in seen:
                        continue
                    seen[sid] = None
                    if len(seen) > 10_000:
                        seen.popitem(last=False)
                else:
                    min_id = sid if min_id is None or _id_order(sid) > _id_order(min_id) else min_id
                event = self.to_event("status", status)
                if event is not None:
                    yield event
                if self._stop.is_set():
                    return
            more = self.mode != "trending" and len(page) >= PAGE_LIMIT and min_id != previous
            if not more and self._wait(self.poll_interval_s):
                return


def _id_order(value: object) -> tuple[int, int | str]:
    text = str(value)
    return (0, int(text)) if text.isdigit() else (1, text)


def replay_source(settings: Any, files: Iterable[Path | str] | None = None, rate: float | None = None,
                  instance: str | None = None) -> ReplaySource:
    """A `ReplaySource` over `files` (default: REPLAY_FILES, else the bundled real statuses)."""
    chosen = [Path(f) for f in (files or settings.replay_files or [])]
    if not chosen:
        chosen = default_replay_files(settings)
    return ReplaySource(
        files=[settings.path(p) if not p.is_absolute() else p for p in chosen],
        default_instance=instance_host(settings.mastodon_instance),
        instance=instance,
        rate=settings.replay_rate if rate is None else rate,
    )


def default_replay_files(settings: Any) -> list[Path]:
    """The real statuses in ../shared/data: raw REST API JSON, then Mastodon.py-serialised."""
    data = settings.path(settings.shared_data_dir)
    return [
        data / "mastodon-public-timeline-2023" / "statuses.dev.jsonl",
        data / "mastodon-mastodonpy-serialized-2023" / "statuses.dev.jsonl",
    ]
