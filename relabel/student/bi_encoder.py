"""Bi-encoder recipe: MiniLM-L6 embeds the query and the document separately (mean pooling, unit length);
a 4-grade head reads their cosine (logit_g = scale_g * cosine + bias_g). Fine-tuned end to end on the
teacher's grade distribution, it starts from the pretrained embedding's notion of relatedness, which
carries over to unseen queries better than a cross-encoder trained on a few queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

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

HEAD_LEARNING_RATE = 1e-2


class CosineGradeHead(torch.nn.Module):
    """Grade logits from a cosine: ``scale_g * cosine + bias_g``, initialised so higher cosine means a higher
    grade (grades change every 0.15 of cosine from 0.15 up)."""

    def __init__(self) -> None:
        super().__init__()
        grades = torch.arange(4, dtype=torch.float32)
        self.scale = torch.nn.Parameter(10.0 * grades)
        self.bias = torch.nn.Parameter(-10.0 * 0.15 * grades * (grades + 1) / 2)

    def forward(self, cosine: torch.Tensor) -> torch.Tensor:
        return cosine.unsqueeze(-1) * self.scale + self.bias


def embed(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
    """Unit-length mean-pooled embeddings (dynamic padding)."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(
        model.device
    )
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


class BiEncoderLabeler(Labeler):
    """A loaded bi-encoder student; each distinct query and document is embedded once."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        head: CosineGradeHead,
        max_length: int,
        thresholds: Sequence[float],
        batch_size: int = 64,
        precision: str = "auto",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.head = head.eval()
        self.max_length = max_length
        self.thresholds = list(thresholds)
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def load(cls, directory: Path) -> BiEncoderLabeler:
        """Load a checkpoint written by ``train_bi_encoder``."""
        meta = read_meta(directory)
        device = torch_device()
        return cls(
            AutoModel.from_pretrained(str(directory), dtype=torch.float32).to(device),
            AutoTokenizer.from_pretrained(str(directory)),
            load_head(meta).to(device),
            meta["max_length"],
            meta["thresholds"],
            precision=meta.get("precision", "auto"),
        )

    def embeddings(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Embedding of every distinct text, in length-sorted batches."""
        distinct = sorted(set(texts), key=len)
        out: dict[str, torch.Tensor] = {}
        with torch.inference_mode(), autocast(self.model.device, self.precision):
            for start in range(0, len(distinct), self.batch_size):
                chunk = distinct[start : start + self.batch_size]
                vectors = embed(self.model, self.tokenizer, chunk, self.max_length).float()
                out.update(zip(chunk, vectors, strict=True))
        return out

    def probabilities(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n, 4) grade probabilities from the cosine of each pair."""
        if not queries:
            return np.zeros((0, 4))
        query_vectors, doc_vectors = self.embeddings(queries), self.embeddings(docs)
        with torch.inference_mode():
            query_matrix = torch.stack([query_vectors[q] for q in queries])
            cosine = (query_matrix * torch.stack([doc_vectors[d] for d in docs])).sum(-1)
            return torch.softmax(self.head(cosine), dim=-1).double().cpu().numpy()


def load_head(meta: dict[str, Any]) -> CosineGradeHead:
    """The trained cosine grade head stored in a checkpoint's ``relabel_student.json``."""
    head = CosineGradeHead()
    head.load_state_dict({k: torch.tensor(v) for k, v in meta["head"].items()})
    return head


def train_bi_encoder(rows: Sequence[dict[str, Any]], config: StudentConfig, out_dir: Path) -> dict[str, Any]:
    """Fine-tune encoder and head on the teacher's grade distribution (cross-entropy, plus margin-MSE on
    same-query expected-grade gaps when ``rank_weight`` > 0; validation split by query, early stopping on
    validation kappa with the teacher) and save to ``out_dir``. With ``init_from``, encoder and head start from
    that checkpoint."""
    seed_everything(config.seed)
    start = config.init_from or resolve_encoder(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(start)
    device = torch_device()
    model = AutoModel.from_pretrained(start, dtype=torch.float32).to(device)
    head = (load_head(read_meta(Path(config.init_from))) if config.init_from else CosineGradeHead()).to(device)
    queries, docs, targets, grades, (train_idx, val_idx) = encoder_inputs(rows, config)
    targets = targets.to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": config.learning_rate, "weight_decay": 0.01},
            {"params": head.parameters(), "lr": HEAD_LEARNING_RATE, "weight_decay": 0.0},
        ]
    )
    labeler = BiEncoderLabeler(model, tokenizer, head, config.max_length, [0.75, 1.5, 2.25], precision=config.precision)
    qids = [str(r["qid"]) for r in rows]
    grade_values = torch.arange(4, dtype=torch.float32, device=device)

    def batch_loss(idx: list[int]) -> torch.Tensor:
        batch_queries = [queries[i] for i in idx]
        distinct = list(dict.fromkeys(batch_queries))
        query_vectors = embed(model, tokenizer, distinct, config.max_length)
        position = {q: n for n, q in enumerate(distinct)}
        query_matrix = query_vectors[[position[q] for q in batch_queries]]
        cosine = (query_matrix * embed(model, tokenizer, [docs[i] for i in idx], config.max_length)).sum(-1)
        log_probs = torch.log_softmax(head(cosine.float()), dim=-1)
        loss = -(targets[idx] * log_probs).sum(-1).mean()
        if config.rank_weight:
            expected = log_probs.exp() @ grade_values
            loss = loss + config.rank_weight * margin_mse(expected, targets[idx] @ grade_values, [qids[i] for i in idx])
        return loss

    return fit_and_save(
        [model, head],
        optimizer,
        batch_loss,
        labeler,
        (queries, docs),
        grades,
        (train_idx, val_idx),
        config,
        tokenizer,
        out_dir,
        lambda: {"head": {k: v.cpu().tolist() for k, v in head.state_dict().items()}},
        qids,
    )
