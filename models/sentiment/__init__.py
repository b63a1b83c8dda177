"""Sentiment model at run time: a Spark MLlib PipelineModel (negative / neutral / positive).

Stable API (silver calls these):

    from tootlake.models.sentiment import load_sentiment_model, score_sentiment

    model = load_sentiment_model(spark)          # default: the packaged models/sentiment/artifact/pipeline
    scored = score_sentiment(model, df)          # df has a string column `text` (nulls allowed)
    # -> df's columns + sentiment_label (string: negative|neutral|positive), sentiment_score (double,
    #    the probability of that label); the model's intermediate columns are dropped.
    model_version(path=None)                     # "sentiment-mllib-<sha256[:12]>" of the saved pipeline files

The pipeline normalises text itself (an SQLTransformer stage: links dropped, mentions -> @user, lower case),
so callers pass plain text. Intermediate columns all start with `_sent_` to avoid clashing with the caller's.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact" / "pipeline"
LABELS = ("negative", "neutral", "positive")
INPUT_COL = "_sent_input"


class SentimentModelError(RuntimeError):
    """The saved pipeline is missing or unreadable; the message says what to do."""


def _hint(path: Path) -> str:
    return (f"restore it from git (`git checkout -- models/sentiment/artifact`) or rebuild it with "
            f"`tootlake models train sentiment` (path: {path})")


@lru_cache(maxsize=8)
def _version_of(path: str) -> str:
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))):
        if file.suffix == ".crc":
            continue
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return f"sentiment-mllib-{digest.hexdigest()[:12]}"


def model_version(path: str | Path | None = None) -> str:
    """A content hash of the saved pipeline (file names + bytes, Spark's .crc/_SUCCESS files excluded)."""
    folder = Path(path) if path is not None else DEFAULT_ARTIFACT_DIR
    if not (folder / "metadata").is_dir():
        raise SentimentModelError(f"no saved Spark pipeline at {folder}; {_hint(folder)}")
    return _version_of(str(folder.resolve()))


def load_sentiment_model(spark, path: str | Path | None = None):
    """Load the saved PipelineModel (raises SentimentModelError with a hint when it is missing or corrupt)."""
    from pyspark.ml import PipelineModel

    folder = Path(path) if path is not None else DEFAULT_ARTIFACT_DIR
    if not (folder / "metadata").is_dir() or not (folder / "stages").is_dir():
        raise SentimentModelError(f"no saved Spark pipeline at {folder}; {_hint(folder)}")
    try:
        model = PipelineModel.load(str(folder.resolve()))
    except Exception as exc:  # Py4J / Spark analysis errors
        raise SentimentModelError(f"cannot load the Spark pipeline at {folder}: {type(exc).__name__}; "
                                  f"{_hint(folder)}") from exc
    return model


def score_sentiment(model, df, text_col: str = "text"):
    """df + sentiment_label, sentiment_score (probability of the predicted label). Same rows, same order."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    before = df.columns
    scored = model.transform(df.withColumn(INPUT_COL, F.coalesce(F.col(text_col).cast("string"), F.lit(""))))
    labels = F.array(*[F.lit(label) for label in LABELS])
    index = F.col("_sent_prediction").cast("int")
    scored = scored.withColumn("sentiment_label", labels[index]).withColumn(
        "sentiment_score", vector_to_array(F.col("_sent_probability"))[index].cast("double")
    )
    return scored.select(*[c for c in before if c not in ("sentiment_label", "sentiment_score")],
                         "sentiment_label", "sentiment_score")
