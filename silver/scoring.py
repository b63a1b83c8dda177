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
            labels: list[str | None]
            embeddings = None
            try:
                result = model.run(texts, outputs, batch_size=batch_size)
                labels, scores = model.decide(result["probs"])
                probs: list[float | None] = [float(s) for s in scores]
                embeddings = result.get("embedding")
            except Exception:  # noqa: BLE001 - score row by row so one bad text fails alone (FAILED)
                labels, probs, rows = [], [], []
                for text in texts:
                    try:
                        one = model.run([text], outputs, batch_size=1)
                        (label,), (score,) = model.decide(one["probs"])
                        labels.append(label)
                        probs.append(float(score))
                        rows.append(one.get("embedding"))
                    except Exception:  # noqa: BLE001
                        labels.append(None)
                        probs.append(None)
                        rows.append(None)
                if with_embedding:
                    # A row the encoder failed on gets zeros; it is FAILED anyway (no threat label).
                    width = next((r.shape[1] for r in rows if r is not None), 0)
                    embeddings = np.vstack([r if r is not None else np.zeros((1, width), np.float32)
                                            for r in rows]) if rows else None
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
                if embeddings is None:
                    embeddings = np.zeros((len(texts), 0), np.float32)
                out = out.append_column(EMBEDDING_COL, embedding_array(embeddings))
            yield out

    return score_batches


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
