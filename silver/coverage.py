"""The language-coverage decision as Spark columns (same rule as tootlake.models.coverage.scoring_note).

A post whose language a model is not validated on is left unscored on purpose by that model: its columns
stay null and `scoring_note` says why (see tootlake.models.coverage for the note values and the choice
for a null language).
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column
from pyspark.sql import functions as F

from tootlake.models.coverage import MODELS, NOT_COVERED, UNKNOWN, UNKNOWN_CODES

# {model: covered language codes, or None when the model is not run (it declines nothing)}
Languages = dict[str, frozenset[str] | None]


def language_code(language: Column) -> Column:
    """Primary subtag in lower case (`zh-TW` -> `zh`); null for a null, empty or `und` language."""
    code = F.lower(F.trim(F.split(F.trim(language), "[-_]", 2).getItem(0)))
    return F.when(code.isNull() | code.isin(*UNKNOWN_CODES), F.lit(None).cast("string")).otherwise(code)


def covered(language: Column, languages: Iterable[str] | None) -> Column:
    """True when the model covers the post's language (always true when the model is not run)."""
    if languages is None:
        return F.lit(True)
    codes = sorted(languages)
    code = language_code(language)
    return F.coalesce(code.isin(*codes), F.lit(False)) if codes else F.lit(False)


def scoring_note(language: Column, coverage: Languages) -> Column:
    """The `scoring_note` column: null when every model run covers the language."""
    code = language_code(language)
    reason = F.when(code.isNull(), F.lit(UNKNOWN)).otherwise(F.concat(F.lit(f"{NOT_COVERED}:"), code))
    run = [name for name in MODELS if coverage.get(name) is not None]
    declines = {name: ~covered(language, coverage[name]) for name in run}
    if not run:
        return F.lit(None).cast("string")
    every = declines[run[0]]
    for name in run[1:]:
        every = every & declines[name]
    note = F.when(every, reason)
    for name in run:
        note = note.when(declines[name], F.concat(F.lit(f"{name}:"), reason))
    return note.otherwise(F.lit(None).cast("string"))


def declined_by(model: str, note: Column | None = None) -> Column:
    """True when the post was left unscored on purpose by `model` (its scoring_note says so)."""
    note = F.col("scoring_note") if note is None else note
    other = next(name for name in MODELS if name != model)
    return note.isNotNull() & ~note.startswith(f"{other}:")
