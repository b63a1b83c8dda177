"""Silver's language-coverage decision on small DataFrames: the Spark column equals the Python rule
(tootlake.models.coverage), uncovered posts never reach the models and are stored unscored on purpose."""

from __future__ import annotations

import itertools
from datetime import datetime

from pyspark.sql import functions as F
from test_silver_posts import FakeScorer, _stored, latest_per_post, record, status, versions

from tootlake.models.coverage import scoring_note as python_note
from tootlake.silver.coverage import scoring_note
from tootlake.silver.posts import plan_scoring
from tootlake.silver.scoring import apply_scoring

LANGUAGES = ["en", "EN", "en-GB", "ja", "zh-TW", "pt_BR", "de", "und", "", " ", None]
COVERAGES = [frozenset({"en"}), frozenset({"en", "de"}), frozenset(), None]


def test_spark_note_equals_the_python_rule(spark):
    df = spark.createDataFrame([(i, lang) for i, lang in enumerate(LANGUAGES)], "i int, language string")
    for threat, sentiment in itertools.product(COVERAGES, COVERAGES):
        got = dict(df.select("i", scoring_note(F.col("language"), {"threat": threat, "sentiment": sentiment})
                             .alias("note")).collect())
        expected = {i: python_note(lang, threat, sentiment) for i, lang in enumerate(LANGUAGES)}
        assert got == expected, (threat, sentiment)


class CoverageScorer(FakeScorer):
    """FakeScorer that covers English (threat) and English + German (sentiment) and remembers its posts."""

    threat_languages = frozenset({"en"})
    sentiment_languages = frozenset({"en", "de"})

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, df):
        self.seen = sorted(r.post_id for r in df.select("post_id").collect())
        return super().score(df)


def _incoming(spark, languages: dict[str, str | None]):
    return versions(spark, [(sid, record({**status(sid, "<p>fine words</p>"), "language": lang}))
                            for sid, lang in languages.items()])


def test_uncovered_languages_are_unscored_on_purpose(spark):
    incoming = _incoming(spark, {"1": "en", "2": "ja", "3": None, "4": "de", "5": "und"})
    scorer = CoverageScorer()
    planned = plan_scoring(latest_per_post(incoming), _stored(spark, []), "threat-v2", "sent-v1")
    got = {r.post_id: r for r in apply_scoring(planned, scorer).collect()}
    assert scorer.seen == ["x.test/1", "x.test/4"]  # a post no model covers never reaches the models
    assert all(r.processing_status == "SUCCESS" for r in got.values())
    en, ja, unknown, de, und = (got[f"x.test/{i}"] for i in range(1, 6))
    assert (en.scoring_note, en.threat_label, en.sentiment_label) == (None, "none", "neutral")
    expected = [(ja, "language_not_covered:ja"), (unknown, "language_unknown"), (und, "language_unknown")]
    for row, note in expected:
        assert row.scoring_note == note
        assert all(getattr(row, c) is None for c in ("threat_label", "threat_score", "threat_level",
                                                     "contains_hate_speech", "sentiment_label",
                                                     "sentiment_score"))
        # the versions whose coverage decided: a new model (version) re-scores the post
        assert (row.threat_model_version, row.sentiment_model_version) == ("threat-v2", "sent-v1")
    assert de.scoring_note == "threat:language_not_covered:de"
    assert (de.threat_label, de.threat_level, de.sentiment_label) == (None, None, "neutral")


def test_a_failure_is_still_failed_inside_the_coverage(spark):
    incoming = versions(spark, [("1", record(status("1", "<p>please fail</p>")))])  # FakeScorer: no sentiment
    planned = plan_scoring(latest_per_post(incoming), _stored(spark, []), "threat-v2", "sent-v1")
    row = apply_scoring(planned, CoverageScorer()).first()
    assert (row.processing_status, row.scoring_note) == ("FAILED", None)


def test_a_stored_note_that_no_longer_fits_the_coverage_is_rescored(spark):
    base = {"created_at": datetime(2023, 10, 20, 15, 55, 35, 889000), "is_deleted": False,
            "text": "fine words", "updated_at": datetime(2023, 10, 25), "threat_label": "none",
            "threat_model_version": "threat-v2", "sentiment_label": "neutral",
            "sentiment_model_version": "sent-v1", "processing_status": "SUCCESS"}
    current = _stored(spark, [
        {**base, "post_id": "x.test/1", "language": "en"},  # covered, no note: unchanged
        {**base, "post_id": "x.test/2", "language": "ja"},  # scored before the coverage existed
        {**base, "post_id": "x.test/3", "language": "de", "threat_label": None,
         "scoring_note": "language_not_covered:de"},  # the coverage has since grown to German (sentiment)
        {**base, "post_id": "x.test/4", "language": "fr", "threat_label": None, "sentiment_label": None,
         "scoring_note": "language_not_covered:fr"},  # still not covered: unchanged
    ])
    incoming = _incoming(spark, {"1": "en", "2": "ja", "3": "de", "4": "fr"})
    coverage = {"threat": frozenset({"en"}), "sentiment": frozenset({"en", "de"})}
    planned = plan_scoring(latest_per_post(incoming), current, "threat-v2", "sent-v1", coverage=coverage)
    needs = {r.post_id: r.needs_scoring for r in planned.collect()}
    assert needs == {"x.test/1": False, "x.test/2": True, "x.test/3": True, "x.test/4": False}
    without = plan_scoring(latest_per_post(incoming), current, "threat-v2", "sent-v1")
    assert not any(r.needs_scoring for r in without.collect())
