"""The cost dial: the student labels every pair, the teacher re-grades the pairs a routing policy picks.

Policies rank pairs for the teacher:

- ``random``: a seeded random order (today's behaviour of the inbox sample);
- ``uncertainty``: the student's own doubt, in one of two variants: ``entropy`` of its grade distribution
  (p0..p3; needs probabilities), or ``margin``: how close its expected grade lies to the nearest grade
  threshold (a pair on a cut point could fall either way); or the ``disagreement`` variant (the issue's
  optional "disagreement-prone" policy): a logistic regression over those features, fitted on the
  student-teacher disagreements seen so far (``fit_disagreement``).

A budget (a share of the pairs, a number of pairs, or USD at a price per teacher call; the tightest wins) caps
how many pairs go to the teacher. Under ``uncertainty`` a slice of that budget (``random_share``) is still
drawn at random from all pairs, so the student–teacher agreement measured there stays an unbiased estimate
for the retrain trigger; the routing says how large that slice is. The final label is the teacher's where
the teacher was asked and answered, else the student's, with provenance: labeler kind, routing reason and
routing score (higher = more unsure; for ``margin`` it is minus the distance to the nearest threshold).

Pure logic, no Dagster import.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

POLICIES = ("random", "uncertainty")
VARIANTS = ("entropy", "margin", "disagreement")
# routing reasons: why a pair went to the teacher (or stayed with the student)
REASON_RANDOM = "random"
REASON_RANDOM_SLICE = "random_slice"
REASON_UNCERTAIN = "uncertain"
REASON_STUDENT = "student"
REASON_TEACHER_MISSING = "teacher_missing"


def budget_pairs(
    n_pairs: int,
    share: float | None = None,
    usd: float | None = None,
    usd_per_pair: float | None = None,
    max_pairs: int | None = None,
) -> int:
    """How many of ``n_pairs`` the teacher may grade: the tightest of ``ceil(share * n)``, ``floor(usd /
    usd_per_pair)`` and ``max_pairs``; all pairs when no cap is given."""
    caps = [n_pairs]
    if share is not None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"teacher share must be within [0, 1], got {share}")
        caps.append(math.ceil(share * n_pairs - 1e-9))
    if usd is not None:
        if usd < 0:
            raise ValueError(f"teacher budget must be >= 0 USD, got {usd}")
        if usd_per_pair is None or usd_per_pair <= 0:
            raise ValueError("a USD budget needs a positive usd_per_pair")
        caps.append(math.floor(usd / usd_per_pair + 1e-9))
    if max_pairs is not None:
        caps.append(max(0, int(max_pairs)))
    return max(0, min(caps))


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of an (n, k) probability matrix; rows are renormalized."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def threshold_distance(expected: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Distance of each expected grade from the nearest grade threshold (its margin)."""
    cuts = np.asarray(thresholds, dtype=np.float64)
    if cuts.size == 0:
        raise ValueError("margin routing needs the student's grade thresholds")
    return np.abs(np.asarray(expected, dtype=np.float64)[:, None] - cuts[None, :]).min(axis=1)


def student_features(
    expected: np.ndarray, thresholds: Sequence[float], probabilities: np.ndarray | None = None
) -> np.ndarray:
    """What a disagreement model sees of each pair: expected grade, minus its threshold margin, and (when given)
    the entropy and p0..p3 of the grade distribution."""
    expected = np.asarray(expected, dtype=np.float64)
    columns = [expected, -threshold_distance(expected, thresholds)]
    if probabilities is not None:
        columns += [entropy(probabilities), *np.asarray(probabilities, dtype=np.float64).T]
    return np.column_stack(columns)


@dataclass(frozen=True)
class DisagreementModel:
    """P(teacher's grade != student's grade) from ``student_features``: a logistic regression (scikit-learn)
    fitted on pairs where both graded (``disagreement-prone`` routing)."""

    pipeline: Any
    uses_probabilities: bool

    def scores(
        self, expected: np.ndarray, thresholds: Sequence[float], probabilities: np.ndarray | None = None
    ) -> np.ndarray:
        """Predicted disagreement probability per pair (higher = route first)."""
        features = student_features(expected, thresholds, probabilities if self.uses_probabilities else None)
        return self.pipeline.predict_proba(features)[:, 1]


def fit_disagreement(features: np.ndarray, disagreed: np.ndarray) -> DisagreementModel:
    """Fit the disagreement model on ``student_features`` rows and whether student and teacher disagreed."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    disagreed = np.asarray(disagreed, dtype=int)
    if len(set(disagreed.tolist())) < 2:
        raise ValueError("a disagreement model needs pairs where student and teacher agree and disagree")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(features, disagreed)
    return DisagreementModel(pipeline, uses_probabilities=features.shape[1] > 2)


def uncertainty_scores(
    variant: str,
    probabilities: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
    model: DisagreementModel | None = None,
) -> np.ndarray:
    """Per-pair uncertainty, higher = less sure: entropy of p0..p3, minus the threshold margin, or the predicted
    disagreement with the teacher (``model``)."""
    if variant == "disagreement":
        if model is None or expected is None or thresholds is None:
            raise ValueError("disagreement routing needs a fitted model, expected grades and thresholds")
        return model.scores(expected, thresholds, probabilities)
    if variant == "entropy":
        if probabilities is None:
            raise ValueError("entropy routing needs the student's grade probabilities")
        return entropy(probabilities)
    if variant == "margin":
        if expected is None or thresholds is None:
            raise ValueError("margin routing needs the student's expected grades and thresholds")
        return -threshold_distance(expected, thresholds)
    raise ValueError(f"unknown uncertainty variant {variant!r} (choose from {VARIANTS})")


def random_order(n_pairs: int, seed: int, keys: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """A seeded random permutation of ``range(n_pairs)``. With ``keys`` (one tuple of strings per pair) the
    order is by seeded sha256 of the key, so a pair's rank does not depend on the input order (the same rule as
    the inbox teacher sample)."""
    if keys is None:
        return np.random.default_rng(seed).permutation(n_pairs)
    if len(keys) != n_pairs:
        raise ValueError("one key per pair")
    digests = [hashlib.sha256(f"{seed}\x00{chr(0).join(key)}".encode()).hexdigest() for key in keys]
    return np.array(sorted(range(n_pairs), key=digests.__getitem__), dtype=np.int64)


@dataclass(frozen=True)
class Routing:
    """Which pairs go to the teacher and why.

    ``teacher``: bool per pair; ``reason``: per pair, ``random`` / ``random_slice`` / ``uncertain`` for
    teacher pairs, ``student`` otherwise; ``score``: the routing score per pair (uncertainty, or NaN under
    ``random``); ``budget``: teacher pairs; ``random_slice``: how many of them were drawn at random."""

    policy: str
    variant: str | None
    teacher: np.ndarray
    reason: np.ndarray
    score: np.ndarray
    budget: int
    random_slice: int

    @property
    def teacher_share(self) -> float:
        """Share of the pairs sent to the teacher."""
        return float(self.teacher.mean()) if self.teacher.size else 0.0

    @property
    def random_mask(self) -> np.ndarray:
        """The teacher pairs drawn at random (unbiased for student–teacher agreement)."""
        return np.isin(self.reason, (REASON_RANDOM, REASON_RANDOM_SLICE))


def route(
    n_pairs: int,
    budget: int,
    policy: str = "uncertainty",
    variant: str = "entropy",
    random_share: float = 0.1,
    seed: int = 0,
    probabilities: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
    keys: Sequence[Sequence[str]] | None = None,
    model: DisagreementModel | None = None,
) -> Routing:
    """Pick ``budget`` of ``n_pairs`` for the teacher.

    ``random``: the first ``budget`` pairs of a seeded random order. ``uncertainty``: ``ceil(random_share *
    budget)`` pairs at random from all pairs (the random slice), then the most uncertain of the rest (ties
    broken by the random order, so the choice is deterministic)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown routing policy {policy!r} (choose from {POLICIES})")
    if not 0.0 <= random_share <= 1.0:
        raise ValueError(f"random share must be within [0, 1], got {random_share}")
    budget = max(0, min(int(budget), n_pairs))
    order = random_order(n_pairs, seed, keys)
    teacher = np.zeros(n_pairs, dtype=bool)
    reason = np.full(n_pairs, REASON_STUDENT, dtype=object)
    if policy == "random":
        chosen = order[:budget]
        teacher[chosen] = True
        reason[chosen] = REASON_RANDOM
        return Routing("random", None, teacher, reason, np.full(n_pairs, np.nan), budget, budget)
    score = uncertainty_scores(variant, probabilities, expected, thresholds, model)
    if score.shape != (n_pairs,):
        raise ValueError(f"expected {n_pairs} uncertainty scores, got shape {score.shape}")
    n_random = min(budget, math.ceil(random_share * budget - 1e-9))
    slice_ = order[:n_random]
    teacher[slice_] = True
    reason[slice_] = REASON_RANDOM_SLICE
    tie_break = np.empty(n_pairs, dtype=np.int64)
    tie_break[order] = np.arange(n_pairs)
    ranked = np.lexsort((tie_break, -score))  # most uncertain first, random order among equals
    uncertain = [i for i in ranked if not teacher[i]][: budget - n_random]
    teacher[uncertain] = True
    reason[uncertain] = REASON_UNCERTAIN
    return Routing("uncertainty", variant, teacher, reason, score, budget, n_random)


@dataclass(frozen=True)
class CascadeLabels:
    """The final labels: per pair grade, score (expected grade), labeler kind and routing provenance."""

    grade: np.ndarray
    score: np.ndarray
    labeler_kind: np.ndarray
    routing_reason: np.ndarray
    routing_score: np.ndarray


def combine(
    routing: Routing,
    student_grade: np.ndarray,
    student_score: np.ndarray,
    teacher_grade: np.ndarray,
    teacher_score: np.ndarray | None = None,
) -> CascadeLabels:
    """The teacher's label where the routing asked it and it answered (``teacher_grade`` not NaN), else the
    student's (reason ``teacher_missing`` when the teacher was asked but has no grade)."""
    student_grade = np.asarray(student_grade, dtype=np.float64)
    teacher_grade = np.asarray(teacher_grade, dtype=np.float64)
    teacher_score = teacher_grade if teacher_score is None else np.asarray(teacher_score, dtype=np.float64)
    use_teacher = routing.teacher & ~np.isnan(teacher_grade)
    reason = routing.reason.copy()
    reason[routing.teacher & ~use_teacher] = REASON_TEACHER_MISSING
    return CascadeLabels(
        grade=np.where(use_teacher, teacher_grade, student_grade).astype(int),
        score=np.where(use_teacher, teacher_score, np.asarray(student_score, dtype=np.float64)),
        labeler_kind=np.where(use_teacher, "teacher", "student").astype(object),
        routing_reason=reason,
        routing_score=routing.score.copy(),
    )


CURVE_SHARES = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50, 1.0)
KEYS = ["pair_source", "qid", "doc_id"]


def cascade_frame(
    student: pd.DataFrame,
    teacher: pd.DataFrame,
    share: float,
    policy: str = "uncertainty",
    variant: str = "entropy",
    random_share: float = 0.1,
    seed: int = 0,
    thresholds: Sequence[float] | None = None,
    labeler_id: str | None = None,
    model: DisagreementModel | None = None,
) -> pd.DataFrame:
    """The cascade as a labeler over the pairs both labeled. ``student``: pair_source, qid, doc_id, grade,
    expected_grade, p0..p3; ``teacher``: pair_source, qid, doc_id, grade, expected_grade. Returns one label row
    per pair (labeler_id, role ``cascade``, status, grade, expected_grade, labeler_kind, routing_reason,
    routing_score); ``share`` of the pairs are routed."""
    pairs = student.merge(teacher[[*KEYS, "grade", "expected_grade"]], on=KEYS, suffixes=("", "_teacher"))
    pairs = pairs.sort_values(KEYS).reset_index(drop=True)
    probabilities = pairs[["p0", "p1", "p2", "p3"]].to_numpy(dtype=float) if {"p0", "p3"} <= set(pairs) else None
    if probabilities is not None and np.isnan(probabilities).any():
        probabilities = None
    routing = route(
        len(pairs),
        budget_pairs(len(pairs), share=share),
        policy,
        variant,
        random_share=random_share,
        seed=seed,
        probabilities=probabilities,
        expected=pairs["expected_grade"].to_numpy(dtype=float),
        thresholds=thresholds,
        keys=pairs[KEYS].astype(str).to_numpy().tolist(),
        model=model,
    )
    teacher_score = pairs["expected_grade_teacher"].fillna(pairs["grade_teacher"]).to_numpy(dtype=float)
    labels = combine(
        routing,
        pairs["grade"].to_numpy(),
        pairs["expected_grade"].to_numpy(dtype=float),
        pairs["grade_teacher"].to_numpy(dtype=float),
        teacher_score,
    )
    name = labeler_id or f"cascade:{policy}{f'-{variant}' if policy == 'uncertainty' else ''}@{share:.0%}"
    return pairs[KEYS].assign(
        labeler_id=name,
        role="cascade",
        status="ok",
        grade=labels.grade,
        expected_grade=labels.score,
        labeler_kind=labels.labeler_kind,
        routing_reason=labels.routing_reason,
        routing_score=labels.routing_score,
    )


def cascade_curve(
    human: pd.DataFrame,
    student: pd.DataFrame,
    teacher: pd.DataFrame,
    shares: Sequence[float] = CURVE_SHARES,
    variant: str = "entropy",
    seeds: int = 5,
    random_share: float = 0.1,
    thresholds: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Agreement with ``human`` (qid, doc_id, grade) of the cascade at each teacher share, for uncertainty
    routing (``variant``) and random routing (mean of ``seeds`` seeds, ``<metric>_std`` their spread): policy,
    share, teacher_pairs, random_slice, kappa, qw_kappa, pairwise."""
    from relabel.evaluation.metrics import agreement, ranking_agreement

    reference = human[["qid", "doc_id", "grade"]].rename(columns={"grade": "human"})
    rows = []
    for policy, name, runs in (
        ("uncertainty", f"uncertainty ({variant})", 1),
        ("random", f"random ({seeds} seeds)", seeds),
    ):
        for share in shares:
            scored = []
            for seed in range(runs):
                frame = cascade_frame(student, teacher, share, policy, variant, random_share, seed, thresholds)
                frame = frame.merge(reference, on=["qid", "doc_id"])
                if frame.empty:
                    return pd.DataFrame()
                grades = agreement(frame["human"], frame["grade"])
                ranking = ranking_agreement(frame.assign(score=frame["expected_grade"])[["qid", "human", "score"]])
                scored.append(
                    {
                        "kappa": grades["cohen_kappa"],
                        "qw_kappa": grades["quadratic_kappa"],
                        "pairwise": ranking["pairwise_accuracy"],
                        "teacher_pairs": int((frame["labeler_kind"] == "teacher").sum()),
                        "random_slice": int(frame["routing_reason"].isin([REASON_RANDOM, REASON_RANDOM_SLICE]).sum()),
                    }
                )
            table = pd.DataFrame(scored)
            rows.append(
                {
                    "policy": name,
                    "share": share,
                    "pairs": len(frame),
                    **table.mean().to_dict(),
                    **{f"{m}_std": float(table[m].std(ddof=0)) for m in ("kappa", "qw_kappa", "pairwise")},
                }
            )
    return pd.DataFrame(rows)
