"""Text normalisation shared by training and run time, so a model sees the same kind of text in both.

Mirrors how TweetEval prepared its tweets (mentions -> `@user`, links dropped) and undoes what raw sources add
(HTML entities, Davidson's `RT @handle:` prefixes), so Mastodon plain text and the training sets look alike.
"""

from __future__ import annotations

import html
import re

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[\w.@-]+")
_RT = re.compile(r"\bRT\s+(?=@user)")
_SPACE = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    """Unescape HTML entities, mentions -> `@user`, drop links and retweet markers, collapse white space."""
    if not text:
        return ""
    text = html.unescape(html.unescape(text))  # Davidson has double-escaped entities (&amp;#128557;)
    text = _URL.sub(" ", text)
    text = _MENTION.sub("@user", text)
    text = _RT.sub("", text)
    return _SPACE.sub(" ", text).strip()
