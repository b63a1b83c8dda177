"""`tootlake models evaluate` and the labelled-file readers: same numbers as scikit-learn, robust parsing,
clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

from tootlake.models.data import DataFormatError, read_davidson, read_tweeteval
from tootlake.models.metrics import classification_metrics, threat_decide, tune_decision
from tootlake.models.text import normalise
from tootlake.models.threat import ThreatModel
from tootlake.pipelines.cli import main

# Harmless made-up texts; labels are arbitrary but fixed, so the metrics are non-trivial.
TEXTS = [
    "Lovely sunset over the harbour tonight",
    "You are a complete idiot, shut up",
    "The meeting moved to Thursday at ten",
    "I hate mondays so much",
    "What a stupid game, the referee is blind",
    "Fresh bread from the bakery this morning",
    "Get lost, nobody wants you here",
    "Reading a good book about trains",
]
LABELS = [0, 1, 0, 1, 1, 0, 1, 0]


def _write(tmp_path: Path, texts: list[str], labels: list[int], newline: str = "\n") -> tuple[Path, Path]:
    text_file, labels_file = tmp_path / "test_text.txt", tmp_path / "test_labels.txt"
    text_file.write_bytes("".join(t + " " + newline for t in texts).encode())
    labels_file.write_bytes("".join(f"{y}{newline}" for y in labels).encode())
    return text_file, labels_file


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict | None, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.strip()]
    return rc, (json.loads(lines[-1]) if rc == 0 else None), captured.err


@pytest.mark.parametrize("fmt", ["tweeteval-hate", "tweeteval-offensive"])
def test_evaluate_matches_scikit_learn(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    text_file, labels_file = _write(tmp_path, TEXTS, LABELS)
    rc, result, _ = _run(capsys, ["models", "evaluate", "threat", "--format", fmt, "--text", str(text_file),
                                  "--labels", str(labels_file), "--threads", "1"])
    assert rc == 0
    model = ThreatModel.load(intra_op_threads=1)
    pred = threat_decide(fmt, model.predict_proba([t + " " for t in TEXTS]), model.config["decision"][fmt])
    assert result["n"] == len(TEXTS)
    assert result["accuracy"] == pytest.approx(accuracy_score(LABELS, pred))
    assert result["macro_f1"] == pytest.approx(f1_score(LABELS, pred, average="macro", zero_division=0))
    assert result["weighted_f1"] == pytest.approx(f1_score(LABELS, pred, average="weighted", zero_division=0))
    assert result["macro_recall"] == pytest.approx(recall_score(LABELS, pred, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(LABELS, pred, labels=[0, 1],
                                                                     zero_division=0)
    positive = "hate" if fmt == "tweeteval-hate" else "offensive"
    assert result["per_class"][positive] == pytest.approx(
        {"precision": precision[1], "recall": recall[1], "f1": f1[1], "support": support[1]}
    )
    assert result["posts_per_s"] > 0 and result["model_version"] == model.model_version


def test_crlf_and_trailing_blank_lines_give_the_same_result(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    unix = tmp_path / "unix"
    dos = tmp_path / "dos"
    unix.mkdir()
    dos.mkdir()
    text_a, labels_a = _write(unix, TEXTS, LABELS)
    text_b, labels_b = _write(dos, TEXTS, LABELS, newline="\r\n")
    labels_b.write_bytes(labels_b.read_bytes() + b"\r\n\r\n")  # extra blank lines at the end
    args = ["models", "evaluate", "threat", "--format", "tweeteval-hate", "--threads", "1"]
    _, first, _ = _run(capsys, [*args, "--text", str(text_a), "--labels", str(labels_a)])
    _, second, _ = _run(capsys, [*args, "--text", str(text_b), "--labels", str(labels_b)])
    assert first["n"] == second["n"] == len(TEXTS)
    assert first["macro_f1"] == second["macro_f1"]


def test_mismatched_lengths_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_file, labels_file = _write(tmp_path, TEXTS, LABELS[:-2])
    rc, _, err = _run(capsys, ["models", "evaluate", "threat", "--format", "tweeteval-hate",
                               "--text", str(text_file), "--labels", str(labels_file)])
    assert rc == 2
    assert "6 labels" in err and "8 lines" in err


def test_wrong_format_for_model_and_bad_labels_fail_clearly(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    text_file, labels_file = _write(tmp_path, TEXTS, LABELS)
    rc, _, err = _run(capsys, ["models", "evaluate", "threat", "--format", "tweeteval-sentiment",
                               "--text", str(text_file), "--labels", str(labels_file)])
    assert rc == 2 and "tweeteval-sentiment" in err
    labels_file.write_text("0\n1\n2\n" + "0\n" * 5)
    rc, _, err = _run(capsys, ["models", "evaluate", "threat", "--format", "tweeteval-hate",
                               "--text", str(text_file), "--labels", str(labels_file)])
    assert rc == 2 and "label 2 is not in 0..1" in err


def test_davidson_csv_with_multiline_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "test.csv"
    rows = ["row_id,count,hate_speech,offensive_language,neither,class,tweet"]
    for i, (text, label) in enumerate(zip(TEXTS, [2, 1, 2, 1, 1, 2, 0, 2], strict=True)):
        body = f'"{text}\nsecond line, with ""quotes"""' if i == 3 else text.replace(",", "")
        rows.append(f"{i},3,0,0,3,{label},{body}")
    csv_file.write_text("\r\n".join(rows) + "\r\n")
    data = read_davidson(csv_file)
    assert len(data.texts) == len(TEXTS) and data.labels == [2, 1, 2, 1, 1, 2, 0, 2]
    assert data.texts[3].endswith('second line, with "quotes"')
    rc, result, _ = _run(capsys, ["models", "evaluate", "threat", "--format", "davidson",
                                  "--csv", str(csv_file), "--threads", "1"])
    assert rc == 0 and result["n"] == len(TEXTS)
    assert set(result["per_class"]) == {"hate", "offensive", "neither"}


def test_readers(tmp_path: Path) -> None:
    text_file, labels_file = tmp_path / "t.txt", tmp_path / "l.txt"
    text_file.write_text("first \n\nthird\n")  # a blank text line is an example
    labels_file.write_text("1\n0\n1")  # no final newline
    data = read_tweeteval(text_file, labels_file, n_classes=2)
    assert data.texts == ["first ", "", "third"] and data.labels == [1, 0, 1]
    labels_file.write_text("1\nx\n1\n")
    with pytest.raises(DataFormatError, match="not an integer"):
        read_tweeteval(text_file, labels_file, n_classes=2)
    with pytest.raises(DataFormatError, match="no such file"):
        read_tweeteval(tmp_path / "missing.txt", labels_file, n_classes=2)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="`class` and `tweet`"):
        read_davidson(bad_csv)


def test_classification_metrics_match_scikit_learn() -> None:
    y_true = [0, 1, 2, 2, 1, 0, 2, 1, 1]
    y_pred = [0, 2, 2, 1, 1, 0, 2, 1, 0]
    result = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert result["per_class"]["b"]["support"] == 4


def test_decision_rules() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.5, 0.1]])
    assert list(threat_decide("tweeteval-hate", probs, {"threshold": 0.5})) == [0, 1, 0]
    assert list(threat_decide("tweeteval-offensive", probs, {"threshold": 0.5})) == [0, 1, 1]
    assert list(threat_decide("davidson", probs, {"bias": [0.0, 0.0, 0.0]})) == [2, 0, 1]
    tuned = tune_decision("tweeteval-hate", probs, [0, 1, 0])
    assert tuned["macro_f1"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        threat_decide("tweeteval-sentiment", probs, {})


def test_normalise() -> None:
    assert normalise("RT @someone: so &amp; so https://t.co/x  ok") == "@user: so & so ok"
    assert normalise(None) == "" and normalise("@user @user hi ") == "@user @user hi"


class _FakeScored:
    """What `score_sentiment(...).select("_row", "sentiment_label")` gives, without Spark."""

    def __init__(self, rows: list[tuple[int, str | None]]) -> None:
        self.rows = rows

    def select(self, *columns: str) -> _FakeScored:
        assert columns == ("_row", "sentiment_label")
        return self

    def toPandas(self):  # Spark's name
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["_row", "sentiment_label"])


def _evaluate_sentiment_with(monkeypatch, rows: list[tuple[int, str | None]], labels: list[int]) -> dict:
    from tootlake.models import sentiment
    from tootlake.models.data import Labelled
    from tootlake.models.evaluate import evaluate_sentiment

    class FakeSpark:
        def createDataFrame(self, data, schema):  # Spark's name
            return data

    monkeypatch.setattr(sentiment, "score_sentiment", lambda _model, _df: _FakeScored(rows))
    monkeypatch.setattr(sentiment, "model_version", lambda _path=None: "fake")
    data = Labelled(texts=[f"text {i}" for i in range(len(labels))], labels=labels)
    return evaluate_sentiment(data, FakeSpark(), model=object())


def test_sentiment_predictions_are_put_back_in_row_order(monkeypatch) -> None:
    labels = [0, 1, 2, 2, 1, 0]
    names = ["negative", "neutral", "positive"]
    predicted = [0, 1, 2, 1, 1, 2]
    rows = [(i, names[predicted[i]]) for i in (5, 2, 0, 4, 1, 3)]  # Spark gives no order
    result = _evaluate_sentiment_with(monkeypatch, rows, labels)
    assert result["n"] == 6 and result["model_version"] == "fake"
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert result["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0))


@pytest.mark.parametrize("rows", [
    [(0, "negative"), (1, "neutral"), (3, "positive")],  # row 2 has no prediction
    [(0, "negative"), (1, "neutral"), (2, None), (3, "positive")],  # a null label
    [(0, "negative"), (1, "neutral"), (1, "neutral"), (3, "positive")],  # row 1 twice, row 2 missing
])
def test_a_missing_sentiment_prediction_is_an_error_not_a_random_label(monkeypatch, rows) -> None:
    from tootlake.models.evaluate import MissingPredictionsError

    with pytest.raises(MissingPredictionsError, match="no usable prediction for 1 of 4 examples"):
        _evaluate_sentiment_with(monkeypatch, rows, [0, 1, 2, 2])


# --- per-language sentiment (UMSAB) -------------------------------------------------------------------
def test_umsab_files_name_the_language_folders(tmp_path: Path):
    from tootlake.models.data import UMSAB_LANGUAGES, umsab_files

    assert sorted(UMSAB_LANGUAGES) == ["ar", "de", "en", "es", "fr", "hi", "it", "pt"]
    text, labels = umsab_files(tmp_path, "pt")
    assert (text.parent.name, text.name, labels.name) == ("portuguese", "val_text.txt", "val_labels.txt")
    with pytest.raises(DataFormatError, match="no language 'ja'"):
        umsab_files(tmp_path, "ja")


@pytest.mark.parametrize(("argv", "message"), [
    (["--format", "tweeteval-sentiment", "--language", "de"], "--language is for --format umsab"),
    (["--format", "umsab", "--language", "ja"], "UMSAB has no language 'ja'"),
    (["--format", "umsab", "--language", "de", "--text", "x.txt", "--labels", "y.txt"], "either --language"),
])
def test_language_option_errors_before_loading_anything(tmp_path: Path, capsys, argv, message):
    rc, _, err = _run(capsys, ["models", "evaluate", "sentiment", *argv, "--data-dir", str(tmp_path)])
    assert rc == 2 and message in err


def test_language_needs_the_split_files(tmp_path: Path, capsys):
    rc, _, err = _run(capsys, ["models", "evaluate", "sentiment", "--format", "umsab", "--language", "all",
                               "--data-dir", str(tmp_path)])
    assert rc == 2 and "arabic/val_text.txt: no such file" in err


def test_threat_is_not_evaluated_on_umsab(capsys, tmp_path: Path):
    text_file, labels_file = _write(tmp_path, TEXTS, [y % 3 for y in LABELS])
    rc, _, err = _run(capsys, ["models", "evaluate", "threat", "--format", "umsab", "--text", str(text_file),
                               "--labels", str(labels_file)])
    assert rc == 2 and "not umsab" in err


def test_per_language_summary_and_table():
    from tootlake.models.evaluate import format_language_table, per_language_summary

    def result(f1: float) -> dict:
        return {"n": 324, "macro_f1": f1, "macro_recall": f1 + 0.01, "accuracy": f1 + 0.02}

    summary = per_language_summary({"en": result(0.74), "de": result(0.45), "fr": result(0.31)})
    assert summary["mean_macro_f1_non_en"] == pytest.approx(0.38)  # English left out of the mean
    assert summary["en_macro_f1"] == 0.74 and set(summary["languages"]) == {"en", "de", "fr"}
    table = format_language_table(summary)
    assert "de          324      45.0          46.0      47.0" in table
    assert table.endswith("mean macro-F1 of the languages other than en: 38.0")


GERMAN = ["Was für ein wunderbarer Tag, ich freue mich so!", "Der Zug fährt um acht Uhr ab.",
          "Das ist die schlimmste Nachricht des Jahres.", "Ich liebe dieses Lied.",
          "Heute ist Dienstag.", "Furchtbar, alles ist kaputt und niemand hilft."]


def test_a_language_other_than_english_is_scored_by_the_multilingual_head(tmp_path: Path, capsys):
    """`deployed` (the default) scores German as silver does: the multilingual encoder's sentiment head."""
    from tootlake.models.data import UMSAB_DIR
    from tootlake.models.metrics import FORMAT_CLASSES, classification_metrics
    from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR
    from tootlake.models.threat import ThreatModel

    folder = tmp_path / UMSAB_DIR / "german"
    folder.mkdir(parents=True)
    labels = [2, 1, 0, 2, 1, 0]
    (folder / "val_text.txt").write_text("".join(t + "\n" for t in GERMAN), encoding="utf-8")
    (folder / "val_labels.txt").write_text("".join(f"{y}\n" for y in labels), encoding="utf-8")
    rc, result, _ = _run(capsys, ["models", "evaluate", "sentiment", "--format", "umsab", "--language", "de",
                                  "--data-dir", str(tmp_path)])
    assert rc == 0 and result["sentiment_model"] == "multilingual" and result["n"] == len(GERMAN)
    probs = ThreatModel.load(DEFAULT_ARTIFACT_DIR).run(GERMAN, ["sentiment_probs"])["sentiment_probs"]
    expected = classification_metrics(labels, probs.argmax(axis=1), FORMAT_CLASSES["umsab"])
    assert result["macro_f1"] == pytest.approx(expected["macro_f1"])
    rc, _, err = _run(capsys, ["models", "evaluate", "sentiment", "--format", "umsab", "--language", "de",
                               "--data-dir", str(tmp_path), "--model-dir", str(tmp_path)])
    assert rc == 2 and "--sentiment-model mllib or --sentiment-model multilingual" in err
