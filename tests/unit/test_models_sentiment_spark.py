"""Sentiment PipelineModel (uses the session-scoped Spark fixture, ~30 s to start): scoring contract,
determinism, evaluate command == scikit-learn, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sklearn.metrics import f1_score, recall_score

from tootlake.models.sentiment import (
    DEFAULT_ARTIFACT_DIR,
    LABELS,
    SentimentModelError,
    load_sentiment_model,
    model_version,
    score_sentiment,
)
from tootlake.pipelines.cli import main

TEXTS = [
    "I love this, best day ever!",
    "This is terrible, I am so angry and sad",
    "The bus leaves at 9 from the main station",
    None,
    "",
    "not bad at all, pretty happy with it :)",
]
GOLD = [2, 0, 1, 1, 1, 2]


@pytest.fixture(scope="module")
def sentiment_model(spark):
    return load_sentiment_model(spark)


def test_scores_every_row_and_keeps_columns(spark, sentiment_model) -> None:
    df = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "post_id int, text string")
    rows = score_sentiment(sentiment_model, df).orderBy("post_id").collect()
    assert [r.post_id for r in rows] == list(range(len(TEXTS)))
    assert list(rows[0].asDict()) == ["post_id", "text", "sentiment_label", "sentiment_score"]
    assert all(r.sentiment_label in LABELS and 0.0 < r.sentiment_score <= 1.0 for r in rows)
    assert rows[0].sentiment_label == "positive" and rows[1].sentiment_label == "negative"
    again = score_sentiment(sentiment_model, df).orderBy("post_id").collect()
    assert [(r.sentiment_label, r.sentiment_score) for r in again] == [
        (r.sentiment_label, r.sentiment_score) for r in rows
    ]


def test_model_version_and_missing_model(spark, tmp_path: Path) -> None:
    version = model_version()
    assert version.startswith("sentiment-mllib-") and len(version.split("-")[-1]) == 12
    with pytest.raises(SentimentModelError, match="tootlake models train sentiment"):
        load_sentiment_model(spark, tmp_path / "nowhere")
    broken = tmp_path / "pipeline"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, broken)
    for file in (broken / "metadata").iterdir():
        file.write_text("garbage")
    with pytest.raises(SentimentModelError, match="cannot load"):
        load_sentiment_model(spark, broken)


def test_evaluate_command_matches_scikit_learn(spark, sentiment_model, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    texts = [t or "" for t in TEXTS]
    (tmp_path / "text.txt").write_text("".join(f"{t} \n" for t in texts))
    (tmp_path / "labels.txt").write_text("".join(f"{y}\n" for y in GOLD))
    rc = main(["models", "evaluate", "sentiment", "--format", "tweeteval-sentiment",
               "--text", str(tmp_path / "text.txt"), "--labels", str(tmp_path / "labels.txt")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    df = spark.createDataFrame([(i, f"{t} ") for i, t in enumerate(texts)], "i int, text string")
    rows = score_sentiment(sentiment_model, df).orderBy("i").collect()
    pred = [LABELS.index(r.sentiment_label) for r in rows]
    assert result["n"] == len(texts)
    assert result["macro_recall"] == pytest.approx(recall_score(GOLD, pred, average="macro", zero_division=0))
    assert result["macro_f1"] == pytest.approx(f1_score(GOLD, pred, average="macro", zero_division=0))
    assert result["model_version"] == model_version()


def test_pipeline_reads_the_threat_encoder_and_reuses_a_given_embedding(spark, sentiment_model) -> None:
    from tootlake.models.sentiment import EMBEDDING_COL, uses_encoder
    from tootlake.models.threat import get_threat_model

    assert uses_encoder(sentiment_model)
    df = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "post_id int, text string")
    from_text = score_sentiment(sentiment_model, df).orderBy("post_id").collect()
    # Silver hands over the embedding its threat pass computed; the result must be the same.
    vectors = get_threat_model().embed([t or "" for t in TEXTS])
    given = spark.createDataFrame([(i, t, [float(v) for v in vectors[i]]) for i, t in enumerate(TEXTS)],
                                  f"post_id int, text string, {EMBEDDING_COL} array<float>")
    reused = score_sentiment(sentiment_model, given).orderBy("post_id").collect()
    assert EMBEDDING_COL not in reused[0].asDict()
    assert [r.sentiment_label for r in reused] == [r.sentiment_label for r in from_text]
    for a, b in zip(reused, from_text, strict=True):
        assert a.sentiment_score == pytest.approx(b.sentiment_score, abs=1e-4)


def test_a_pipeline_trained_on_another_encoder_is_refused(spark, tmp_path: Path) -> None:
    copy = tmp_path / "pipeline"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    (stage,) = [d for d in (copy / "stages").iterdir() if "EncoderEmbedding" in d.name]
    metadata = next((stage / "metadata").glob("part-*"))
    record = json.loads(metadata.read_text())
    record["paramMap"]["encoderVersion"] = "threat-minilm-000000000000"
    metadata.write_text(json.dumps(record))
    (metadata.parent / f".{metadata.name}.crc").unlink(missing_ok=True)  # stale checksum: Hadoop would refuse
    with pytest.raises(SentimentModelError, match="retrain it with `tootlake models train sentiment`"):
        load_sentiment_model(spark, copy)
