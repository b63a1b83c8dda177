"""Scores a labelled file with the threat or sentiment model and returns scikit-learn metrics.

Used by `tootlake models evaluate` and by the training commands (validation reports).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tootlake.models.data import FORMATS, DataFormatError, Labelled, read_davidson, read_tweeteval
from tootlake.models.metrics import FORMAT_CLASSES, classification_metrics, threat_decide

THREAT_FORMATS = ("tweeteval-hate", "tweeteval-offensive", "davidson")
SENTIMENT_FORMATS = ("tweeteval-sentiment", "umsab")


def read_labelled(fmt: str, text: Path | None = None, labels: Path | None = None,
                  csv_file: Path | None = None) -> Labelled:
    """Read a file pair (TweetEval) or a CSV (Davidson) in `fmt`'s own label space."""
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if csv_file is not None:
        if fmt != "davidson":
            raise DataFormatError(f"--csv is for the davidson format; {fmt} needs --text and --labels")
        return read_davidson(csv_file)
    if text is None or labels is None:
        raise DataFormatError("give --text FILE and --labels FILE (or --csv FILE for davidson)")
    if fmt == "davidson":
        return read_tweeteval(text, labels, n_classes=3)  # a text/labels pair with Davidson's 0/1/2
    return read_tweeteval(text, labels, n_classes=len(FORMAT_CLASSES[fmt]))


def evaluate_threat(data: Labelled, fmt: str, model=None, batch_size: int = 32) -> dict:
    from tootlake.models.threat import ThreatModel

    if fmt not in THREAT_FORMATS:
        raise DataFormatError(f"the threat model is evaluated on {', '.join(THREAT_FORMATS)}, not {fmt}")
    model = model or ThreatModel.load()
    started = time.perf_counter()
    probs = model.predict_proba(data.texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    decision = model.config.get("decision", {}).get(fmt)
    if decision is None:
        raise DataFormatError(f"{model.path}/config.json has no decision rule for {fmt}")
    pred = threat_decide(fmt, probs, decision)
    result = classification_metrics(data.labels, pred, FORMAT_CLASSES[fmt])
    result.update(posts_per_s=round(len(data.texts) / max(seconds, 1e-9), 1),
                  model_version=model.model_version, format=fmt, decision=decision)
    return result


def evaluate_sentiment(data: Labelled, spark, model=None, model_path: Path | None = None,
                       fmt: str = "tweeteval-sentiment") -> dict:
    from tootlake.models.sentiment import LABELS, load_sentiment_model, model_version, score_sentiment

    model = model or load_sentiment_model(spark, model_path)
    df = spark.createDataFrame([(i, t) for i, t in enumerate(data.texts)], "_row long, text string")
    started = time.perf_counter()
    rows = score_sentiment(model, df).select("_row", "sentiment_label").toPandas()
    seconds = time.perf_counter() - started
    pred = predictions_in_order(len(data.texts), rows["_row"].tolist(), rows["sentiment_label"].tolist(),
                                LABELS)
    result = classification_metrics(data.labels, pred, FORMAT_CLASSES[fmt])
    result.update(posts_per_s=round(len(data.texts) / max(seconds, 1e-9), 1),
                  model_version=model_version(model_path), format=fmt)
    return result


def evaluate_sentiment_head(data: Labelled, model=None, model_path: Path | None = None,
                            fmt: str = "umsab", batch_size: int = 32) -> dict:
    """The multilingual encoder's sentiment head (models/multilingual): arg-max of `sentiment_probs`, as
    silver scores the languages models/coverage.json routes to it."""
    from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR
    from tootlake.models.threat import ThreatModel

    model = model or ThreatModel.load(model_path or DEFAULT_ARTIFACT_DIR)
    started = time.perf_counter()
    probs = model.run(data.texts, ["sentiment_probs"], batch_size=batch_size)["sentiment_probs"]
    seconds = time.perf_counter() - started
    result = classification_metrics(data.labels, probs.argmax(axis=1), FORMAT_CLASSES[fmt])
    result.update(posts_per_s=round(len(data.texts) / max(seconds, 1e-9), 1),
                  model_version=model.model_version, format=fmt)
    return result


def per_language_summary(results: dict[str, dict], reference: str = "en") -> dict:
    """{language: metrics} -> the per-language table's figures and the mean macro-F1 of the languages other
    than `reference` (the issue's headline: the 7 non-English UMSAB languages)."""
    others = [r["macro_f1"] for lang, r in results.items() if lang != reference]
    return {
        "languages": {lang: {"n": r["n"], "macro_f1": r["macro_f1"], "macro_recall": r["macro_recall"],
                             "accuracy": r["accuracy"]} for lang, r in results.items()},
        f"mean_macro_f1_non_{reference}": float(np.mean(others)) if others else None,
        f"{reference}_macro_f1": results[reference]["macro_f1"] if reference in results else None,
    }


def format_language_table(summary: dict, reference: str = "en") -> str:
    """The per-language table `--language all` prints (percent, one decimal)."""
    lines = ["language      n  macro-F1  macro-recall  accuracy"]
    for lang, r in summary["languages"].items():
        lines.append(f"{lang:<8} {r['n']:>6}  {100 * r['macro_f1']:>8.1f}  {100 * r['macro_recall']:>12.1f}  "
                     f"{100 * r['accuracy']:>8.1f}")
    mean = summary.get(f"mean_macro_f1_non_{reference}")
    if mean is not None:
        lines.append(f"mean macro-F1 of the languages other than {reference}: {100 * mean:.1f}")
    return "\n".join(lines)


class MissingPredictionsError(RuntimeError):
    """The model gave no usable prediction for some examples: metrics over them would be made up."""


def predictions_in_order(n: int, rows: list, labels: list, classes: tuple[str, ...]) -> np.ndarray:
    """Class indices for examples 0..n-1 from (row number, predicted label) pairs in any order.

    Every example needs exactly one known label: a missing row, a row out of range, a repeated row or a
    label outside `classes` (null included) raises `MissingPredictionsError` with counts, never a
    made-up prediction that would silently count as right or wrong.
    """
    index = {label: i for i, label in enumerate(classes)}
    pred = np.full(n, -1, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    out_of_range = repeated = unknown = 0
    for row, label in zip(rows, labels, strict=True):
        if row is None or not 0 <= int(row) < n:
            out_of_range += 1
        elif seen[int(row)]:
            repeated += 1
        elif label not in index:
            seen[int(row)] = True
            unknown += 1
        else:
            seen[int(row)] = True
            pred[int(row)] = index[label]
    missing = int((pred == -1).sum())
    if missing or out_of_range or repeated:
        first = [int(i) for i in np.flatnonzero(pred == -1)[:5]]
        raise MissingPredictionsError(
            f"no usable prediction for {missing} of {n} examples (first: {first}; {unknown} with a label "
            f"outside {list(classes)}), {repeated} repeated and {out_of_range} unknown row numbers: the "
            "metrics would be wrong, so none are given")
    return pred


def tune_threat_decisions(artifact_dir: Path, val_sets: dict[str, Labelled]) -> dict:
    """Score the validation sets with the shipped (ONNX) model, tune each format's decision rule on them,
    write the rules into the artifact's config.json and return {format: metrics with the tuned rule}."""
    import json

    from tootlake.models.metrics import tune_decision
    from tootlake.models.threat import ThreatModel

    model = ThreatModel.load(artifact_dir)
    report: dict = {}
    decisions: dict = {}
    for fmt, data in val_sets.items():
        started = time.perf_counter()
        probs = model.predict_proba(data.texts)
        seconds = time.perf_counter() - started
        tuned = tune_decision(fmt, probs, data.labels)
        decisions[fmt] = {k: v for k, v in tuned.items() if k != "macro_f1"}
        pred = threat_decide(fmt, probs, decisions[fmt])
        report[fmt] = classification_metrics(data.labels, pred, FORMAT_CLASSES[fmt])
        report[fmt].update(posts_per_s=round(len(data.texts) / max(seconds, 1e-9), 1),
                           decision=decisions[fmt],
                           macro_f1_untuned=_untuned_f1(fmt, probs, data.labels),
                           macro_f1_2fold=_two_fold_f1(fmt, probs, data.labels))
        print(f"val {fmt}: tuned {decisions[fmt]} -> macro-F1 {report[fmt]['macro_f1']:.4f}", flush=True)
    config_file = Path(artifact_dir) / "config.json"
    config = json.loads(config_file.read_text())
    config["decision"] = decisions
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return report


def _untuned_f1(fmt: str, probs: np.ndarray, labels: list[int]) -> float:
    """Macro-F1 with the plain rule (threshold 0.5 / no class bias): nothing tuned on val."""
    from sklearn.metrics import f1_score

    plain = {"threshold": 0.5} if fmt != "davidson" else {"bias": [0.0, 0.0, 0.0]}
    return float(f1_score(labels, threat_decide(fmt, probs, plain), average="macro", zero_division=0))


def _two_fold_f1(fmt: str, probs: np.ndarray, labels: list[int]) -> float:
    """An honest estimate of the tuned rule: tune on even lines, measure on odd lines, and vice versa."""
    from sklearn.metrics import f1_score

    from tootlake.models.metrics import tune_decision

    y = np.asarray(labels)
    index = np.arange(len(y))
    scores = []
    for fold in (0, 1):
        tune_idx, test_idx = index[index % 2 == fold], index[index % 2 != fold]
        rule = tune_decision(fmt, probs[tune_idx], list(y[tune_idx]))
        rule = {k: v for k, v in rule.items() if k != "macro_f1"}
        pred = threat_decide(fmt, probs[test_idx], rule)
        scores.append(f1_score(y[test_idx], pred, average="macro", zero_division=0))
    return float(np.mean(scores))
