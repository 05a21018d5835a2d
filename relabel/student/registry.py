"""The recipe registry: ``train_student`` and ``load_student`` dispatch on a checkpoint's recipe to the module
that implements it, imported only when used (torch and transformers load on demand)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relabel.student.base import (
    Labeler,
    StudentConfig,
    activation_bytes_per_pair,
    free_gpu_bytes,
    inference_batch_size,
    parent_checkpoint,
    read_meta,
)

# recipe -> (module, training function, labeler class)
RECIPE_MODULES: dict[str, tuple[str, str, str]] = {
    "bi-encoder": ("relabel.student.bi_encoder", "train_bi_encoder", "BiEncoderLabeler"),
    "cross-encoder": ("relabel.student.cross_encoder", "train_cross_encoder", "CrossEncoderLabeler"),
    "slm": ("relabel.student.slm", "train_slm", "SLMLabeler"),
}


def recipe_attribute(recipe: str | None, position: int) -> Any:
    """The training function (1) or labeler class (2) of ``recipe``; checkpoints written before recipes were
    recorded are cross-encoders."""
    module, *names = RECIPE_MODULES[recipe or "cross-encoder"]
    return getattr(importlib.import_module(module), names[position - 1])


def train_student(rows: Sequence[dict[str, Any]], config: StudentConfig, out_dir: Path) -> dict[str, Any]:
    """Train the configured recipe on rows (qid, query_text, title, doc_text, grade, expected_grade and
    optionally p0-p3) and save the checkpoint to ``out_dir``; returns its metadata."""
    if not rows:
        raise ValueError("no training rows: the teacher produced no usable labels")
    parent_checkpoint(config)  # a wrong --init-from fails before any training
    out_dir.mkdir(parents=True, exist_ok=True)
    return recipe_attribute(config.recipe, 1)(rows, config, out_dir)


def load_student(directory: Path, batch_size: int = 0) -> Labeler:
    """Load any checkpoint written by ``train_student``; its inference batch is ``batch_size`` when given, else
    sized from free GPU memory on a GPU (``inference_batch_size``), else the recipe's default."""
    recipe = read_meta(directory).get("recipe")
    labeler = recipe_attribute(recipe, 2).load(Path(directory))
    model = labeler.model
    per_pair = activation_bytes_per_pair(model.config, labeler.max_length, causal=recipe == "slm")
    labeler.batch_size = inference_batch_size(labeler.batch_size, batch_size, per_pair, free_gpu_bytes(model.device))
    return labeler
