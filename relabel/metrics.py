"""Agreement between a labeler and human judges (names as in DESIGN.md section 6)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, ndcg_score

GRADE_LABELS = [0, 1, 2, 3]


def _kappa(a: np.ndarray, b: np.ndarray, weights: str | None = None) -> float:
    if len(a) == 0:
        return float("nan")
    if len(set(a) | set(b)) == 1:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(cohen_kappa_score(a, b, labels=GRADE_LABELS, weights=weights))


def pairwise_accuracy(human: Sequence[int], score: Sequence[float]) -> tuple[float, int]:
    """Share of document pairs with different human grades that ``score`` orders the same way
    (a tie in ``score`` counts one half); returns (accuracy, number of pairs)."""
    agree, pairs = 0.0, 0
    for (h1, s1), (h2, s2) in combinations(zip(human, score, strict=True), 2):
        if h1 == h2:
            continue
        pairs += 1
        if s1 == s2:
            agree += 0.5
        elif (h1 > h2) == (s1 > s2):
            agree += 1.0
    return (agree / pairs if pairs else float("nan")), pairs


def ranking_agreement(frame: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Mean per-query nDCG@k (labeler score ranks the judged docs, human grades are gains) and
    pairwise accuracy over all within-query pairs. Needs columns qid, human, score."""
    ndcgs: list[float] = []
    agree_total, pair_total = 0.0, 0
    for _, group in frame.groupby("qid", sort=True):
        human = group["human"].to_numpy()
        score = group["score"].to_numpy(dtype=float)
        if len(group) > 1 and human.max() > 0:
            ndcgs.append(float(ndcg_score([human], [score], k=k)))
        accuracy, pairs = pairwise_accuracy(human.tolist(), score.tolist())
        if pairs:
            agree_total += accuracy * pairs
            pair_total += pairs
    return {
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else float("nan"),
        "pairwise_accuracy": agree_total / pair_total if pair_total else float("nan"),
    }


def agreement(human: Sequence[int], labeler: Sequence[int]) -> dict[str, float]:
    """Grade agreement: Cohen's kappa, quadratic-weighted kappa, binary kappa (grade >= 2),
    exact accuracy and Krippendorff's ordinal alpha."""
    h = np.asarray(human, dtype=int)
    lab = np.asarray(labeler, dtype=int)
    alpha = float("nan")
    if len(h) and len(set(h) | set(lab)) > 1:
        alpha = float(
            krippendorff.alpha(
                np.vstack([h, lab]).astype(float), level_of_measurement="ordinal", value_domain=GRADE_LABELS
            )
        )
    return {
        "n_pairs": float(len(h)),
        "cohen_kappa": _kappa(h, lab),
        "quadratic_kappa": _kappa(h, lab, "quadratic"),
        "binary_kappa": _kappa((h >= 2).astype(int), (lab >= 2).astype(int)),
        "exact_accuracy": float(accuracy_score(h, lab)) if len(h) else float("nan"),
        "krippendorff_alpha": alpha,
    }


def grade_confusion(human: Sequence[int], labeler: Sequence[int]) -> list[list[int]]:
    """4x4 confusion matrix, rows = human grade, columns = labeler grade."""
    return confusion_matrix(human, labeler, labels=GRADE_LABELS).tolist()
