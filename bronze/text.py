"""Mastodon status HTML → plain text, and hashtag extraction.

Pure functions (no I/O, no pyspark): the producer uses them for filters and silver reuses them for the
`text` and `hashtags` columns.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from html.parser import HTMLParser

# Elements that start a new line (or paragraph) in the rendered post.
_PARAGRAPH_TAGS = frozenset({"p", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"})
_LINE_TAGS = frozenset({"li", "div", "tr"})
_SKIP_TAGS = frozenset({"script", "style", "template"})
_BR, _LINE, _PARA = 1, 2, 3  # break kinds: <br> adds up, line/paragraph edges do not
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
# Whitespace inside <pre> is protected by Unicode noncharacters (never valid in interchanged text, so
# removed from the input first): control characters such as NUL in a post stay what they are.
_PRE_NEWLINE, _PRE_SPACE, _PRE_TAB = "\ufdd0", "\ufdd1", "\ufdd2"
_MARKERS = re.compile("[\ufdd0-\ufdd2]")

# Mastodon's own rule, simplified: `#` not preceded by a word char, `/`, `&` or `#` (URL fragments,
# entities), followed by word chars of which at least one is not a digit ("#2023" is not a hashtag).
_HASHTAG = re.compile(r"(?<![\w/&#])#(\w*[^\W\d]\w*)")


# Mastodon's HashtagNormalizer (app/lib/hashtag_normalizer.rb): NFKC, lower case, its ASCIIFolding table
# (Latin letters with diacritics -> base letter; other scripts untouched), then only word characters
# (letters, digits, marks, `_`, `·`, ZWNJ) kept. The API's `tags[].name` is already in this form.
_FOLD_FROM = ("ÀÁÂÃÄÅàáâãäåĀāĂăĄąÇçĆćĈĉĊċČčÐðĎďĐđÈÉÊËèéêëĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħÌÍÎÏìíîïĨĩĪīĬĭĮįİıĴĵĶķĸĹĺ"
              "ĻļĽľĿŀŁłÑñŃńŅņŇňŉŊŋÒÓÔÕÖØòóôõöøŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšſŢţŤťŦŧÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųŴŵÝýÿŶŷŸŹźŻżŽž")
_FOLD_TO = ("AAAAAAaaaaaaAaAaAaCcCcCcCcCcDdDdDdEEEEeeeeEeEeEeEeEeGgGgGgGgHhHhIIIIiiiiIiIiIiIiIiJjKkkLl"
            "LlLlLlLlNnNnNnNnnNnOOOOOOooooooOoOoOoRrRrRrSsSsSsSssTtTtTtUUUUuuuuUuUuUuUuUuUuWwYyyYyYZzZzZz")
_ASCII_FOLDING = str.maketrans(_FOLD_FROM, _FOLD_TO)
_HASHTAG_INVALID = re.compile(r"[^\w\u00b7\u200c]")


def normalize_hashtag(name: str) -> str:
    """A hashtag name the way Mastodon stores it (`Böllfokus` -> `bollfokus`, `ＣＡＴ` -> `cat`); "" if
    nothing is left. One rule for the API's `tags` and for tags found in the text."""
    folded = unicodedata.normalize("NFKC", name).lower().translate(_ASCII_FOLDING)
    return _HASHTAG_INVALID.sub("", folded)


class _TextExtractor(HTMLParser):
    """Collects text runs and explicit breaks; whitespace is collapsed like a browser would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities (&amp; &#39; …) decoded for us
        self.parts: list[str | int] = []  # text runs, or break kinds (_BR, _LINE, _PARA)
        self._skip_depth = 0
        self._pre_depth = 0

    # A break is kept as an int so runs of spaces around it can be trimmed later.
    def _break(self, kind: int) -> None:
        self.parts.append(kind)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "br":
            self._break(_BR)
        elif tag in _PARAGRAPH_TAGS:
            self._break(_PARA)
            if tag == "pre":
                self._pre_depth += 1
        elif tag in _LINE_TAGS:
            self._break(_LINE)
        elif tag == "img":
            # Inline images in content are custom emoji: keep their shortcode/alt text.
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIP_TAGS:
            self._skip_depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _PARAGRAPH_TAGS:
            self._break(_PARA)
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
        elif tag in _LINE_TAGS:
            self._break(_LINE)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            # protected whitespace, restored at the end
            protected = data.replace("\n", _PRE_NEWLINE).replace(" ", _PRE_SPACE)
            self.parts.append(protected.replace("\t", _PRE_TAB))
        else:
            self.parts.append(data)


def html_to_text(html: str | None) -> str:
    """Plain text of a status' HTML `content` (or an account note).

    `<br>` becomes a newline, paragraphs are separated by one blank line, links keep their full visible
    text (Mastodon hides part of long URLs in `invisible` spans: we keep those parts, giving the full URL),
    mentions and hashtags keep their `@`/`#`, custom emoji shortcodes (`:blobcat:`) stay as text, entities
    are decoded and other whitespace is collapsed as a browser would. `None` or empty gives "".
    """
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(_MARKERS.sub("", html))
    parser.close()
    out: list[str] = []
    pending = 0  # newlines owed before the next text run
    for part in parser.parts:
        if isinstance(part, int):
            # <br><br> is a blank line; a line/paragraph edge is one break however many tags meet there
            pending = min(2, pending + 1) if part == _BR else max(pending, 1 if part == _LINE else 2)
            continue
        text = _SPACES.sub(" ", part)
        if not text or (pending and not text.strip(" ")):
            continue
        if pending and out:
            out[-1] = out[-1].rstrip(" ")
            out.append("\n" * pending)
            text = text.lstrip(" ")
        elif out and out[-1].endswith((" ", "\n")) and text.startswith(" "):
            text = text.lstrip(" ")
        pending = 0
        out.append(text)
    text = "".join(out).strip()
    return text.replace(_PRE_NEWLINE, "\n").replace(_PRE_SPACE, " ").replace(_PRE_TAB, "\t")


def hashtags(tags: Iterable[object] | None = None, text: str | None = None) -> list[str]:
    """Normalised (`normalize_hashtag`), de-duplicated hashtags (without `#`), in order of first appearance.

    `tags` is the status' `tags` field (a list of `{"name": ..., "url": ...}` objects, or plain names);
    `text` is plain text (see `html_to_text`) scanned for `#tag` words. Either or both may be given:
    the `tags` field is authoritative, the text scan catches tags a client did not list. Both go through
    the same normalisation, so `#Böllfokus` in the text and `bollfokus` in `tags` are one hashtag.
    """
    seen: dict[str, None] = {}
    names = [tag.get("name") if isinstance(tag, dict) else tag for tag in tags or ()]
    if text:
        names += [match.group(1) for match in _HASHTAG.finditer(text)]
    for name in names:
        if isinstance(name, str):
            normalized = normalize_hashtag(name.strip().lstrip("#"))
            if normalized:
                seen.setdefault(normalized, None)
    return list(seen)
