"""`tootlake models train|evaluate`: rebuild the threat / sentiment artifacts and measure them.

`evaluate` prints progress on stderr and ONE JSON object (the metrics) as stdout's last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tootlake.models.data import FORMATS, DataFormatError, shared_data_dir
from tootlake.package_data import package_path


def _err(message: str) -> None:
    print(f"tootlake models: {message}", file=sys.stderr, flush=True)


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="train and evaluate the threat and sentiment models",
                                   description="Train and evaluate the threat (ONNX) and sentiment (MLlib) "
                                               "models.")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)

    train = sub.add_parser("train", help="rebuild a model artifact from the shared training data",
                           description="Rebuild models/<name>/artifact from ../shared/data (train splits; "
                                       "validation splits for tuning). threat and multilingual need the "
                                       "`train` extra (torch).")
    train.add_argument("model", choices=["threat", "sentiment", "multilingual"])
    train.add_argument("--data-dir", type=Path, default=None,
                       help="default: the setting SHARED_DATA_DIR (../shared/data)")
    train.add_argument("--out", type=Path, default=None, help="artifact folder (default: the packaged one)")
    train.add_argument("--work-dir", type=Path, default=Path("var/models"),
                       help="checkpoints and the fp32 ONNX go here (default: var/models/<name>)")
    train.add_argument("--minutes", type=float, default=None,
                       help="threat / multilingual: time budget, minutes (default 55 / 100)")
    train.add_argument("--epochs", type=float, default=2.0,
                       help="threat / multilingual: epochs planned (default 2)")
    train.add_argument("--seed", type=int, default=13)
    train.add_argument("--sentiment-per-epoch", type=int, default=None,
                       help="threat / multilingual: TweetEval sentiment examples mixed into each epoch "
                            "(default 16000 / 8000 of 45,603; multilingual adds every UMSAB train example)")
    train.add_argument("--no-compare-fp32", dest="compare_fp32", action="store_false",
                       help="threat: skip scoring the fp32 export on val (saves a few minutes)")
    train.add_argument("--resume", action="store_true",
                       help="threat / multilingual: continue from the last run's weights in the work dir")
    ml = train.add_argument_group("multilingual only (see python -m tootlake.models.multilingual.train -h)")
    ml.add_argument("--base-dir", type=Path, default=None,
                    help="converted multilingual-e5-small (default var/models/multilingual-e5-small; "
                         "converted when missing)")
    ml.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    ml.add_argument("--limit", type=int, default=None,
                    help="at most this many examples of each train and validation set (smoke runs)")
    ml.add_argument("--vocab", default="scripts",
                    help="vocabulary trimmed to this many pieces (e.g. 64000); default `scripts`: the "
                         "train and Mastodon pieces + every Latin / Arabic / Devanagari one (~140k); 0: all "
                         "250,002")
    ml.add_argument("--embedding-bits", type=int, choices=[4, 8], default=4,
                    help="word-embedding table in 4-bit blocks (default) or int8")
    ml.add_argument("--compare-per-set", type=int, default=324,
                    help="validation texts per set for the size comparison (0: skip)")
    ml.add_argument("--compare-vocab", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                    help="also measure artifacts with these vocabulary sizes (e.g. 100000,150000)")
    ml.add_argument("--skip-train", action="store_true",
                    help="export + validate the work dir's best.pt without training")
    train.add_argument("--with-baseline", action="store_true",
                       help="also measure the baseline: sentiment = the older system's pipeline (~5 min "
                            "more); threat = the pretrained encoder frozen + logistic regression (~3 min)")
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="score a labelled file; prints one JSON line of metrics",
                        description="Score every example of a labelled file in a shared-data format and "
                                    "print scikit-learn metrics as one JSON object on stdout's last line.")
    ev.add_argument("model", choices=["threat", "sentiment"])
    ev.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    ev.add_argument("--text", type=Path, help="one text per line (TweetEval *_text.txt)")
    ev.add_argument("--labels", type=Path, help="one integer label per line (TweetEval *_labels.txt)")
    ev.add_argument("--csv", type=Path, help="Davidson CSV (columns class, tweet)")
    ev.add_argument("--language", default=None,
                    help="umsab: score the shared data's split of this language (ar de en es fr hi it pt), "
                         "or `all` for each in turn (a per-language table on stderr, the mean macro-F1 of "
                         "the non-English ones in the JSON)")
    ev.add_argument("--split", default="val",
                    help="umsab with --language: the split's file prefix (default val; the test split is "
                         "held out and not shipped)")
    ev.add_argument("--data-dir", type=Path, default=None,
                    help="umsab with --language: default the setting SHARED_DATA_DIR (../shared/data)")
    ev.add_argument("--model-dir", type=Path, default=None, help="artifact folder (default: packaged)")
    ev.add_argument("--sentiment-model", choices=["deployed", "mllib", "multilingual"], default="deployed",
                    help="umsab with --language: `deployed` (default) scores each language with the model "
                         "silver gives it (models/coverage.json: MLlib for English, the multilingual head "
                         "for the other languages, also those it does not cover yet); `mllib` / "
                         "`multilingual`: that model for every language")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--threads", type=int, default=None, help="threat: onnxruntime intra-op threads")
    ev.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from tootlake.models.evaluate import (
        SENTIMENT_FORMATS,
        THREAT_FORMATS,
        evaluate_sentiment,
        evaluate_threat,
        read_labelled,
    )

    allowed = THREAT_FORMATS if args.model == "threat" else SENTIMENT_FORMATS
    if args.fmt not in allowed:
        _err(f"the {args.model} model is evaluated with --format {' or '.join(allowed)}, not {args.fmt}")
        return 2
    if args.csv is not None and (args.text is not None or args.labels is not None):
        _err("give either --csv FILE or --text FILE --labels FILE, not both")
        return 2
    if args.language is not None:
        return _evaluate_languages(args)
    try:
        data = read_labelled(args.fmt, args.text, args.labels, args.csv)
    except DataFormatError as exc:
        _err(str(exc))
        return 2
    if not data.texts:
        _err("the file has no examples")
        return 2
    print(f"scoring {len(data.texts)} examples ({args.fmt}) with the {args.model} model ...", file=sys.stderr,
          flush=True)
    if args.model == "threat":
        from tootlake.models.threat import ModelLoadError, ThreatModel

        try:
            model = ThreatModel.load(args.model_dir, intra_op_threads=args.threads)
        except ModelLoadError as exc:
            _err(str(exc))
            return 2
        result = evaluate_threat(data, args.fmt, model, batch_size=args.batch_size)
    else:
        loaded = _load_mllib(args.model_dir)
        if loaded is None:
            return 2
        spark, model = loaded
        result = evaluate_sentiment(data, spark, model, args.model_dir, fmt=args.fmt)
    print(f"{args.fmt}: macro-F1 {result['macro_f1']:.4f}, macro-recall {result['macro_recall']:.4f}, "
          f"accuracy {result['accuracy']:.4f}, {result['posts_per_s']} posts/s", file=sys.stderr, flush=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def _evaluate_languages(args: argparse.Namespace) -> int:
    """`--format umsab --language xx|all`: the shared data's split per language, one model load."""
    from tootlake.models.data import UMSAB_LANGUAGES, umsab_files
    from tootlake.models.evaluate import (
        evaluate_sentiment,
        format_language_table,
        per_language_summary,
        read_labelled,
    )

    if args.fmt != "umsab":
        _err(f"--language is for --format umsab (per-language sentiment data), not {args.fmt}")
        return 2
    if args.text is not None or args.labels is not None or args.csv is not None:
        _err("--language reads the shared data's files; give either --language or --text/--labels")
        return 2
    language = args.language.strip().lower()
    languages = list(UMSAB_LANGUAGES) if language == "all" else [language]
    data_dir = args.data_dir or shared_data_dir()
    try:
        sets = {lang: read_labelled("umsab", *umsab_files(data_dir, lang, args.split)) for lang in languages}
    except DataFormatError as exc:
        _err(str(exc))
        return 2
    from tootlake.models.coverage import load_coverage

    if args.model_dir is not None and args.sentiment_model == "deployed":
        _err("--model-dir with --language names one model's artifact: add --sentiment-model mllib or "
             "--sentiment-model multilingual")
        return 2
    coverage = load_coverage("sentiment")
    mllib_languages = coverage.languages - coverage.multilingual  # those silver scores with MLlib (en)
    routed = {"mllib": set(), "multilingual": set(languages),
              "deployed": set(languages) - mllib_languages}[args.sentiment_model]
    results = {}
    for lang in [lang for lang in languages if lang in routed]:
        from tootlake.models.evaluate import evaluate_sentiment_head
        from tootlake.models.threat import ModelLoadError

        try:
            results[lang] = evaluate_sentiment_head(sets[lang], model_path=args.model_dir, fmt="umsab",
                                                    batch_size=args.batch_size)
        except ModelLoadError as exc:
            _err(str(exc))
            return 2
        results[lang]["sentiment_model"] = "multilingual"
        _print_language(lang, args.split, results[lang])
    if any(lang not in routed for lang in languages):
        loaded = _load_mllib(args.model_dir)
        if loaded is None:
            return 2
        spark, model = loaded
        for lang in [lang for lang in languages if lang not in routed]:
            results[lang] = evaluate_sentiment(sets[lang], spark, model, args.model_dir, fmt="umsab")
            results[lang]["sentiment_model"] = "mllib"
            _print_language(lang, args.split, results[lang])
    results = {lang: results[lang] for lang in languages}
    if len(results) == 1:
        (result,) = results.values()
        result.update(language=languages[0], split=args.split)
    else:
        result = per_language_summary(results)
        versions = sorted({r["model_version"] for r in results.values()})
        result.update(split=args.split, format="umsab", model_version="+".join(versions),
                      sentiment_model={lang: r["sentiment_model"] for lang, r in results.items()})
        print(format_language_table(result), file=sys.stderr, flush=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def _load_mllib(model_dir: Path | None):
    """(spark, the MLlib sentiment pipeline), or None after saying why it could not be loaded."""
    from tootlake.models.sentiment import SentimentModelError, load_sentiment_model
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    spark = build_spark(load_settings(), "tootlake-models-evaluate")
    try:
        return spark, load_sentiment_model(spark, model_dir)
    except SentimentModelError as exc:
        _err(str(exc))
        return None


def _print_language(lang: str, split: str, result: dict) -> None:
    print(f"umsab {lang} ({split}, {result['n']}, {result['sentiment_model']}): macro-F1 "
          f"{result['macro_f1']:.4f}, macro-recall {result['macro_recall']:.4f}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    started = time.time()
    data_dir = args.data_dir or shared_data_dir()
    if not data_dir.is_dir():
        _err(f"no training data at {data_dir}: pass --data-dir (with tweeteval-*/ and davidson-*/)")
        return 2
    out = args.out or package_path(f"tootlake.models.{args.model}", "artifact")
    work = args.work_dir / args.model
    if args.model == "threat":
        rc = _train_threat(args, data_dir, out, work)
    elif args.model == "multilingual":
        rc = _train_multilingual(args, data_dir, out, work)
    else:
        rc = _train_sentiment(data_dir, out, args.with_baseline)
    print(f"models train {args.model}: done in {(time.time() - started) / 60:.1f} min -> {out}", flush=True)
    return rc


def _train_threat(args: argparse.Namespace, data_dir: Path, out: Path, work: Path) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        _err("training the threat model needs the `train` extra: .venv/bin/pip install -e '.[dev,train]'")
        return 2
    from tootlake.models.threat import train as threat_train

    threat_train.train(data_dir, work, epochs=args.epochs, max_minutes=args.minutes or 55.0, seed=args.seed,
                       resume=args.resume, sentiment_per_epoch=args.sentiment_per_epoch or 16000)
    threat_train.export(work, out)
    report = validation_report_threat(data_dir, out, work, compare_fp32=args.compare_fp32)
    if args.with_baseline:
        report["frozen_baseline"] = threat_train.frozen_baseline(data_dir, seed=args.seed)
    (work / "val_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: {n: round(r["macro_f1"], 4) for n, r in v.items()} for k, v in report.items()}))
    return 0


def _train_multilingual(args: argparse.Namespace, data_dir: Path, out: Path, work: Path) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        _err("training the multilingual model needs the `train` extra: "
             ".venv/bin/pip install -e '.[dev,train]'")
        return 2
    from tootlake.models.multilingual import convert
    from tootlake.models.multilingual import train as multilingual_train

    try:
        vocab_size = multilingual_train.vocab_size_arg(args.vocab)
    except ValueError:
        _err(f"--vocab takes a number of pieces or `scripts`, not {args.vocab!r}")
        return 2
    multilingual_train.run(
        data_dir, work, out, args.base_dir or convert.DEFAULT_OUT, skip_train=args.skip_train,
        vocab_size=vocab_size or None, embedding_bits=args.embedding_bits,
        compare_per_set=args.compare_per_set, compare_vocab=args.compare_vocab, epochs=args.epochs,
        max_minutes=args.minutes or 100.0, seed=args.seed, resume=args.resume,
        sentiment_per_epoch=args.sentiment_per_epoch or 8000, max_steps=args.max_steps, limit=args.limit)
    return 0


def validation_report_threat(data_dir: Path, artifact: Path, work: Path, compare_fp32: bool = True) -> dict:
    """Tune the decision rules on val with the int8 artifact; optionally score the fp32 export alike."""
    from tootlake.models.evaluate import evaluate_threat, read_labelled, tune_threat_decisions
    from tootlake.models.threat import ThreatModel

    val_sets = {fmt: read_labelled(fmt, **files) for fmt, files in _val_files(data_dir).items()}
    report: dict = {"int8": tune_threat_decisions(artifact, val_sets)}
    if compare_fp32 and (work / "model.fp32.onnx").is_file():
        fp32_dir = work / "fp32"
        fp32_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "model.fp32.onnx", fp32_dir / "model.onnx")
        for name in ("tokenizer.json", "config.json"):
            shutil.copyfile(artifact / name, fp32_dir / name)
        model = ThreatModel.load(fp32_dir)
        report["fp32"] = {fmt: evaluate_threat(data, fmt, model) for fmt, data in val_sets.items()}
        for fmt, result in report["fp32"].items():
            print(f"val fp32 {fmt} (int8's rules): macro-F1 {result['macro_f1']:.4f}", flush=True)
    return report


def _val_files(data_dir: Path) -> dict:
    return {
        "tweeteval-hate": {"text": data_dir / "tweeteval-hate/val_text.txt",
                           "labels": data_dir / "tweeteval-hate/val_labels.txt"},
        "tweeteval-offensive": {"text": data_dir / "tweeteval-offensive/val_text.txt",
                                "labels": data_dir / "tweeteval-offensive/val_labels.txt"},
        "davidson": {"csv_file": data_dir / "davidson-hate-offensive/val.csv"},
    }


def _train_sentiment(data_dir: Path, out: Path, with_baseline: bool) -> int:
    from tootlake.models.sentiment import train as sentiment_train
    from tootlake.pipelines.settings import load_settings
    from tootlake.pipelines.spark import build_spark

    spark = build_spark(load_settings(), "tootlake-models-train-sentiment")
    sentiment_train.train(spark, data_dir, out, with_baseline=with_baseline)
    return 0
