"""Threat model at run time: ONNX (onnxruntime) + a `tokenizers` tokenizer. No torch.

Stable API (silver calls these; keep them stable):

    from tootlake.models.threat import get_threat_model, threat_level, contains_hate_speech

    model = get_threat_model()                 # one cached InferenceSession per process / Spark worker
    probs = model.predict_proba(texts)         # np.ndarray [n, 3], columns = model.labels
    labels, scores = model.predict(texts)      # list[str] in {"none","offensive","hate"}, np.ndarray[float]
    model.embed(texts)                         # np.ndarray [n, 384]: sentence embedding (sentiment uses it)
    model.run(texts, ["probs", "embedding"])   # several graph outputs from one pass, {name: array}
    model.model_version                        # "threat-minilm-<sha256[:12]>" of model.onnx + config.json
    threat_level(label, score)                 # "NONE" | "LOW" | "MEDIUM" | "HIGH"
    contains_hate_speech(label, score)         # 0 | 1

`ThreatModel.load(path=None, intra_op_threads=None)` loads a given artifact folder (default: the packaged
`models/threat/artifact`). Texts are normalised with `tootlake.models.text.normalise` first (mentions ->
`@user`, links dropped, HTML entities unescaped), as in training; None and "" are allowed and score as "none".

Label and score: `predict` returns the arg-max label and its probability.

threat_level mapping (label, score = probability of that label):
    label "none"                              -> "NONE"
    label "offensive", score <  0.80          -> "LOW"
    label "offensive", score >= 0.80          -> "MEDIUM"
    label "hate",      score <  0.80          -> "MEDIUM"
    label "hate",      score >= 0.80          -> "HIGH"
contains_hate_speech: 1 when label == "hate" and score >= 0.50, else 0 (the arg-max of three classes can be
below 0.5).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tootlake.catalog.vocab import THREAT_LABELS as LABELS  # the model's classes, in output order
from tootlake.models.text import normalise
from tootlake.package_data import package_path

DEFAULT_ARTIFACT_DIR = package_path(__name__, "artifact")  # package data (pyproject.toml)
HIGH_CONFIDENCE = 0.80
HATE_FLAG_MIN_SCORE = 0.50


class ModelLoadError(RuntimeError):
    """The model artifact is missing or unreadable; the message says which file and what to do."""


def threat_level(label: str, score: float) -> str:
    """Map a predicted label and its probability to NONE / LOW / MEDIUM / HIGH (see the module docstring)."""
    if label == "none":
        return "NONE"
    if label == "offensive":
        return "MEDIUM" if score >= HIGH_CONFIDENCE else "LOW"
    if label == "hate":
        return "HIGH" if score >= HIGH_CONFIDENCE else "MEDIUM"
    raise ValueError(f"unknown threat label {label!r}; expected one of {LABELS}")


def contains_hate_speech(label: str, score: float) -> int:
    """1 when the label is `hate` with probability >= 0.5, else 0."""
    if label not in LABELS:
        raise ValueError(f"unknown threat label {label!r}; expected one of {LABELS}")
    return int(label == "hate" and score >= HATE_FLAG_MIN_SCORE)


def _hint(path: Path) -> str:
    return (f"expected model.onnx, tokenizer.json and config.json in {path}; "
            "restore them from git (`git checkout -- models/threat/artifact`) or rebuild with "
            "`tootlake models train threat` (needs the `train` extra)")


class ThreatModel:
    """An ONNX threat classifier with its tokenizer and decision settings (config.json)."""

    def __init__(self, session, tokenizer, config: dict, model_version: str, path: Path) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.model_version = model_version
        self.path = path
        self.labels: list[str] = list(config.get("labels", LABELS))
        self.max_length = int(config.get("max_length", 64))
        self.output_names: list[str] = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | Path | None = None, intra_op_threads: int | None = None) -> ThreatModel:
        """Load an artifact folder; `intra_op_threads` defaults to $THREAT_INTRA_OP_THREADS, else ORT's."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(path) if path is not None else DEFAULT_ARTIFACT_DIR
        files = {name: folder / name for name in ("model.onnx", "tokenizer.json", "config.json")}
        for name, file in files.items():
            if not file.is_file():
                raise ModelLoadError(f"threat model file missing: {file} ({_hint(folder)})")
            if file.stat().st_size < 64 and name == "model.onnx" or _is_lfs_pointer(file):
                raise ModelLoadError(f"threat model file {file} is empty or a pointer, not a model "
                                     f"({_hint(folder)})")
        try:
            config = json.loads(files["config.json"].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"corrupt {files['config.json']}: {exc} ({_hint(folder)})") from exc
        try:
            tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelLoadError(f"corrupt {files['tokenizer.json']}: {exc} ({_hint(folder)})") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=int(config.get("max_length", 64)))
        options = ort.SessionOptions()
        threads = intra_op_threads or int(os.environ.get("THREAT_INTRA_OP_THREADS", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # The weights are stored int8 behind DequantizeLinear nodes; with QDQ handling off, ORT folds them
        # into fp32 constants once at load, so inference runs fp32 kernels at full speed.
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            session = ort.InferenceSession(str(files["model.onnx"]), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelLoadError(f"corrupt {files['model.onnx']}: cannot load it with onnxruntime "
                                 f"({type(exc).__name__}) ({_hint(folder)})") from exc
        return cls(session, tokenizer, config, _version(folder, config), folder)

    def _encode(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch([normalise(t) for t in texts])
        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return ids, mask

    def run(self, texts: Sequence[str | None], outputs: Sequence[str], batch_size: int = 32) -> dict:
        """Named graph outputs for `texts` from one pass, rows in the caller's order ({name: array})."""
        texts = list(texts)
        missing = [name for name in outputs if name not in self.output_names]
        if missing:
            raise ModelLoadError(f"{self.path}/model.onnx has no output {missing}; it has "
                                 f"{self.output_names} (an older artifact: rebuild it with "
                                 "`tootlake models train threat`)")
        results: dict[str, np.ndarray] = {}
        # Sort by length so each batch pads little; results go back to the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i] or ""))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = self._encode([texts[i] for i in idx])
            values = self.session.run(list(outputs), {"input_ids": ids, "attention_mask": mask})
            for name, value in zip(outputs, values, strict=True):
                if name not in results:
                    results[name] = np.zeros((len(texts), *value.shape[1:]), dtype=np.float32)
                results[name][idx] = value
        for name in outputs:
            if name not in results:  # no texts: empty arrays of the right width
                width = self.session.get_outputs()[self.output_names.index(name)].shape[-1]
                results[name] = np.zeros((0, width if isinstance(width, int) else 0), dtype=np.float32)
        return results

    def predict_proba(self, texts: Sequence[str | None], batch_size: int = 32) -> np.ndarray:
        """Probabilities [n, 3] in the order of `self.labels` (none, offensive, hate)."""
        return self.run(texts, ["probs"], batch_size)["probs"]

    def embed(self, texts: Sequence[str | None], batch_size: int = 32) -> np.ndarray:
        """The mean-pooled sentence embedding [n, 384] the threat head reads (the sentiment model's input)."""
        return self.run(texts, ["embedding"], batch_size)["embedding"]

    def predict(self, texts: Sequence[str | None], batch_size: int = 32) -> tuple[list[str], np.ndarray]:
        """(arg-max labels, their probabilities)."""
        return self.decide(self.predict_proba(texts, batch_size=batch_size))

    def decide(self, probs: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Probabilities [n, 3] -> (arg-max labels, their probabilities)."""
        best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
        return [self.labels[i] for i in best], probs[np.arange(len(probs)), best].astype(np.float64)


def artifact_version(path: str | Path) -> str:
    """The version `ThreatModel.load(path).model_version` gives, without building a session (the driver
    needs only the version of a model its workers run)."""
    folder = Path(path)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {exc} ({_hint(folder)})") from exc
    if not (folder / "model.onnx").is_file():
        raise ModelLoadError(f"threat model file missing: {folder / 'model.onnx'} ({_hint(folder)})")
    return _version(folder, config)


def _version(folder: Path, config: dict) -> str:
    """`<config name>-<first 12 hex of SHA-256 over model.onnx + config.json>`."""
    digest = hashlib.sha256()
    for name in ("model.onnx", "config.json"):
        with (folder / name).open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return f"{config.get('name', 'threat-minilm')}-{digest.hexdigest()[:12]}"


def _is_lfs_pointer(file: Path) -> bool:
    if file.stat().st_size > 1024:
        return False
    return file.read_bytes().startswith(b"version https://git-lfs")


_CACHE: dict[tuple[str, int | None], ThreatModel] = {}
_LOCK = threading.Lock()


def get_threat_model(path: str | Path | None = None, intra_op_threads: int | None = None) -> ThreatModel:
    """A process-wide cached ThreatModel: each Spark Python worker builds one InferenceSession, not one per
    batch."""
    key = (str(Path(path).resolve()) if path else str(DEFAULT_ARTIFACT_DIR), intra_op_threads)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = ThreatModel.load(path, intra_op_threads=intra_op_threads)
        return _CACHE[key]
