"""Cross-encoder recipe: MiniLM-L6 reads (query, document) together; a 4-grade head trained on the teacher's
grade distribution (``soft``) or one output regressing the expected grade (``regression``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from relabel.models import resolve_encoder
from relabel.student.base import (
    Labeler,
    StudentConfig,
    autocast,
    encoder_inputs,
    fit_and_save,
    margin_mse,
    read_meta,
    seed_everything,
    torch_device,
)


def encode(
    tokenizer: Any, queries: Sequence[str], docs: Sequence[str], idx: Sequence[int], max_length: int, device: Any
) -> Any:
    """A dynamically padded batch of (query, document) pairs."""
    return tokenizer(
        [queries[i] for i in idx],
        [docs[i] for i in idx],
        padding=True,
        truncation="only_second",
        max_length=max_length,
        return_tensors="pt",
    ).to(device)


def head_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(n, 4) grade probabilities from the head: softmax of 4 logits, or for one regression output the
    expected grade 3*sigmoid(x) spread over its two neighbouring grades (so its mean is that grade)."""
    if logits.shape[-1] == 4:
        return torch.softmax(logits, dim=-1)
    grade = 3.0 * torch.sigmoid(logits.squeeze(-1))
    low = torch.clamp(grade.floor(), max=2.0)
    upper_share = grade - low
    probabilities = torch.zeros(len(grade), 4, dtype=logits.dtype, device=logits.device)
    probabilities.scatter_(1, low.long().unsqueeze(1), (1 - upper_share).unsqueeze(1))
    probabilities.scatter_add_(1, (low.long() + 1).unsqueeze(1), upper_share.unsqueeze(1))
    return probabilities


def set_inference_threads(threads: int = 0) -> None:
    """Intra-op threads: ``threads``, or every core when 0 (torch's default can be lower inside worker processes)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    torch.set_num_threads(threads if threads > 0 else max(1, cores))


class CrossEncoderLabeler(Labeler):
    """A loaded cross-encoder student."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int,
        thresholds: Sequence[float],
        batch_size: int = 32,
        precision: str = "auto",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.thresholds = list(thresholds)
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def load(cls, directory: Path) -> CrossEncoderLabeler:
        """Load a checkpoint written by ``train_cross_encoder``."""
        meta = read_meta(directory)
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        return cls(
            model.to(torch_device()),
            tokenizer,
            meta["max_length"],
            meta["thresholds"],
            precision=meta.get("precision", "auto"),
        )

    def probabilities(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n, 4) grade probabilities; batches sorted by length to cut padding, no autograd."""
        order = sorted(range(len(queries)), key=lambda i: len(queries[i]) + len(docs[i]))
        out = np.zeros((len(queries), 4), dtype=np.float64)
        with torch.inference_mode(), autocast(self.model.device, self.precision):
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = encode(self.tokenizer, queries, docs, idx, self.max_length, self.model.device)
                out[idx] = head_probabilities(self.model(**batch).logits.float()).double().cpu().numpy()
        return out


def _loss(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    """Cross-entropy against the target distribution (soft) or MSE on the expected grade / 3."""
    if objective == "soft":
        return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    expected = targets @ torch.arange(4, dtype=targets.dtype, device=targets.device) / 3.0
    return torch.nn.functional.mse_loss(torch.sigmoid(logits.squeeze(-1)), expected)


def train_cross_encoder(rows: Sequence[dict[str, Any]], config: StudentConfig, out_dir: Path) -> dict[str, Any]:
    """Fine-tune on the teacher's labels (plus margin-MSE on same-query expected-grade gaps when ``rank_weight``
    > 0; validation split by query, early stopping on validation kappa with the teacher) and save to
    ``out_dir`` in Hugging Face format. With ``init_from``, training starts from that checkpoint."""
    seed_everything(config.seed)
    start = config.init_from or resolve_encoder(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(start)
    device = torch_device()
    model = AutoModelForSequenceClassification.from_pretrained(
        start, num_labels=4 if config.objective == "soft" else 1, dtype=torch.float32
    ).to(device)
    queries, docs, targets, grades, (train_idx, val_idx) = encoder_inputs(rows, config)
    targets = targets.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    labeler = CrossEncoderLabeler(model, tokenizer, config.max_length, [0.75, 1.5, 2.25], precision=config.precision)
    qids = [str(r["qid"]) for r in rows]
    grade_values = torch.arange(4, dtype=torch.float32, device=device)

    def batch_loss(idx: list[int]) -> torch.Tensor:
        batch = encode(tokenizer, queries, docs, idx, config.max_length, device)
        logits = model(**batch).logits.float()
        loss = _loss(logits, targets[idx], config.objective)
        if config.rank_weight:
            expected = head_probabilities(logits) @ grade_values
            loss = loss + config.rank_weight * margin_mse(expected, targets[idx] @ grade_values, [qids[i] for i in idx])
        return loss

    return fit_and_save(
        [model],
        optimizer,
        batch_loss,
        labeler,
        (queries, docs),
        grades,
        (train_idx, val_idx),
        config,
        tokenizer,
        out_dir,
        qids=qids,
    )
