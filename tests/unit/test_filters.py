"""Producer-side filters on the shared statuses: reblogs, languages, keywords (whole words, any case)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tootlake.bronze.filters import FilterConfig, drop_reason, status_text

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"


def _statuses(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def _status(content: str, language: str | None = "en", spoiler: str = "", reblog: object = None) -> dict:
    return {"id": "1", "content": content, "language": language, "spoiler_text": spoiler, "reblog": reblog}


def test_reblogs_dropped_only_when_asked() -> None:
    statuses = _statuses(FIXTURES)
    reblogs = [s for s in statuses if s.get("reblog")]
    assert reblogs, "the fixtures contain reblogs"
    drop = FilterConfig(exclude_reblogs=True)
    keep = FilterConfig(exclude_reblogs=False)
    assert [drop_reason(s, drop) for s in reblogs] == ["reblog"] * len(reblogs)
    assert {drop_reason(s, drop) for s in statuses if not s.get("reblog")} == {None}
    assert {drop_reason(s, keep) for s in statuses} == {None}


def test_every_visibility_poll_edit_and_content_warning_passes_a_default_filter() -> None:
    statuses = [s for s in _statuses(FIXTURES) if not s.get("reblog")]
    kept = [s for s in statuses if drop_reason(s, FilterConfig()) is None]
    assert {s["visibility"] for s in kept} == {"public", "unlisted", "private", "direct"}
    assert any(s.get("poll") for s in kept) and any(s.get("edited_at") for s in kept)
    assert any(s.get("spoiler_text") for s in kept)


def test_language_allow_list_on_real_statuses() -> None:
    statuses = _statuses(TIMELINE)
    languages = Counter(s["language"] for s in statuses)
    config = FilterConfig(languages=("en", "DE"))
    reasons = Counter(drop_reason(s, config) for s in statuses)
    assert reasons[None] == languages["en"] + languages["de"]
    assert reasons["language"] == len(statuses) - reasons[None]
    # no language: dropped, unless the list holds "und"
    assert drop_reason(_status("x", language=None), config) == "language"
    assert drop_reason(_status("x", language=None), FilterConfig(languages=("und",))) is None


@pytest.mark.parametrize(
    ("content", "include", "exclude", "reason"),
    [
        ("<p>I love my Cat!</p>", ("cat",), (), None),
        ("<p>a new category</p>", ("cat",), (), "keyword_missing"),  # whole words only
        ("<p>CATS everywhere</p>", ("cat",), (), "keyword_missing"),
        ("<p>New York is big</p>", ("new york",), (), None),  # phrases
        ("<p>#Python rocks</p>", ("#python",), (), None),
        ("<p>python rocks</p>", ("#python",), (), "keyword_missing"),
        ("<p>buy cheap SPAM now</p>", (), ("spam",), "keyword_excluded"),
        ("<p>spammer</p>", (), ("spam",), None),
        ("<p>cat and spam</p>", ("cat",), ("spam",), "keyword_excluded"),
        ("<p>c.a.t</p>", ("c.a.t",), (), None),  # regex characters are literal
        ("<p>cxaxt</p>", ("c.a.t",), (), "keyword_missing"),
        ("<p>fish &amp; chips</p>", ("fish & chips",), (), None),  # matched on the plain text
        ("<p>any</p>", ("", "  "), (), None),  # blank keywords mean no restriction
    ],
)
def test_keywords(content: str, include: tuple, exclude: tuple, reason: str | None) -> None:
    config = FilterConfig(include_keywords=include, exclude_keywords=exclude)
    assert drop_reason(_status(content), config) == reason


def test_content_warning_counts_as_text() -> None:
    status = _status("<p>details</p>", spoiler="politics")
    assert status_text(status) == "politics\ndetails"
    assert drop_reason(status, FilterConfig(exclude_keywords=("politics",))) == "keyword_excluded"


def test_keyword_filter_on_real_statuses_matches_a_naive_word_scan() -> None:
    import re

    from tootlake.bronze.text import html_to_text

    statuses = _statuses(TIMELINE)
    config = FilterConfig(include_keywords=("the",))
    kept = [s for s in statuses if drop_reason(s, config) is None]
    naive = [s for s in statuses
             if re.search(r"\bthe\b", (s["spoiler_text"] + "\n" + html_to_text(s["content"])).lower())]
    assert len(kept) == len(naive) > 100
