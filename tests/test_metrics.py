"""Agreement metrics on hand-computed cases."""

import math

import pandas as pd
import pytest

from relabel.metrics import agreement, grade_confusion, pairwise_accuracy, ranking_agreement
from relabel.report import agreement_table

pytestmark = pytest.mark.unit


def test_identical_labels_give_kappa_one() -> None:
    m = agreement([0, 1, 2, 3, 2], [0, 1, 2, 3, 2])
    assert m["cohen_kappa"] == 1 and m["quadratic_kappa"] == 1 and m["exact_accuracy"] == 1
    assert m["krippendorff_alpha"] == pytest.approx(1.0)


def test_constant_labeler_gives_kappa_zero() -> None:
    assert agreement([0, 1, 2, 3], [2, 2, 2, 2])["cohen_kappa"] == 0


def test_known_confusion_matrix_kappa() -> None:
    # 2x2 case: human = [1,1,1,1,0,0,0,0,0,0], labeler agrees on 3 ones and 5 zeros
    human = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    labeler = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    # po = 0.8, pe = 0.4*0.4 + 0.6*0.6 = 0.52, kappa = 0.28/0.48
    assert agreement(human, labeler)["cohen_kappa"] == pytest.approx(0.28 / 0.48)
    assert grade_confusion(human, labeler)[1][:2] == [1, 3]


def test_pairwise_accuracy_counts_ties_half() -> None:
    acc, pairs = pairwise_accuracy([2, 1, 0], [0.9, 0.5, 0.5])
    assert pairs == 3 and acc == pytest.approx((1 + 1 + 0.5) / 3)


def test_ranking_agreement_perfect_and_reversed() -> None:
    frame = pd.DataFrame({"qid": ["a"] * 3, "human": [3, 1, 0], "score": [2.0, 1.0, 0.0]})
    assert ranking_agreement(frame)["ndcg@10"] == pytest.approx(1.0)
    reversed_ = ranking_agreement(frame.assign(score=[0.0, 1.0, 2.0]))
    assert reversed_["pairwise_accuracy"] == 0 and reversed_["ndcg@10"] < 0.7


def test_agreement_table_has_teacher_student_rows() -> None:
    human = pd.DataFrame({"qid": ["a", "a", "b", "b"], "doc_id": ["x", "y", "x", "z"], "grade": [3, 0, 1, 2]})
    base = human.assign(pair_source="benchmark", status="ok", latency_s=0.5)
    labels = pd.concat(
        [
            base.assign(labeler_id="teacher:m", role="teacher", expected_grade=base["grade"].astype(float)),
            base.assign(
                labeler_id="student:1", role="student", grade=[2, 0, 1, 2], expected_grade=[2.0, 0.1, 1.0, 2.2]
            ),
        ]
    )
    table = agreement_table(human, labels).set_index(["labeler_id", "reference"])
    assert table.loc[("teacher:m", "human"), "cohen_kappa"] == 1
    assert table.loc[("teacher:m", "human"), "labels_per_s"] == pytest.approx(2.0)
    assert table.loc[("student:1", "teacher:m"), "n_pairs"] == 4
    assert not math.isnan(table.loc[("student:1", "human"), "pairwise_accuracy"])
