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

Its first stage, `EncoderEmbedding`, adds the threat model's sentence embedding (the ONNX encoder, fine-tuned
with a sentiment head) as features beside the word and character n-grams. The stage records the threat
model version it was trained with; loading checks it, because a retrained encoder changes the features.
A caller that already ran the encoder (silver's threat pass) passes the embedding in `_sent_embedding`
(array<float>) and the stage reuses it instead of running the encoder twice.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol, Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from tootlake.catalog.vocab import SENTIMENT_LABELS as LABELS  # the model's classes, in output order
from tootlake.package_data import package_path

DEFAULT_ARTIFACT_DIR = package_path(__name__, "artifact", "pipeline")  # package data (pyproject.toml)
INPUT_COL = "_sent_input"
EMBEDDING_COL = "_sent_embedding"


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


class EncoderEmbedding(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """MLlib stage: text -> the threat encoder's sentence embedding (a dense vector). Same grain as the input.

    When the output column already exists (array<float> or vector), it is reused, not recomputed.
    """

    encoderVersion = Param(Params._dummy(), "encoderVersion",
                           "threat model version whose encoder produced the training features",
                           typeConverter=TypeConverters.toString)
    encoderDir = Param(Params._dummy(), "encoderDir", "threat artifact folder ('' = the packaged one)",
                       typeConverter=TypeConverters.toString)
    batchSize = Param(Params._dummy(), "batchSize", "texts per onnxruntime call",
                      typeConverter=TypeConverters.toInt)

    def __init__(self, inputCol: str = INPUT_COL, outputCol: str = EMBEDDING_COL, encoderVersion: str = "",
                 encoderDir: str = "", batchSize: int = 32) -> None:
        super().__init__()
        self._setDefault(inputCol=INPUT_COL, outputCol=EMBEDDING_COL, encoderVersion="", encoderDir="",
                         batchSize=32)
        self._set(inputCol=inputCol, outputCol=outputCol, encoderVersion=encoderVersion,
                  encoderDir=encoderDir, batchSize=batchSize)

    def _transform(self, dataset):
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F
        from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

        out = self.getOutputCol()
        if out not in dataset.columns:
            schema = StructType([*dataset.schema.fields, StructField(out, ArrayType(FloatType()))])
            dataset = dataset.mapInArrow(
                _embed_batches(self.getInputCol(), out, self.getOrDefault(self.encoderDir) or None,
                               self.getOrDefault(self.batchSize)), schema)
        if isinstance(dataset.schema[out].dataType, ArrayType):
            dataset = dataset.withColumn(out, array_to_vector(F.col(out)))
        return dataset


def _embed_batches(text_col: str, out_col: str, encoder_dir: str | None, batch_size: int):
    """The function mapInArrow runs in each Python worker (one cached InferenceSession per worker)."""

    def run(batches):
        from tootlake.models.threat import get_threat_model

        model = get_threat_model(encoder_dir)
        for batch in batches:
            yield batch.append_column(out_col, embedding_array(model.embed(batch.column(text_col).to_pylist(),
                                                                           batch_size=batch_size)))

    return run


def embedding_array(vectors):
    """[n, d] float32 numpy -> an Arrow list<float> array of n rows (what array<float> columns hold)."""
    import pyarrow as pa

    width = vectors.shape[1] if vectors.ndim == 2 else 0
    offsets = pa.array(range(0, len(vectors) * width + 1, width or 1) if width else [0] * (len(vectors) + 1),
                       pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1), pa.float32()))


def uses_encoder(model) -> bool:
    """True when the pipeline reads the threat encoder's embedding (its first stage is EncoderEmbedding)."""
    return model is not None and any(isinstance(stage, EncoderEmbedding) for stage in model.stages)


def check_encoder(model) -> None:
    """Raise SentimentModelError when the pipeline's embedding stage was trained on another encoder."""
    from tootlake.models.threat import get_threat_model

    for stage in model.stages:
        if not isinstance(stage, EncoderEmbedding):
            continue
        encoder_dir = stage.getOrDefault(stage.encoderDir) or None
        trained_on = stage.getOrDefault(stage.encoderVersion)
        current = get_threat_model(encoder_dir).model_version
        if trained_on != current:
            raise SentimentModelError(
                f"the sentiment pipeline was trained on the features of {trained_on}, but the threat model "
                f"is now {current}; retrain it with `tootlake models train sentiment`")


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
    check_encoder(model)
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
    keep = [c for c in before
            if c not in ("sentiment_label", "sentiment_score") and not c.startswith("_sent_")]
    return scored.select(*keep, "sentiment_label", "sentiment_score")
