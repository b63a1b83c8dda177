"""Which post languages each model is trusted on, and the note a post outside that coverage gets.

The coverage lives in ONE place, `models/coverage.json` (package data beside the artifacts): per model the
languages it covers, the rule that chose them and the per-language validation figures behind the choice
(the model cards quote the same figures). Silver reads it (`load_coverage`) and leaves a post whose
language is not covered unscored on purpose: null threat / sentiment columns, `processing_status` SUCCESS
(the post went through scoring as designed; FAILED means a model broke) and a `scoring_note` saying why.

Notes (`scoring_note`), `<lang>` being the post's primary language subtag (`zh-TW` -> `zh`):
- `language_not_covered:<lang>`: no model of this run covers the language; every score column is null;
- `language_unknown`: the post has no language (Mastodon leaves it null when the author's client sends
  none, and `und` means the same): we cannot say a model was validated on it, so it is not scored;
- `threat:<note>` / `sentiment:<note>`: only that model declined (its columns are null, the other's are set).
A null note means every model of the run covers the post's language.

Python and Spark (`tootlake.silver.coverage`) apply the same decision; tests check they agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tootlake.package_data import package_path

COVERAGE_FILE = package_path("tootlake.models", "coverage.json")
MODELS = ("threat", "sentiment")
NOT_COVERED = "language_not_covered"
UNKNOWN = "language_unknown"
UNKNOWN_CODES = ("", "und")  # ISO 639 "undetermined" is no language either


class CoverageError(ValueError):
    """models/coverage.json is missing a model or malformed; the message says what to fix."""


@dataclass(frozen=True)
class Coverage:
    """The languages (ISO 639-1 primary subtags, lower case) one model is trusted on."""

    model: str
    languages: frozenset[str]
    model_version: str | None = None  # the artifact the figures were measured on
    rule: str = ""
    # sentiment: the covered languages scored by the multilingual encoder's sentiment head
    # (models/multilingual) rather than by the MLlib pipeline on the English encoder
    multilingual: frozenset[str] = frozenset()

    def covers(self, language: str | None) -> bool:
        code = language_code(language)
        return code is not None and code in self.languages


def language_code(language: str | None) -> str | None:
    """A post's `language` as its primary subtag in lower case (`pt-BR` -> `pt`); None when unknown."""
    if language is None:
        return None
    code = re.split(r"[-_]", language.strip(), maxsplit=1)[0].strip().lower()
    return None if code in UNKNOWN_CODES else code


def load_coverage(model: str, path: str | Path | None = None) -> Coverage:
    """The coverage of `model` (threat or sentiment) from models/coverage.json (or `path`)."""
    file = Path(path) if path is not None else COVERAGE_FILE
    try:
        entry = json.loads(file.read_text(encoding="utf-8"))[model]
        languages = frozenset(str(code).strip().lower() for code in entry["languages"])
        multilingual = frozenset(str(code).strip().lower()
                                 for code in entry.get("multilingual_languages", []))
    except FileNotFoundError:
        raise CoverageError(f"no coverage file at {file}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CoverageError(f"{file}: needs {{\"{model}\": {{\"languages\": [...]}}}} ({exc})") from None
    if not multilingual <= languages:
        raise CoverageError(f"{file}: {model}.multilingual_languages {sorted(multilingual - languages)} are "
                            f"not in {model}.languages; a language the multilingual head scores is covered")
    return Coverage(model, languages, entry.get("model_version"), entry.get("rule", ""), multilingual)


def scoring_note(language: str | None, threat: Iterable[str] | None,
                 sentiment: Iterable[str] | None) -> str | None:
    """The note of one post given each model's covered languages (None: that model is not run, so it
    declines nothing). Null when every model run covers the post's language."""
    code = language_code(language)
    reason = UNKNOWN if code is None else f"{NOT_COVERED}:{code}"
    run = {name: frozenset(langs) for name, langs in (("threat", threat), ("sentiment", sentiment))
           if langs is not None}
    declined = [name for name, langs in run.items() if code is None or code not in langs]
    if not declined:
        return None
    if len(declined) == len(run):
        return reason
    return f"{declined[0]}:{reason}"


def declined_by(note: str | None, model: str) -> bool:
    """Whether a post with this `scoring_note` was left unscored on purpose by `model`."""
    if note is None:
        return False
    other = next(name for name in MODELS if name != model)
    return not note.startswith(f"{other}:")
