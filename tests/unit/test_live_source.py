"""LiveSource without a network: a fake client drives Mastodon.py's own stream parser and return types
with the recorded SSE bodies and statuses from ../shared/data."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mastodon.errors import MastodonNetworkError, MastodonRatelimitError
from mastodon.return_types import Status
from mastodon.types_base import try_cast_recurse

from tootlake.pipelines.settings import load_settings
from tootlake.pipelines.source.mastodon import Backoff, LiveSource, MastodonSource, make_client

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SSE_CASSETTES = DATA / "mastodon-streaming-sse" / "mastodonpy_cassettes.dev.sse"
SSE_DOCS = DATA / "mastodon-streaming-sse" / "mastodon_docs.dev.sse"
SERIALIZED = DATA / "mastodon-mastodonpy-serialized-2023" / "statuses.dev.jsonl"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(tootlake_home=tmp_path, mastodon_instance="https://mastodon.example",
                         mastodon_poll_interval_s=5.0)


class FakeResponse:
    """What Mastodon.py's StreamListener.handle_stream reads: `iter_content`."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def iter_content(self, chunk_size: int = 1):
        for start in range(0, len(self.body), 997):  # odd chunks: events split across reads
            yield self.body[start:start + 997]


class FakeStreamingClient:
    """First connection fails, the second replays a recorded stream and ends, later ones fail."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls: list[tuple[str, dict]] = []

    def _serve(self, name: str, listener, **kwargs) -> None:
        self.calls.append((name, kwargs))
        if len(self.calls) == 2:
            listener.handle_stream(FakeResponse(self.body))
            return  # the server closed the stream
        raise MastodonNetworkError("Could not connect to streaming server: test")

    def stream_public(self, listener, run_async=False, local=False, **kwargs) -> None:
        assert run_async is False
        self._serve("public", listener, local=local)

    def stream_hashtag(self, tag, listener, run_async=False, **kwargs) -> None:
        self._serve("hashtag", listener, tag=tag)


class Waits:
    """Records back-off delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.stop = threading.Event()

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        time.sleep(0.01)
        return self.stop.is_set()


def _take(source: LiveSource, n: int, timeout_s: float = 20.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s

    def pull() -> None:
        for event in source:
            got.append(event)
            if len(got) == n:
                return

    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(timeout_s)
    source.close()
    assert time.monotonic() < deadline, f"only {len(got)} of {n} events arrived"
    return got


def test_is_a_mastodon_source(settings) -> None:
    assert isinstance(LiveSource(settings, client=object()), MastodonSource)


def test_stream_events_from_a_recorded_stream_with_reconnect_and_backoff(
        settings, caplog: pytest.LogCaptureFixture) -> None:
    client = FakeStreamingClient(SSE_CASSETTES.read_bytes())
    waits = Waits()
    source = LiveSource(settings, client=client, mode="public", clock=lambda: NOW, wait=waits)
    events = _take(source, 5)
    waits.stop.set()
    assert Counter(e.kind for e in events) == {"status": 3, "status.update": 1, "delete": 1}
    assert {e.instance for e in events} == {"mastodon.example"}
    assert all(e.key == f"mastodon.example/{e.status_id}" for e in events)
    updates = [e for e in events if e.status is not None]
    # Mastodon.py made datetimes of the timestamps; the event holds plain JSON again
    assert all(isinstance(e.status["created_at"], str) for e in updates)
    json.dumps([e.status for e in updates])
    delete = next(e for e in events if e.kind == "delete")
    assert delete.status is None and delete.key in {e.key for e in updates}
    assert client.calls[0] == ("public", {"local": False})
    assert waits.delays[0] == 1.0  # first connection failed: back off once, then the stream came
    assert source.reconnects >= 1
    assert "public stream from mastodon.example lost (MastodonNetworkError" in caplog.text


def test_backoff_grows_while_connections_keep_failing(settings) -> None:
    class AlwaysDown:
        def stream_public(self, listener, **kwargs) -> None:
            raise MastodonNetworkError("down")

    waits = Waits()
    source = LiveSource(settings, client=AlwaysDown(), mode="local", wait=waits, max_backoff_s=8.0)
    iterator = iter(source)
    threading.Timer(0.5, source.close).start()
    assert list(iterator) == []
    assert waits.delays[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0][:len(waits.delays[:6])]
    assert len(waits.delays) >= 4


def test_backoff_resets() -> None:
    backoff = Backoff(1.0, 10.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_hashtag_and_local_modes(settings) -> None:
    client = FakeStreamingClient(SSE_DOCS.read_bytes())
    source = LiveSource(settings, client=client, mode="hashtag", hashtag="#Python", wait=Waits())
    events = _take(source, 10)
    assert client.calls[0] == ("hashtag", {"tag": "Python"})
    assert Counter(e.kind for e in events) == {"status.update": 5, "status": 3, "delete": 2}
    with pytest.raises(ValueError, match="MASTODON_HASHTAG"):
        LiveSource(settings, client=client, mode="hashtag")


def _mastodonpy_statuses() -> list:
    raw = [json.loads(line) for line in SERIALIZED.read_text(encoding="utf-8").split("\n") if line]
    return [try_cast_recurse(Status, s) for s in raw]


class FakePollingClient:
    def __init__(self, pages: list) -> None:
        self.pages = pages
        self.min_ids: list = []
        self.trending_calls = 0

    def timeline_public(self, min_id=None, limit=None):
        self.min_ids.append(min_id)
        page = self.pages.pop(0) if self.pages else []
        if isinstance(page, Exception):
            raise page
        return page

    def trending_statuses(self, limit=None):
        self.trending_calls += 1
        return self.timeline_public()


def test_poll_pages_with_min_id_oldest_first_and_retries_rate_limits(settings) -> None:
    statuses = _mastodonpy_statuses()
    newest_first = sorted(statuses, key=lambda s: int(s["id"]), reverse=True)
    first, second = newest_first[10:], newest_first[:10]
    client = FakePollingClient([MastodonRatelimitError("429"), first, second])
    waits = Waits()
    source = LiveSource(settings, client=client, mode="poll", clock=lambda: NOW, wait=waits)
    events = list(itertools.islice(iter(source), len(statuses)))
    ids = [int(e.status_id) for e in events]
    assert ids == sorted(ids) and len(ids) == len(statuses)  # oldest first, nothing lost
    assert client.min_ids[:3] == [None, None, str(first[0]["id"])]
    assert waits.delays[:2] == [1.0, 5.0]  # back-off after the 429, then the poll interval
    assert all(isinstance(e.status["id"], str) for e in events)  # Mastodon.py's id type is a str


class FakeMastodonTimeline:
    """A public timeline that behaves like Mastodon's: newest first; `since_id` gives the newest `limit`
    statuses above it, `min_id` the `limit` statuses right above it; 100 new statuses per poll interval."""

    def __init__(self, start: int = 1000, per_interval: int = 100) -> None:
        self.ids = list(range(start, start + 10))
        self.per_interval = per_interval
        self.requests: list[dict] = []

    def publish(self) -> None:
        top = self.ids[-1]
        self.ids += range(top + 1, top + 1 + self.per_interval)

    @staticmethod
    def status(status_id: int) -> dict:
        return {"id": str(status_id), "created_at": "2026-11-23T12:00:00.000Z", "content": "<p>hello</p>",
                "account": {"id": "1", "acct": "someone", "url": "https://mastodon.example/@someone"}}

    def timeline_public(self, min_id=None, since_id=None, max_id=None, limit=20, **kwargs):
        self.requests.append({"min_id": min_id, "since_id": since_id, "limit": limit})
        limit = min(limit or 20, 40)
        if min_id is not None:
            chosen = [i for i in self.ids if i > int(min_id)][:limit]  # right above min_id
        else:
            above = [i for i in self.ids if since_id is None or i > int(since_id)]
            chosen = above[-limit:]  # the newest
        return [self.status(i) for i in sorted(chosen, reverse=True)]


def test_poll_gets_every_status_when_more_than_a_page_arrives_per_interval(settings) -> None:
    timeline = FakeMastodonTimeline()
    waits = Waits()

    def interval(delay: float) -> bool:
        timeline.publish()  # while we wait, 100 new statuses appear
        return waits(delay)

    source = LiveSource(settings, client=timeline, mode="poll", clock=lambda: NOW, wait=interval)
    events = list(itertools.islice(iter(source), 10 + 3 * 100))
    ids = [int(e.status_id) for e in events]
    assert ids == list(range(1000, 1000 + 10 + 3 * 100))  # every status, once, oldest first
    assert waits.delays == [5.0] * 3  # one wait per interval: the pages in between come at once
    assert all(r["since_id"] is None and r["limit"] == 40 for r in timeline.requests)


def test_trending_emits_each_status_once(settings) -> None:
    statuses = _mastodonpy_statuses()[:5]
    client = FakePollingClient([statuses, statuses[2:] + _mastodonpy_statuses()[5:7], []])
    waits = Waits()
    source = LiveSource(settings, client=client, mode="trending", wait=waits)
    events = list(itertools.islice(iter(source), 7))
    assert len({e.key for e in events}) == 7
    assert client.trending_calls == 2


def test_unusable_payload_is_counted_not_fatal(settings) -> None:
    source = LiveSource(settings, client=object(), mode="public")
    assert source.to_event("status", {"id": "1"}) is None
    assert source.to_event("delete", None) is None
    assert source.malformed == 2
    assert source.to_event("delete", "123").key == "mastodon.example/123"


def test_make_client_uses_settings_without_network(tmp_path: Path) -> None:
    settings = load_settings(tootlake_home=tmp_path, mastodon_instance="https://mastodon.example",
                             mastodon_access_token="secret-token", mastodon_ratelimit_method="wait")
    client = make_client(settings)
    assert client.api_base_url == "https://mastodon.example"
    assert client.ratelimit_method == "wait"
    assert client.access_token == "secret-token"


def test_sigterm_stops_a_live_dry_run_cleanly(settings, monkeypatch, capsys) -> None:
    """`tootlake produce --source live`: SIGTERM stops the stream, flushes and exits 0 with a final count."""
    import argparse
    import os
    import signal

    from tootlake.pipelines.cli.produce import run_producer
    from tootlake.pipelines.source import mastodon as mastodon_source

    class EndlessStream:
        def stream_public(self, listener, **kwargs) -> None:
            listener.handle_stream(FakeResponse(SSE_CASSETTES.read_bytes()))
            while True:  # then an idle connection, as a quiet public stream is
                time.sleep(0.05)
                listener.handle_heartbeat()

    monkeypatch.setattr(mastodon_source, "make_client", lambda _settings: EndlessStream())
    args = argparse.Namespace(source="live", files=None, max_events=None, rate=None, instance=None,
                              timeline="public", hashtag=None, dry_run=True)
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    assert run_producer(settings, args) == 0
    assert time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert "stopped by signal; dry run: built 5 (delete 1, status 3, status.update 1)" in out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
