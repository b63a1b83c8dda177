"""Language coverage: the decision silver applies (tootlake.models.coverage), and the committed
models/coverage.json follows its own stated rule from its own validation figures."""

from __future__ import annotations

import json

import pytest

from tootlake.models.coverage import (
    COVERAGE_FILE,
    CoverageError,
    declined_by,
    language_code,
    load_coverage,
    scoring_note,
)

EN = frozenset({"en"})


@pytest.mark.parametrize(("language", "code"), [
    ("en", "en"), ("EN", "en"), (" en ", "en"), ("pt-BR", "pt"), ("zh_TW", "zh"), ("und", None),
    ("UND", None), ("", None), ("  ", None), (None, None), ("ja", "ja"),
])
def test_language_code(language, code):
    assert language_code(language) == code


@pytest.mark.parametrize(("language", "threat", "sentiment", "note"), [
    ("en", EN, EN, None),
    ("en-GB", EN, EN, None),
    ("ja", EN, EN, "language_not_covered:ja"),
    ("zh-TW", EN, EN, "language_not_covered:zh"),
    (None, EN, EN, "language_unknown"),  # Mastodon leaves language null often: not claimed as validated
    ("und", EN, EN, "language_unknown"),
    ("de", EN, frozenset({"en", "de"}), "threat:language_not_covered:de"),
    ("de", frozenset({"en", "de"}), EN, "sentiment:language_not_covered:de"),
    ("ja", EN, None, "language_not_covered:ja"),  # sentiment not run: threat is every model run
    ("ja", None, None, None),  # no model run: nothing declined
    ("ja", frozenset(), frozenset(), "language_not_covered:ja"),
])
def test_scoring_note(language, threat, sentiment, note):
    assert scoring_note(language, threat, sentiment) == note


@pytest.mark.parametrize(("note", "threat", "sentiment"), [
    (None, False, False),
    ("language_not_covered:ja", True, True),
    ("language_unknown", True, True),
    ("threat:language_not_covered:de", True, False),
    ("sentiment:language_not_covered:de", False, True),
])
def test_declined_by(note, threat, sentiment):
    assert (declined_by(note, "threat"), declined_by(note, "sentiment")) == (threat, sentiment)


def test_committed_coverage_follows_its_stated_rule():
    """Each model's languages are exactly those whose recorded validation macro-F1 passes the rule
    written beside them (a floor, and a margin below English)."""
    data = json.loads(COVERAGE_FILE.read_text(encoding="utf-8"))
    for model in ("threat", "sentiment"):
        entry = data[model]
        floor, margin = entry["floor_macro_f1"], entry["margin_below_english"]
        figures = {lang: f["macro_f1"] for lang, f in entry["validation"].items()}
        english = figures["en"]
        expected = {lang for lang, f1 in figures.items() if f1 >= floor and f1 >= english - margin}
        assert set(entry["languages"]) == expected, model
        assert load_coverage(model).languages == frozenset(expected)
        assert entry["rule"] and entry["model_version"].startswith(f"{model}-")
    # the sentiment head of the multilingual encoder scores exactly the covered languages measured with it
    sentiment = data["sentiment"]
    routed = {lang for lang in sentiment["languages"]
              if sentiment["validation"][lang].get("model") == "multilingual"}
    assert set(sentiment["multilingual_languages"]) == routed
    assert load_coverage("sentiment").multilingual == frozenset(routed)


def test_missing_or_malformed_coverage_fails_clearly(tmp_path):
    with pytest.raises(CoverageError, match="no coverage file"):
        load_coverage("threat", tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"threat": {"langs": ["en"]}}))
    with pytest.raises(CoverageError, match="languages"):
        load_coverage("threat", bad)


def test_multilingual_languages_must_be_covered_ones(tmp_path):
    file = tmp_path / "coverage.json"
    file.write_text(json.dumps({"sentiment": {"languages": ["en", "de"], "multilingual_languages": ["DE"]}}))
    assert load_coverage("sentiment", file).multilingual == frozenset({"de"})
    assert load_coverage("sentiment", file).languages == frozenset({"en", "de"})
    file.write_text(json.dumps({"sentiment": {"languages": ["en"], "multilingual_languages": ["de"]}}))
    with pytest.raises(CoverageError, match=r"multilingual_languages \['de'\]"):
        load_coverage("sentiment", file)
