"""The student: a small model distilled from the teacher's grades. ``base`` holds what every recipe shares,
``registry`` dispatches ``train_student`` / ``load_student`` on the recipe, and one module per recipe:
``bi_encoder`` (MiniLM-L6 embeddings with a cosine grade head, the default), ``cross_encoder`` (MiniLM-L6 with
a 4-grade head) and ``slm`` (a causal LM fine-tuned with trl to answer the grade digit). All give a
probability per grade; the expected grade is the score, and grades come from thresholds fitted so the
student's grade shares match the teacher's (no human labels involved)."""

from relabel.student.base import Labeler, StudentConfig, model_card, pair_text, read_meta, torch_device
from relabel.student.registry import load_student, train_student

__all__ = [
    "Labeler",
    "StudentConfig",
    "load_student",
    "model_card",
    "pair_text",
    "read_meta",
    "torch_device",
    "train_student",
]
