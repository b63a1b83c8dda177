"""Producer-side filters: exclude reblogs, language allow-list, keyword include/exclude.

Pure: a `FilterConfig` and a status in, the reason it is dropped (or None) out. Keywords match whole
words (or phrases) of the plain text, case-insensitively: `cat` matches "Cat!" but not "category".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tootlake.bronze.text import html_to_text


def _keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    words = [k.strip() for k in keywords if k and k.strip()]
    if not words:
        return None
    # (?<!\w)/(?!\w) rather than \b so keywords that start or end with `#`/`@` still work.
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class FilterConfig:
    """What to drop. Empty lists mean "no restriction"."""

    exclude_reblogs: bool = True
    languages: tuple[str, ...] = ()
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()

    @cached_property
    def _include(self) -> re.Pattern[str] | None:
        return _keyword_pattern(self.include_keywords)

    @cached_property
    def _exclude(self) -> re.Pattern[str] | None:
        return _keyword_pattern(self.exclude_keywords)

    @cached_property
    def _languages(self) -> frozenset[str]:
        return frozenset(lang.strip().lower() for lang in self.languages if lang.strip())

    @property
    def is_noop(self) -> bool:
        return not (self.exclude_reblogs or self._languages or self._include or self._exclude)


def status_text(status: Mapping[str, Any]) -> str:
    """What a reader sees: the content warning (spoiler text) and the plain text of the content."""
    parts = [status.get("spoiler_text") or "", html_to_text(status.get("content"))]
    return "\n".join(p for p in parts if p)


def drop_reason(status: Mapping[str, Any], config: FilterConfig) -> str | None:
    """Why `status` is filtered out (`"reblog"`, `"language"`, `"keyword_missing"`, `"keyword_excluded"`),
    or None to keep it.

    A status with no language is dropped by a language allow-list unless the list holds `und`.
    """
    if config.exclude_reblogs and status.get("reblog"):
        return "reblog"
    if config._languages:
        language = (status.get("language") or "und").lower()
        if language not in config._languages:
            return "language"
    if config._include is None and config._exclude is None:
        return None
    text = status_text(status)
    if config._include is not None and not config._include.search(text):
        return "keyword_missing"
    if config._exclude is not None and config._exclude.search(text):
        return "keyword_excluded"
    return None
