"""The cross-encoder student: training changes weights, save/load reproduces labels, thresholds."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from relabel.models import minilm_dir
from relabel.student import (
    CrossEncoderLabeler,
    StudentConfig,
    apply_thresholds,
    fit_thresholds,
    query_group_split,
    train_cross_encoder,
)

ROWS = [
    {"qid": f"q{i % 4}", "query_text": q, "title": t, "doc_text": d, "grade": g, "expected_grade": float(g)}
    for i, (q, t, d, g) in enumerate(
        [
            ("vpn setup", "VPN guide", "Install GlobalProtect and sign in.", 3),
            ("vpn setup", "Parental leave", "26 weeks of leave.", 0),
            ("hotel limit", "Travel policy", "Hotel limit is 180 GBP.", 3),
            ("hotel limit", "Kafka runbook", "Scale the consumer group.", 0),
            ("kafka lag", "Kafka runbook", "Scale the consumer group when lag grows.", 2),
            ("kafka lag", "VPN guide", "Install GlobalProtect.", 1),
            ("leave weeks", "Parental leave", "26 weeks of leave at full pay.", 3),
            ("leave weeks", "Travel policy", "Hotel limit.", 1),
        ]
    )
]


@pytest.mark.unit
def test_thresholds_match_teacher_grade_shares() -> None:
    scores = np.linspace(0, 3, 100)
    grades = np.repeat([0, 1, 2, 3], 25)
    predicted = apply_thresholds(scores, fit_thresholds(scores, grades))
    assert np.bincount(predicted, minlength=4).tolist() == [25, 25, 25, 25]


@pytest.mark.unit
def test_validation_split_never_shares_a_query() -> None:
    rows = [{"qid": f"q{i}"} for i in range(10) for _ in range(3)]
    train, val = query_group_split(rows, 0.2, seed=1)
    assert val and not {rows[i]["qid"] for i in train} & {rows[i]["qid"] for i in val}


@pytest.mark.integration
def test_tiny_training_changes_weights_and_round_trips(tmp_path: Path) -> None:
    base = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=1)
    before = base.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    meta = train_cross_encoder(
        ROWS,
        StudentConfig(base_model=str(minilm_dir()), epochs=1, batch_size=4, max_length=64, val_fraction=0.25),
        tmp_path / "ckpt",
    )
    assert meta["history"][0]["train_loss"] > 0 and len(meta["thresholds"]) == 3
    labeler = CrossEncoderLabeler.load(tmp_path / "ckpt")
    after = labeler.model.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(before, after), "training must change the encoder weights"
    queries, docs = [r["query_text"] for r in ROWS], [f"{r['title']}. {r['doc_text']}" for r in ROWS]
    scores, grades = labeler.predict(queries, docs)
    again_scores, again_grades = CrossEncoderLabeler.load(tmp_path / "ckpt").predict(queries, docs)
    assert np.array_equal(scores, again_scores) and np.array_equal(grades, again_grades)
    assert ((scores >= 0) & (scores <= 3)).all()
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
