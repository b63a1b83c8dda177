"""Threat model run time (onnxruntime + tokenizers, no torch): loading, determinism, mapping, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tootlake.models.threat import (
    DEFAULT_ARTIFACT_DIR,
    LABELS,
    ModelLoadError,
    ThreatModel,
    contains_hate_speech,
    get_threat_model,
    threat_level,
)

TEXTS = [
    "What a lovely morning for a walk in the park with the dogs",
    "You are an idiot and everyone hates you, shut up",
    "",
    "the train was late again, typical monday",
]


@pytest.fixture(scope="module")
def model() -> ThreatModel:
    return ThreatModel.load(intra_op_threads=1)


def test_loads_offline_without_torch() -> None:
    # A fresh interpreter with the hub switched off: the packaged artifact loads and scores, torch is never
    # imported (it is a training-only dependency).
    code = (
        "import sys\n"
        "from tootlake.models.threat import ThreatModel\n"
        "m = ThreatModel.load(intra_op_threads=1)\n"
        "labels, scores = m.predict(['hello world'])\n"
        "assert labels[0] in ('none', 'offensive', 'hate'), labels\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(m.model_version)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("threat-minilm-")


def test_probabilities_shape_and_sum(model: ThreatModel) -> None:
    probs = model.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), 3)
    assert list(model.labels) == list(LABELS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert model.predict_proba([]).shape == (0, 3)


def test_predictions_are_deterministic(model: ThreatModel) -> None:
    first = model.predict_proba(TEXTS)
    second = ThreatModel.load(intra_op_threads=1).predict_proba(TEXTS)
    np.testing.assert_array_equal(first, second)
    labels, scores = model.predict(TEXTS)
    assert labels == model.predict(TEXTS)[0]
    np.testing.assert_allclose(scores, first.max(axis=1), rtol=1e-6)


def test_order_of_inputs_does_not_change_results(model: ThreatModel) -> None:
    forward = model.predict_proba(TEXTS, batch_size=1)
    backward = model.predict_proba(TEXTS[::-1], batch_size=1)[::-1]
    np.testing.assert_allclose(forward, backward, atol=1e-6)


def test_none_and_empty_texts_are_scored(model: ThreatModel) -> None:
    labels, scores = model.predict([None, "", "   "])
    assert len(labels) == 3 and all(0.0 <= s <= 1.0 for s in scores)


def test_model_version_is_a_content_hash(model: ThreatModel, tmp_path: Path) -> None:
    assert model.model_version.startswith("threat-minilm-") and len(model.model_version.split("-")[-1]) == 12
    copy = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    assert ThreatModel.load(copy).model_version == model.model_version
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"max_length"', '"max_length" '))
    assert ThreatModel.load(copy).model_version != model.model_version


def test_cached_model_is_shared() -> None:
    assert get_threat_model() is get_threat_model()


@pytest.mark.parametrize(
    ("label", "score", "level"),
    [
        ("none", 0.99, "NONE"),
        ("none", 0.34, "NONE"),
        ("offensive", 0.34, "LOW"),
        ("offensive", 0.7999, "LOW"),
        ("offensive", 0.80, "MEDIUM"),
        ("offensive", 1.0, "MEDIUM"),
        ("hate", 0.34, "MEDIUM"),
        ("hate", 0.7999, "MEDIUM"),
        ("hate", 0.80, "HIGH"),
        ("hate", 1.0, "HIGH"),
    ],
)
def test_threat_level_boundaries(label: str, score: float, level: str) -> None:
    assert threat_level(label, score) == level


@pytest.mark.parametrize(
    ("label", "score", "flag"),
    [("hate", 0.50, 1), ("hate", 0.4999, 0), ("hate", 0.99, 1), ("offensive", 0.99, 0), ("none", 1.0, 0)],
)
def test_contains_hate_speech_boundaries(label: str, score: float, flag: int) -> None:
    assert contains_hate_speech(label, score) == flag


def test_unknown_label_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown threat label"):
        threat_level("spam", 0.9)
    with pytest.raises(ValueError, match="unknown threat label"):
        contains_hate_speech("spam", 0.9)


def test_missing_model_file_has_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"missing: .*model\.onnx.*tootlake models train threat"):
        ThreatModel.load(copy)
    with pytest.raises(ModelLoadError, match="missing"):
        ThreatModel.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("name", "content"),
    [("model.onnx", b"this is not an onnx model" * 10), ("config.json", b"{not json"),
     ("tokenizer.json", b"{\"broken\": true}"),
     ("model.onnx", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")],
)
def test_corrupt_model_file_has_a_clear_error(tmp_path: Path, name: str, content: bytes) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    (copy / name).write_bytes(content)
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        ThreatModel.load(copy)


def test_scores_do_not_depend_on_batch_mates(model: ThreatModel) -> None:
    # Silver scores whatever posts share a micro-batch; a post's label must not change with its neighbours.
    # (Dynamic int8 quantisation scaled activations per batch and flipped labels; weights-only int8 doesn't.)
    long_texts = [" ".join(["a very long and rambling post about many things"] * 8)] * 3
    alone = model.predict_proba(TEXTS, batch_size=1)
    mixed = model.predict_proba(TEXTS + long_texts, batch_size=8)[: len(TEXTS)]
    np.testing.assert_allclose(alone, mixed, atol=1e-5)


def test_one_pass_gives_probabilities_and_embedding(model: ThreatModel) -> None:
    both = model.run(TEXTS, ["probs", "embedding"])
    np.testing.assert_allclose(both["probs"], model.predict_proba(TEXTS), atol=1e-6)
    assert both["embedding"].shape == (len(TEXTS), 384)
    np.testing.assert_allclose(both["embedding"], model.embed(TEXTS), atol=1e-6)
    with pytest.raises(ModelLoadError, match="no output"):
        model.run(TEXTS, ["logits"])


def test_weight_only_quantiser_keeps_a_matmul_close(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from tootlake.models.threat.train import quantise_weights

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 96)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 96])],
        [numpy_helper.from_array(weight, "w")],
    )
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    assert quantise_weights(src, dst) == 1
    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(dst)).graph.initializer}
    assert stored["w_int8"].dtype == np.int8 and "w" not in stored
    x = rng.normal(size=(5, 64)).astype(np.float32)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    (y,) = ort.InferenceSession(str(dst), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    expected = x @ weight
    # Per-channel int8 keeps each output within ~1 % of its column's scale.
    assert np.abs(y - expected).max() < 0.02 * np.abs(expected).max()
    assert not np.allclose(y, expected, atol=1e-7)  # it really is quantised
