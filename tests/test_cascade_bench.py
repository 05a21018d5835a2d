"""bench/cascade_bench.py on a synthetic student and teacher (no benchmark folder needed): the curve's ends are
the student alone and the teacher alone, uncertainty routing finds the pairs the student gets wrong, the
random slice is reported, and the variant is chosen by agreement with the teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_bench

pytestmark = pytest.mark.unit


def synthetic_frame(n_queries: int = 4, per_query: int = 50, seed: int = 0) -> pd.DataFrame:
    """A perfect teacher (= NIST) and a student that is confident and right on 80% of the pairs, unsure (uniform
    distribution) and wrong on the other 20%."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        for d in range(per_query):
            human = int(rng.integers(0, 4))
            unsure = rng.random() < 0.2
            p = np.full(4, 0.25) if unsure else np.eye(4)[human] * 0.97 + 0.01
            grade = (human + 2) % 4 if unsure else human
            rows.append(
                {
                    "qid": f"q{q}",
                    "doc_id": f"d{q}-{d}",
                    "split": "test-a",
                    "human": human,
                    "teacher": human,
                    "teacher_score": float(human),
                    "student_grade": grade,
                    "student_score": float(p @ np.arange(4)),
                    **{f"p{g}": p[g] for g in range(4)},
                    "thresholds": [0.5, 1.5, 2.5],
                    "labels_per_s": 100.0,
                }
            )
    return pd.DataFrame(rows)


def test_cascade_curve_ends_and_uncertainty_beats_random(tmp_path: Path) -> None:
    bench, scale = load_bench("cascade_bench"), load_bench("scale_bench")
    frame = synthetic_frame()
    table = bench.cascade_table(
        frame,
        "teacher",
        "teacher_score",
        scale.labeler_metrics,
        usd_per_teacher_pair=0.001,
        seeds=3,
        shares=(0.0, 0.2, 0.3, 1.0),
        random_share=0.1,
    )
    assert set(table["policy"]) == {"uncertainty (entropy)", "uncertainty (margin)", "random (3 seeds)"}
    student_kappa = scale.labeler_metrics(frame, "student_grade", "student_score")["kappa"]
    for _, row in table[table["share"] == 0.0].iterrows():
        assert row["kappa"] == pytest.approx(student_kappa) and row["teacher_pairs"] == 0
    assert np.allclose(table[table["share"] == 1.0]["kappa"], 1.0)
    assert table[table["share"] == 1.0]["usd"].iloc[0] == pytest.approx(200 * 0.001 + 200 / 100 * 0.10 / 3600)
    entropy = table[(table["policy"] == "uncertainty (entropy)") & (table["share"] == 0.3)].iloc[0]
    random = table[(table["policy"] == "random (3 seeds)") & (table["share"] == 0.3)].iloc[0]
    # 30% routed with a 10% random slice covers every unsure (wrong) pair: the cascade equals the teacher
    assert entropy["kappa"] == pytest.approx(1.0) and entropy["agree_rest"] == pytest.approx(1.0)
    assert random["kappa"] < 0.95
    assert entropy["random_slice"] == 6 and entropy["teacher_pairs"] == 60
    assert bench.choose_variant(table) in {"uncertainty (entropy)", "uncertainty (margin)"}
    from relabel.evaluation.plots import cascade_curve_plot

    assert cascade_curve_plot(table).startswith(b"\x89PNG\r\n\x1a\n")
    notes = bench.targets(table, "uncertainty (entropy)")
    assert "closes" in notes[0] and "(target >= 50%: met)" in notes[0]
    assert "beats random (3 seeds) at 2/2 inner shares" in notes[1]


def test_variant_is_chosen_by_agreement_with_the_teacher_not_nist() -> None:
    bench = load_bench("cascade_bench")
    table = pd.DataFrame(
        [
            {"policy": "uncertainty (entropy)", "share": 0.2, "agree_rest": 0.70, "kappa": 0.10},
            {"policy": "uncertainty (margin)", "share": 0.2, "agree_rest": 0.60, "kappa": 0.90},
            {"policy": "uncertainty (margin)", "share": 0.0, "agree_rest": 0.99, "kappa": 0.90},
        ]
    )
    assert bench.choose_variant(table) == "uncertainty (entropy)"


def test_records_without_probabilities_route_by_margin_only(tmp_path: Path) -> None:
    bench = load_bench("cascade_bench")
    path = tmp_path / "predictions.jsonl"
    records = [
        {
            "protocol": "transfer",
            "split": "test-a",
            "config": {},
            "thresholds": [0.5, 1.5, 2.5],
            "labels_per_s": 50.0,
            "pairs": [["q1", "d1", 1.4, 1], ["q1", "d2", 2.9, 3]],
        },
        {
            "protocol": "transfer",
            "split": "test-a",
            "config": {"epochs": 0},
            "thresholds": [0, 1, 2],
            "pairs": [["q1", "d1", 0.1, 0, 0.9, 0.1, 0.0, 0.0]],
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    chosen = bench.read_records(path, "transfer", {})
    assert len(chosen) == 1 and chosen[0]["config"] == {}
    frame = bench.student_frame(chosen)
    assert frame[["p0", "p1", "p2", "p3"]].isna().all().all()
    assert list(frame["student_grade"]) == [1, 3]
    base = bench.student_frame(bench.read_records(path, "transfer", {"epochs": 0}))
    assert base["p0"].iloc[0] == pytest.approx(0.9)


def test_disagreement_routing_is_cross_fitted_on_other_splits() -> None:
    bench, scale = load_bench("cascade_bench"), load_bench("scale_bench")
    # two "years"; the student is wrong on its high expected grades while looking confident everywhere
    parts = []
    for split, seed in (("Y1", 1), ("Y2", 2)):
        frame = synthetic_frame(seed=seed).assign(split=split)
        frame["doc_id"] = split + frame["doc_id"]
        rng = np.random.default_rng(seed)
        frame["student_score"] = rng.uniform(0, 3, len(frame))
        frame[["p0", "p1", "p2", "p3"]] = [0.97, 0.01, 0.01, 0.01]
        wrong = frame["student_score"] > 2.6  # ~13% of the pairs, inside a 20% budget
        frame["student_grade"] = np.where(wrong, (frame["teacher"] + 1) % 4, frame["teacher"])
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True)
    models = bench.fit_models(frame, "teacher", ["Y1", "Y2"], cross_fit=True)
    assert set(models) == {"Y1", "Y2"} and models["Y1"] is not models["Y2"]
    assert models["Y1"].uses_probabilities
    # a target without p0..p3 (older predictions) gets a model that does not need them
    plain = bench.fit_models(frame, "teacher", ["T"], cross_fit=False, use_probabilities=False)
    assert not plain["T"].uses_probabilities
    table = bench.cascade_table(
        frame,
        "teacher",
        "teacher_score",
        scale.labeler_metrics,
        0.001,
        seeds=2,
        shares=(0.0, 0.2, 1.0),
        random_share=0.0,
        models=models,
    )
    learned = table[(table["policy"] == "uncertainty (disagreement)") & (table["share"] == 0.2)].iloc[0]
    entropy = table[(table["policy"] == "uncertainty (entropy)") & (table["share"] == 0.2)].iloc[0]
    assert learned["agree_rest"] == pytest.approx(1.0) and entropy["agree_rest"] < 0.95
    assert bench.choose_variant(table) == "uncertainty (disagreement)"
