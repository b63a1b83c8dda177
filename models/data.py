"""Readers for the labelled data sets in `../shared/data` (and any file in the same formats).

Formats (see each data folder's README.md):
- TweetEval: `*_text.txt` (one tweet per line) + `*_labels.txt` (one integer per line, same line number).
- Davidson: a CSV with a header; columns `class` (0 hate, 1 offensive, 2 neither) and `tweet`; quoted fields
  may span lines, so it is read with a real CSV parser.

Readers are strict about what would silently corrupt metrics (label/text length mismatch, unknown labels)
and lenient about what does not (CRLF, a missing or extra final newline, a UTF-8 BOM).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("tweeteval-hate", "tweeteval-offensive", "tweeteval-sentiment", "davidson", "umsab")

# UMSAB (XLM-T's multilingual tweet sentiment, same 0/1/2 labels as TweetEval sentiment): ISO 639-1 code ->
# the data set's folder (`<shared data>/umsab-multilingual-sentiment/<folder>/{train,val}_{text,labels}.txt`).
UMSAB_DIR = "umsab-multilingual-sentiment"
UMSAB_LANGUAGES = {"ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french",
                   "hi": "hindi", "it": "italian", "pt": "portuguese"}


class DataFormatError(ValueError):
    """A labelled file does not match its format; the message says what to fix."""


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[int]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    # newline="" keeps a lone "\r" inside a tweet from splitting it; we split on "\n" only.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        content = handle.read()
    lines = content.split("\n")
    if lines and lines[-1] == "":  # the final newline ends the last line, it does not start a new one
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_tweeteval(text_file: Path, labels_file: Path, n_classes: int) -> Labelled:
    """One example per line in `text_file`, its integer label on the same line of `labels_file`."""
    texts = _read_lines(Path(text_file))
    raw_labels = _read_lines(Path(labels_file))
    # A labels file may end with blank lines (an extra newline); text lines may legitimately be blank.
    while raw_labels and not raw_labels[-1].strip():
        raw_labels.pop()
    if len(texts) != len(raw_labels) and len(texts) > len(raw_labels) and not any(t.strip() for t in
                                                                                 texts[len(raw_labels):]):
        texts = texts[: len(raw_labels)]  # trailing blank text lines beyond the last label
    if len(texts) != len(raw_labels):
        raise DataFormatError(
            f"{labels_file} has {len(raw_labels)} labels but {text_file} has {len(texts)} lines: "
            "the files must be parallel (one label per text line)"
        )
    labels: list[int] = []
    for number, raw in enumerate(raw_labels, start=1):
        try:
            value = int(raw.strip())
        except ValueError:
            raise DataFormatError(f"{labels_file}:{number}: label {raw!r} is not an integer") from None
        if not 0 <= value < n_classes:
            raise DataFormatError(f"{labels_file}:{number}: label {value} is not in 0..{n_classes - 1}")
        labels.append(value)
    return Labelled(texts, labels)


def read_davidson(csv_file: Path) -> Labelled:
    """Davidson et al. 2017 CSV: `class` 0 = hate speech, 1 = offensive, 2 = neither; text in `tweet`."""
    path = Path(csv_file)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [name.strip() for name in (reader.fieldnames or [])]
        if "class" not in fields or "tweet" not in fields:
            raise DataFormatError(f"{path}: needs a header with `class` and `tweet` columns, found {fields}")
        reader.fieldnames = fields
        texts: list[str] = []
        labels: list[int] = []
        for row in reader:
            raw = (row.get("class") or "").strip()
            values = [v for v in row.values() if isinstance(v, str)]
            if raw == "" and not any(v.strip() for v in values):
                continue  # a blank line
            try:
                value = int(float(raw))
            except ValueError:
                raise DataFormatError(f"{path}:{reader.line_num}: class {raw!r} is not 0, 1 or 2") from None
            if value not in (0, 1, 2):
                raise DataFormatError(f"{path}:{reader.line_num}: class {value} is not 0, 1 or 2")
            texts.append(row.get("tweet") or "")
            labels.append(value)
    return Labelled(texts, labels)


def umsab_files(data_dir: Path, language: str, split: str = "val") -> tuple[Path, Path]:
    """(text file, labels file) of one UMSAB language's split; `language` is a code of UMSAB_LANGUAGES."""
    if language not in UMSAB_LANGUAGES:
        raise DataFormatError(f"UMSAB has no language {language!r}; one of {', '.join(UMSAB_LANGUAGES)} "
                              "(or all)")
    folder = Path(data_dir) / UMSAB_DIR / UMSAB_LANGUAGES[language]
    return folder / f"{split}_text.txt", folder / f"{split}_labels.txt"


def shared_data_dir() -> Path:
    """The labelled data sets' folder: the setting SHARED_DATA_DIR (default ../shared/data, against
    TOOTLAKE_HOME: where the development splits live)."""
    from tootlake.pipelines.settings import load_settings

    settings = load_settings()
    return settings.path(settings.shared_data_dir)
