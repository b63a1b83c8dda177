"""HTML → plain text and hashtag extraction, on hand-written cases and the shared real statuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tootlake.bronze.text import hashtags, html_to_text, normalize_hashtag

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TIMELINE = DATA / "mastodon-public-timeline-2023" / "statuses.dev.jsonl"
FIXTURES = DATA / "mastodon-api-fixtures-mastodonpy" / "statuses.dev.jsonl"


def _statuses(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>one<br>two<br />three</p>", "one\ntwo\nthree"),
        ("<p>first</p><p>second</p>", "first\n\nsecond"),
        ("<p>a<br><br>b</p>", "a\n\nb"),
        ("<p>Fish &amp; chips &lt;3 &#39;yum&#39; &quot;x&quot; caf&eacute;</p>",
         "Fish & chips <3 'yum' \"x\" café"),
        ("<p>  lots   of\n  space  </p>", "lots of space"),
        ('<p>hi <span class="h-card"><a href="https://m.s/@bob" class="u-url mention">@<span>bob</span></a>'
         "</span> look</p>", "hi @bob look"),
        ('<p><a href="https://m.s/tags/Cats" class="mention hashtag" rel="tag">#<span>Cats</span></a></p>',
         "#Cats"),
        ('<p><a href="https://example.com/a/very/long/path"><span class="invisible">https://</span>'
         '<span class="ellipsis">example.com/a/very</span><span class="invisible">/long/path</span></a></p>',
         "https://example.com/a/very/long/path"),
        ("<p>so happy :blobcat: :party_parrot:</p>", "so happy :blobcat: :party_parrot:"),
        ('<p>emoji <img alt=":wave:" src="x.png"> hi</p>', "emoji :wave: hi"),
        ("<p>x</p><script>alert(1)</script><style>p{}</style><p>y</p>", "x\n\ny"),
        ("<blockquote><p>quoted</p></blockquote><p>reply</p>", "quoted\n\nreply"),
        ("<ul><li>one</li><li>two</li></ul>", "one\ntwo"),
        ("<pre>keep\n  this</pre>", "keep\n  this"),
        ("plain text, no tags", "plain text, no tags"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("", ""),
        (None, ""),
    ],
)
def test_html_to_text(html: str | None, text: str) -> None:
    assert html_to_text(html) == text


def test_real_statuses_lose_their_markup_but_keep_breaks_and_tags() -> None:
    statuses = _statuses(TIMELINE) + _statuses(FIXTURES)
    with_br = with_tags = 0
    for status in statuses:
        content = status.get("content") or ""
        text = html_to_text(content)
        assert not re.search(r"</?(p|br|a|span)\b", text), status["id"]
        assert "&amp;" not in text or "&amp;amp;" in content, status["id"]
        if re.search(r"<br\s*/?>", content) and re.search(r"\S<br\s*/?>\S", content):
            with_br += 1
            assert "\n" in text, status["id"]
        for tag in re.findall(r'class="mention hashtag"[^>]*>#<span>([^<]+)</span>', content):
            with_tags += 1
            assert f"#{tag}" in text, status["id"]
    assert with_br > 20 and with_tags > 100  # the samples really exercise both paths


@pytest.mark.parametrize(
    ("tags", "text", "expected"),
    [
        ([{"name": "Python", "url": "u"}, {"name": "python"}], None, ["python"]),
        (None, "Hello #World and #world, #Café #snake_case", ["world", "cafe", "snake_case"]),
        # the API folds names (bollfokus) while the text keeps the accent: one hashtag, Mastodon's form
        ([{"name": "bollfokus"}], "#Böllfokus #ＣＡＴ #日本語 #Ärger",
         ["bollfokus", "cat", "日本語", "arger"]),
        ([{"name": "#Straße"}, {"name": "a-b"}], None, ["straße", "ab"]),
        (["Rust"], "#rust is #1 in #2023 #ok", ["rust", "ok"]),  # digits only is not a tag
        (None, "https://example.com/page#section a#b &#39; #", []),  # fragments, mid-word, entities
        ([{"name": "Tag"}], "and #other", ["tag", "other"]),
        (None, None, []),
        ([{"name": ""}, {"name": None}, 3], "", []),
    ],
)
def test_hashtags(tags: list | None, text: str | None, expected: list[str]) -> None:
    assert hashtags(tags, text) == expected


def test_hashtags_on_real_statuses_cover_the_tags_field() -> None:
    checked = 0
    for status in _statuses(TIMELINE):
        tags = [normalize_hashtag(t["name"]) for t in status["tags"]]
        found = hashtags(status["tags"], html_to_text(status["content"]))
        assert set(tags) <= set(found)
        assert found == [t.lower() for t in found]
        checked += bool(tags)
    assert checked > 200


def test_control_characters_are_not_taken_for_protected_whitespace() -> None:
    # NUL, SOH and STX used to be the <pre> markers: a NUL in a post became a newline
    assert html_to_text("<p>a\x00b\x01c\x02d</p>") == "a\x00b\x01c\x02d"
    assert html_to_text("<pre>x  y\n\tz</pre>\ufdd0") == "x  y\n\tz"
