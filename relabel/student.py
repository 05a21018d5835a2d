"""The student: a MiniLM-L6 cross-encoder fine-tuned on teacher grades, with grade thresholds fitted
so its grade distribution matches the teacher's (no human labels involved)."""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer

STUDENT_CONFIG_FILE = "relabel_student.json"


@dataclass(frozen=True)
class StudentConfig:
    """Training settings of the cross-encoder recipe."""

    base_model: str
    max_length: int = 256
    batch_size: int = 16
    epochs: int = 3
    learning_rate: float = 4e-5
    val_fraction: float = 0.2
    seed: int = 13


def pair_text(row: dict[str, Any]) -> str:
    """Document side of the cross-encoder input: title, then body."""
    return f"{row['title']}. {row['doc_text']}"


def query_group_split(rows: Sequence[dict[str, Any]], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train/validation row indices split by query (no query on both sides)."""
    if val_fraction <= 0:
        return list(range(len(rows))), []
    qids = sorted({r["qid"] for r in rows})
    if len(qids) < 3:
        return list(range(len(rows))), []
    val_qids = {q for q in qids if (zlib.crc32(f"{seed}:{q}".encode()) % 1000) / 1000 < val_fraction}
    if not val_qids or len(val_qids) == len(qids):
        val_qids = {qids[0]}
    train = [i for i, r in enumerate(rows) if r["qid"] not in val_qids]
    val = [i for i, r in enumerate(rows) if r["qid"] in val_qids]
    return train, val


def fit_thresholds(scores: np.ndarray, grades: np.ndarray) -> list[float]:
    """Cut points on the expected-grade scale so predicted grade shares equal the teacher's shares."""
    shares = np.array([(grades == g).mean() for g in range(4)])
    cumulative = np.cumsum(shares)[:3]
    return [float(np.quantile(scores, min(max(c, 0.0), 1.0))) for c in cumulative]


def apply_thresholds(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Grade = number of cut points strictly below the score."""
    return np.searchsorted(np.asarray(thresholds), scores, side="left").astype(int)


def encode(tokenizer: Any, queries: Sequence[str], docs: Sequence[str], idx: Sequence[int], max_length: int) -> Any:
    """A dynamically padded batch of (query, document) pairs."""
    return tokenizer([queries[i] for i in idx], [docs[i] for i in idx], padding=True, truncation=True,
                     max_length=max_length, return_tensors="pt")


class CrossEncoderLabeler:
    """A loaded student: ``predict`` gives expected grades (0-3) and discrete grades."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int, thresholds: Sequence[float]) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.thresholds = list(thresholds)

    @classmethod
    def load(cls, directory: Path) -> CrossEncoderLabeler:
        """Load a checkpoint written by ``train_cross_encoder``."""
        meta = json.loads((directory / STUDENT_CONFIG_FILE).read_text())
        model = AutoModelForSequenceClassification.from_pretrained(str(directory))
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        return cls(model, tokenizer, meta["max_length"], meta["thresholds"])

    def scores(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Expected grade in [0, 3] per pair; batches sorted by length to cut padding."""
        order = sorted(range(len(queries)), key=lambda i: len(queries[i]) + len(docs[i]))
        out = np.zeros(len(queries), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = encode(self.tokenizer, queries, docs, idx, self.max_length)
                logits = self.model(**batch).logits.squeeze(-1)
                out[idx] = (3.0 * torch.sigmoid(logits)).double().numpy()
        return out

    def predict(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(expected grades, discrete grades)."""
        scores = self.scores(queries, docs)
        return scores, apply_thresholds(scores, self.thresholds)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_cross_encoder(rows: Sequence[dict[str, Any]], config: StudentConfig, out_dir: Path) -> dict[str, Any]:
    """Fine-tune on rows (qid, query_text, title, doc_text, grade, expected_grade) and save to ``out_dir``.

    Regression of the teacher's expected grade (a soft target when the teacher gave probabilities),
    validation split by query, best epoch kept by validation kappa against the teacher.
    """
    if not rows:
        raise ValueError("no training rows: the teacher produced no usable labels")
    _seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(config.base_model, num_labels=1)
    train_idx, val_idx = query_group_split(rows, config.val_fraction, config.seed)
    queries = [r["query_text"] for r in rows]
    docs = [pair_text(r) for r in rows]
    targets = torch.tensor([float(r["expected_grade"]) / 3.0 for r in rows])
    grades = np.array([int(r["grade"]) for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    labeler = CrossEncoderLabeler(model, tokenizer, config.max_length, [0.75, 1.5, 2.25])
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    started = time.perf_counter()
    generator = random.Random(config.seed)
    for epoch in range(config.epochs):
        model.train()
        order = train_idx[:]
        generator.shuffle(order)
        losses = []
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch = encode(tokenizer, queries, docs, idx, config.max_length)
            predicted = torch.sigmoid(model(**batch).logits.squeeze(-1))
            loss = torch.nn.functional.mse_loss(predicted, targets[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        if val_idx:
            # thresholds come from the validation scores and the training grade shares: no teacher grade of
            # a validation pair is used before it is compared
            val_scores = labeler.scores([queries[i] for i in val_idx], [docs[i] for i in val_idx])
            val_grades = apply_thresholds(val_scores, fit_thresholds(val_scores, grades[train_idx]))
            kappa = cohen_kappa_score(grades[val_idx], val_grades, labels=[0, 1, 2, 3])
            record["val_kappa_vs_teacher"] = float(kappa)
            record["val_mse"] = float(np.mean((val_scores / 3 - targets[val_idx].numpy()) ** 2))
            score = -record["val_mse"] if np.isnan(kappa) else record["val_kappa_vs_teacher"]
            if best is None or score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append(record)
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    thresholds = fit_thresholds(labeler.scores(queries, docs), grades)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    meta = {
        **asdict(config),
        "thresholds": thresholds,
        "history": history,
        "train_rows": len(train_idx),
        "val_rows": len(val_idx),
        "train_seconds": time.perf_counter() - started,
    }
    (out_dir / STUDENT_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return meta
