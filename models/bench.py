"""`tootlake bench models`: posts/s of the threat model (onnxruntime alone) per batch size, and of the
sentiment pipeline (Spark, local session)."""

from __future__ import annotations

import json
import time

from tootlake.models.data import DataFormatError, read_tweeteval, shared_data_dir


def build_parser(parser) -> None:
    parser.description = ("Threat model posts/s with plain onnxruntime per batch size, then the sentiment "
                          "pipeline's posts/s in a local Spark session. Texts: the shared validation tweets.")
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="comma-separated (default 1,8,32,64)")
    parser.add_argument("-n", type=int, default=512, help="texts per threat measurement (default 512)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--sentiment-n", type=int, default=2000, help="texts for the sentiment run")
    parser.add_argument("--skip-sentiment", action="store_true", help="only the threat model (no Spark)")


def _texts(n: int) -> list[str]:
    base = shared_data_dir()
    try:
        texts = read_tweeteval(base / "tweeteval-offensive/val_text.txt",
                               base / "tweeteval-offensive/val_labels.txt", 2).texts
    except DataFormatError:
        texts = ["a short post", "a somewhat longer post about the weather, trains and the news of the day"]
    return [texts[i % len(texts)] for i in range(n)]


def run(args) -> int:
    from tootlake.models.threat import ThreatModel

    results: dict = {"threat": {}, "sentiment": None}
    model = ThreatModel.load(intra_op_threads=args.threads)
    texts = _texts(args.n)
    print(f"threat model {model.model_version}, {args.threads} intra-op threads, {len(texts)} texts",
          flush=True)
    model.predict_proba(texts[:64])  # warm-up
    for size in [int(s) for s in args.batch_sizes.split(",") if s.strip()]:
        started = time.perf_counter()
        model.predict_proba(texts, batch_size=size)
        rate = len(texts) / (time.perf_counter() - started)
        results["threat"][str(size)] = round(rate, 1)
        print(f"  batch {size:>4}: {rate:8.1f} posts/s", flush=True)
    if not args.skip_sentiment:
        from tootlake.models.sentiment import load_sentiment_model, score_sentiment
        from tootlake.pipelines.settings import load_settings
        from tootlake.pipelines.spark import build_spark

        spark = build_spark(load_settings(), "tootlake-bench-models")
        pipeline = load_sentiment_model(spark)
        sentences = _texts(args.sentiment_n)
        df = spark.createDataFrame([(t,) for t in sentences], "text string").cache()
        df.count()
        score_sentiment(pipeline, df.limit(100)).collect()  # warm-up
        started = time.perf_counter()
        score_sentiment(pipeline, df).select("sentiment_label").collect()
        rate = len(sentences) / (time.perf_counter() - started)
        results["sentiment"] = round(rate, 1)
        print(f"sentiment pipeline ({spark.sparkContext.master}): {rate:.1f} posts/s "
              f"on {len(sentences)} texts", flush=True)
    print(json.dumps(results), flush=True)
    return 0
