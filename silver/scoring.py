"""Model scoring for silver/posts: the ONNX threat model in `mapInArrow`, and the step that scores only
the rows `plan_scoring` marked (`needs_scoring`), keeping stored scores for the others.

The scorer is injected (`Scorer` protocol) so the other transforms are tested without models; the job
passes `pipelines.jobs.silver.ModelScorer` (threat ONNX + sentiment MLlib).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from tootlake.silver.coverage import Languages, covered, scoring_note
from tootlake.silver.posts import FAILED, SCORE_COLUMNS, SUCCESS

THREAT_FIELDS = [
    StructField("threat_label", StringType()),
    StructField("threat_score", DoubleType()),
    StructField("threat_level", StringType()),
    StructField("contains_hate_speech", IntegerType()),
    StructField("threat_model_version", StringType()),
]


class Scorer(Protocol):
    """Adds SCORE_COLUMNS (except processing_status and scoring_note) to a DataFrame with a `text` column,
    keeping its other columns.

    A scorer may also name the languages each model covers, `threat_languages` / `sentiment_languages`
    (codes, tootlake.models.coverage); without them (test scorers) a model covers every language.
    """

    threat_model_version: str | None
    sentiment_model_version: str | None

    def score(self, df: DataFrame) -> DataFrame: ...


def scorer_coverage(scorer: Scorer | None) -> Languages | None:
    """{model: covered languages, or None when the model is not run or covers every language}; None when
    there is no scorer."""
    if scorer is None:
        return None

    def languages(model: str) -> frozenset[str] | None:
        if getattr(scorer, f"{model}_model_version", None) is None:
            return None  # not run: it declines nothing
        found = getattr(scorer, f"{model}_languages", None)
        return frozenset(found) if found is not None else None

    return {"threat": languages("threat"), "sentiment": languages("sentiment")}


def _run_rows(model, texts: list, outputs: list[str], batch_size: int):
    """`model.run` on a batch of texts; when that fails, text by text, so one bad text fails alone.
    Returns ({output: array with a row per text (zeros for a failed one)}, mask of the texts that ran);
    the arrays are None when every text failed."""
    import numpy as np

    try:
        return model.run(texts, outputs, batch_size=batch_size), np.ones(len(texts), dtype=bool)
    except Exception:  # noqa: BLE001 - below, each text alone
        parts = []
        for text in texts:
            try:
                parts.append(model.run([text], outputs, batch_size=1))
            except Exception:  # noqa: BLE001 - this text fails (FAILED), the others go on
                parts.append(None)
        ran = np.array([part is not None for part in parts], dtype=bool)
        template = next((part for part in parts if part is not None), None)
        if template is None:
            return {name: None for name in outputs}, ran
        return {name: np.vstack([part[name] if part is not None else np.zeros_like(template[name])
                                 for part in parts]) for name in outputs}, ran


def _threat_udf(model_path: str | None, batch_size: int, intra_op_threads: int | None, text_column: str,
                with_embedding: bool):
    """The function mapInArrow runs in each Python worker: one cached InferenceSession per worker."""

    def score_batches(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa

        from tootlake.models.sentiment import EMBEDDING_COL, embedding_array
        from tootlake.models.threat import contains_hate_speech, get_threat_model, threat_level

        model = get_threat_model(model_path, intra_op_threads=intra_op_threads)
        outputs = ["probs", "embedding"] if with_embedding else ["probs"]
        for batch in batches:
            texts = batch.column(text_column).to_pylist()
            result, ran = _run_rows(model, texts, outputs, batch_size)
            labels: list[str | None] = [None] * len(texts)
            probs: list[float | None] = [None] * len(texts)
            if ran.any():
                decided, scores = model.decide(result["probs"])
                labels = [lb if ok else None for lb, ok in zip(decided, ran, strict=True)]
                probs = [float(sc) if ok else None for sc, ok in zip(scores, ran, strict=True)]
            levels = [threat_level(lb, p) if lb is not None else None
                      for lb, p in zip(labels, probs, strict=True)]
            hate = [contains_hate_speech(lb, p) if lb is not None else None
                    for lb, p in zip(labels, probs, strict=True)]
            versions = [model.model_version if lb is not None else None for lb in labels]
            out = (
                batch.append_column("threat_label", pa.array(labels, pa.string()))
                .append_column("threat_score", pa.array(probs, pa.float64()))
                .append_column("threat_level", pa.array(levels, pa.string()))
                .append_column("contains_hate_speech", pa.array(hate, pa.int32()))
                .append_column("threat_model_version", pa.array(versions, pa.string()))
            )
            if with_embedding:
                # A row the encoder failed on gets zeros; it is FAILED anyway (no threat label).
                embeddings = result.get("embedding")
                if embeddings is None:
                    embeddings = np.zeros((len(texts), 0), np.float32)
                out = out.append_column(EMBEDDING_COL, embedding_array(embeddings))
            yield out

    return score_batches


def _sentiment_head_udf(model_path: str, batch_size: int, intra_op_threads: int | None, text_column: str):
    """mapInArrow function: the arg-max of an artifact's `sentiment_probs` output and its probability."""

    def score_batches(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from tootlake.catalog.vocab import SENTIMENT_LABELS
        from tootlake.models.threat import get_threat_model

        model = get_threat_model(model_path, intra_op_threads=intra_op_threads)
        for batch in batches:
            texts = batch.column(text_column).to_pylist()
            result, ran = _run_rows(model, texts, ["sentiment_probs"], batch_size)
            labels: list[str | None] = [None] * len(texts)
            scores: list[float | None] = [None] * len(texts)
            if ran.any():
                probs = result["sentiment_probs"]
                best = probs.argmax(axis=1)
                labels = [SENTIMENT_LABELS[i] if ok else None for i, ok in zip(best, ran, strict=True)]
                scores = [float(probs[row, i]) if ok else None
                          for row, (i, ok) in enumerate(zip(best, ran, strict=True))]
            yield (batch.append_column("sentiment_label", pa.array(labels, pa.string()))
                   .append_column("sentiment_score", pa.array(scores, pa.float64())))

    return score_batches


def score_sentiment_head(
    df: DataFrame,
    model_path: str,
    batch_size: int = 32,
    intra_op_threads: int | None = None,
    text_column: str = "text",
) -> DataFrame:
    """Same grain as `df`; replaces/adds sentiment_label (negative / neutral / positive) and sentiment_score
    (its probability) from an ONNX artifact with a `sentiment_probs` output (the multilingual encoder's
    sentiment head, models/multilingual); both null for a row the model could not score."""
    fields = [StructField("sentiment_label", StringType()), StructField("sentiment_score", DoubleType())]
    base = df.drop(*[f.name for f in fields if f.name in df.columns])
    schema = StructType(list(base.schema.fields) + fields)
    return base.mapInArrow(_sentiment_head_udf(model_path, batch_size, intra_op_threads, text_column), schema)


def score_threat(
    df: DataFrame,
    model_path: str | None = None,
    batch_size: int = 32,
    intra_op_threads: int | None = None,
    text_column: str = "text",
    with_embedding: bool = False,
) -> DataFrame:
    """Same grain as `df`; replaces/adds threat_label, threat_score, threat_level, contains_hate_speech,
    threat_model_version (all null for a row the model could not score). With `with_embedding`, also the
    encoder's sentence embedding in `_sent_embedding` (array<float>) for the sentiment pipeline to reuse.

    Rows go through Arrow record batches of `spark.sql.execution.arrow.maxRecordsPerBatch` rows; inside
    each, the model runs `batch_size` texts at a time (sorted by length, so little padding).
    """
    from tootlake.models.sentiment import EMBEDDING_COL

    fields = THREAT_FIELDS + ([StructField(EMBEDDING_COL, ArrayType(FloatType()))] if with_embedding else [])
    names = {f.name for f in fields}
    base = df.drop(*[c for c in df.columns if c in names])
    schema = StructType(list(base.schema.fields) + fields)
    udf = _threat_udf(model_path, batch_size, intra_op_threads, text_column, with_embedding)
    return base.mapInArrow(udf, schema)


def apply_scoring(planned: DataFrame, scorer: Scorer | None) -> DataFrame:
    """Score the rows marked `needs_scoring`; the others keep what `plan_scoring` carried over.

    Language coverage first (tootlake.models.coverage): a model leaves a post whose language it does not
    cover unscored on purpose (its columns null, its model version set: the version whose coverage
    decided) and `scoring_note` says why; a post no model covers never reaches the models.
    processing_status: SUCCESS when every configured model produced a label or declined the language on
    purpose, else FAILED (also when no scorer is configured). Same grain and columns as `planned`.
    """
    to_score = planned.where("needs_scoring")
    kept = planned.where("NOT needs_scoring")
    if scorer is None:
        scored = to_score.withColumn("processing_status", F.lit(FAILED))
        return kept.unionByName(scored.select(*planned.columns))
    coverage = scorer_coverage(scorer) or {}
    language = F.col("language")
    threat_on = covered(language, coverage.get("threat"))
    sentiment_on = covered(language, coverage.get("sentiment"))
    # a model that is not run needs no row; a row neither run model wants never reaches the models
    wanted = F.lit(False)
    if scorer.threat_model_version is not None:
        wanted = wanted | threat_on
    if scorer.sentiment_model_version is not None:
        wanted = wanted | sentiment_on
    base = to_score.drop(*[c for c in SCORE_COLUMNS if c != "processing_status"])
    skipped = base.where(~wanted).withColumns({
        **{f.name: F.lit(None).cast(f.dataType) for f in THREAT_FIELDS},
        "threat_model_version": F.lit(scorer.threat_model_version).cast("string"),
        "sentiment_label": F.lit(None).cast("string"),
        "sentiment_score": F.lit(None).cast("double"),
        "sentiment_model_version": F.lit(scorer.sentiment_model_version).cast("string"),
    })
    run = scorer.score(base.where(wanted))
    run = run.withColumns({
        **{f.name: F.when(threat_on, F.col(f.name)) for f in THREAT_FIELDS[:-1]},  # all but the version
        "threat_model_version": F.when(threat_on, F.col("threat_model_version"))
                                 .otherwise(F.lit(scorer.threat_model_version)),
        "sentiment_label": F.when(sentiment_on, F.col("sentiment_label")),
        "sentiment_score": F.when(sentiment_on, F.col("sentiment_score")),
    })
    scored = run.select(*skipped.columns).unionByName(skipped)
    threat_ok = F.col("threat_label").isNotNull() | ~threat_on
    sentiment_ok = (F.col("sentiment_model_version").isNull() | F.col("sentiment_label").isNotNull()
                    | ~sentiment_on)
    scored = scored.withColumns({
        "processing_status": F.when(threat_ok & sentiment_ok, F.lit(SUCCESS)).otherwise(F.lit(FAILED)),
        "scoring_note": scoring_note(language, coverage),
    })
    return kept.unionByName(scored.select(*planned.columns))
