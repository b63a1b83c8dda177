"""Evaluation metrics (scikit-learn) and the per-format decision rules of the threat model.

The threat model outputs P(none), P(offensive), P(hate). Each evaluation format asks a different question:
- tweeteval-hate (0 not-hate, 1 hate): hate when P(hate) >= threshold.
- tweeteval-offensive (0 not-offensive, 1 offensive): offensive when P(offensive) + P(hate) >= threshold.
- davidson (0 hate, 1 offensive, 2 neither): argmax of log P + a per-class bias.
Thresholds and biases are tuned on the validation splits only and stored in the artifact's config.json.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

FORMAT_CLASSES = {
    "tweeteval-hate": ["not-hate", "hate"],
    "tweeteval-offensive": ["not-offensive", "offensive"],
    "davidson": ["hate", "offensive", "neither"],
    "tweeteval-sentiment": ["negative", "neutral", "positive"],
    "umsab": ["negative", "neutral", "positive"],  # multilingual tweet sentiment, TweetEval's labels
}
_DAVIDSON_FROM_MODEL = np.array([2, 1, 0])  # model classes none/offensive/hate -> Davidson 2/1/0


def classification_metrics(y_true: list[int] | np.ndarray, y_pred: list[int] | np.ndarray,
                           class_names: list[str]) -> dict:
    """accuracy, macro/weighted F1, macro recall and per-class precision/recall/F1/support (scikit-learn)."""
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
    }


def threat_decide(fmt: str, probs: np.ndarray, decision: dict) -> np.ndarray:
    """Predicted labels in `fmt`'s own label space from the model's [n, 3] probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    if fmt == "tweeteval-hate":
        return (probs[:, 2] >= decision["threshold"]).astype(int)
    if fmt == "tweeteval-offensive":
        return ((probs[:, 1] + probs[:, 2]) >= decision["threshold"]).astype(int)
    if fmt == "davidson":
        scores = np.log(np.clip(probs, 1e-12, 1.0)) + np.asarray(decision.get("bias", [0.0, 0.0, 0.0]))
        return _DAVIDSON_FROM_MODEL[scores.argmax(axis=1)]
    raise ValueError(f"the threat model does not answer format {fmt!r}")


def tune_decision(fmt: str, probs: np.ndarray, labels: list[int]) -> dict:
    """The threshold (binary formats) or class bias (davidson) with the best macro-F1 on validation data."""
    y = np.asarray(labels)
    best: dict = {"macro_f1": -1.0}
    if fmt in ("tweeteval-hate", "tweeteval-offensive"):
        for threshold in np.round(np.arange(0.05, 0.951, 0.01), 2):
            pred = threat_decide(fmt, probs, {"threshold": threshold})
            score = f1_score(y, pred, average="macro", zero_division=0)
            if score > best["macro_f1"] + 1e-9:
                best = {"threshold": float(threshold), "macro_f1": float(score)}
        return best
    if fmt == "davidson":
        grid = np.round(np.arange(-2.0, 2.01, 0.25), 2)
        for b_off in grid:
            for b_hate in grid:
                bias = [0.0, float(b_off), float(b_hate)]
                pred = threat_decide(fmt, probs, {"bias": bias})
                score = f1_score(y, pred, average="macro", zero_division=0)
                if score > best["macro_f1"] + 1e-9:
                    best = {"bias": bias, "macro_f1": float(score)}
        return best
    raise ValueError(f"cannot tune format {fmt!r}")
