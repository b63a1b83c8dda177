"""`tootlake bench scale`: the staged posts (ids, times, authors, edits, tombstones), the measured batch's
events, and the ratios."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tootlake.pipelines.bench.gold import load_statuses, silver_rows
from tootlake.pipelines.bench.scale import (
    DELETED_EVERY,
    EDITED_EVERY,
    STAGE_INSTANCE,
    batch_events,
    ratios,
    staged_posts,
)

END = datetime(2026, 12, 1, tzinfo=UTC)


def test_staged_posts_have_unique_time_ordered_ids_and_the_real_mix(spark, shared_data) -> None:
    statuses = load_statuses(shared_data)[:30]
    rows = staged_posts(spark, silver_rows(statuses), 600, END, days=10).collect()

    assert len(rows) == 600
    assert len({r["post_id"] for r in rows}) == 600
    assert all(r["post_id"] == f"{STAGE_INSTANCE}/{r['status_id']}" for r in rows)
    # Mastodon ids are time-ordered: sorting by id (as a number and, same length, as text) sorts by time
    by_id = sorted(rows, key=lambda r: int(r["status_id"]))
    assert [r["created_at"] for r in by_id] == sorted(r["created_at"] for r in rows)
    assert len({len(r["status_id"]) for r in rows}) == 1
    created = [r["created_at"].replace(tzinfo=UTC) if r["created_at"].tzinfo is None else r["created_at"]
               for r in rows]
    assert END - timedelta(days=10) <= min(created) and max(created) < END
    # the real texts, languages and hashtags of the base statuses, in their proportions
    live = [r for r in rows if not r["is_deleted"]]
    assert {r["language"] for r in live} <= {s.get("language") for s in statuses}
    assert any(r["hashtags"] for r in live)
    # more authors than the base statuses had (copies of an author are other authors)
    assert len({r["account_acct"] for r in rows}) > len({s["account"]["acct"] for s in statuses})
    # edits and tombstones in their shares; a tombstone has no content and no scores
    tombstones = [r for r in rows if r["is_deleted"]]
    assert len(tombstones) == 600 // DELETED_EVERY
    assert all(r["text"] is None and r["threat_level"] is None and r["deleted_at"] for r in tombstones)
    assert len([r for r in rows if r["edited_at"] is not None]) == 600 // EDITED_EVERY


def test_batch_events_mix_new_posts_edits_and_deletes_of_staged_posts(settings, shared_data) -> None:
    from tootlake.pipelines.bench.freshness import TEMPLATE_FILE, load_templates

    templates = load_templates(settings, shared_data / TEMPLATE_FILE)[:20]
    staged = [{"status_id": str((1_700_000_000_000 + k) << 16), "created_at": END - timedelta(days=k)}
              for k in range(200)]
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    events, mix = batch_events(templates, staged, size=100, changes=0.1, now=now, rng=random.Random(1))

    assert mix == {"new": 90, "edits": 5, "deletes": 5}
    assert len(events) == 100
    assert len({e.key for e in events}) == 100  # no post twice in the batch
    staged_keys = {f"{STAGE_INSTANCE}/{s['status_id']}" for s in staged}
    new = [e for e in events if e.kind == "status"]
    edits = [e for e in events if e.kind == "status.update"]
    deletes = [e for e in events if e.kind == "delete"]
    assert (len(new), len(edits), len(deletes)) == (90, 5, 5)
    assert not {e.key for e in new} & staged_keys
    assert {e.key for e in edits + deletes} <= staged_keys
    for edit in edits:  # same post, later version
        assert edit.status["edited_at"].startswith("2026-12-03T12:00")
        assert edit.status["created_at"] < edit.status["edited_at"]


def test_ratios_are_largest_over_smallest_size() -> None:
    results = [{"size": 100_000, "silver_batch_s": 6.0, "gold_refresh_s": 9.0, "sync_batch_s": 2.0},
               {"size": 10_000, "silver_batch_s": 4.0, "gold_refresh_s": 6.0, "sync_batch_s": 2.0}]
    assert ratios(results) == {"silver_batch_s": 1.5, "gold_refresh_s": 1.5, "sync_batch_s": 1.0}
    assert ratios(results[:1]) == {}
