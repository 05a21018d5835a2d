"""The cost dial's routing logic on synthetic student distributions: order, budget cap, random slice,
provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relabel.teacher.routing import (
    REASON_RANDOM,
    REASON_RANDOM_SLICE,
    REASON_STUDENT,
    REASON_TEACHER_MISSING,
    REASON_UNCERTAIN,
    budget_pairs,
    combine,
    entropy,
    random_order,
    route,
    threshold_distance,
)

pytestmark = pytest.mark.unit

CONFIDENT = [0.97, 0.01, 0.01, 0.01]
UNSURE = [0.25, 0.25, 0.25, 0.25]
HALF = [0.5, 0.5, 0.0, 0.0]


def synthetic(n: int = 100, seed: int = 1) -> np.ndarray:
    """(n, 4) distributions with uncertainty spread out: Dirichlet draws with varied concentration."""
    rng = np.random.default_rng(seed)
    return np.vstack([rng.dirichlet(np.full(4, a)) for a in rng.uniform(0.05, 5.0, n)])


def test_entropy_orders_confident_below_unsure() -> None:
    h = entropy(np.array([CONFIDENT, HALF, UNSURE]))
    assert h[0] < h[1] < h[2]
    assert h[2] == pytest.approx(np.log(4))
    assert h[1] == pytest.approx(np.log(2))


def test_uncertainty_routing_sends_the_least_sure_pairs() -> None:
    probabilities = synthetic()
    routing = route(100, 20, "uncertainty", "entropy", random_share=0.0, probabilities=probabilities)
    h = entropy(probabilities)
    chosen = np.flatnonzero(routing.teacher)
    assert set(chosen) == set(np.argsort(-h)[:20])
    assert h[routing.teacher].min() >= h[~routing.teacher].max()
    assert (routing.reason[routing.teacher] == REASON_UNCERTAIN).all()
    assert routing.random_slice == 0


def test_margin_routing_prefers_expected_grades_on_a_threshold() -> None:
    thresholds = [0.5, 1.5, 2.5]
    expected = np.array([0.0, 1.49, 3.0, 1.0, 2.6, 0.52])
    assert threshold_distance(expected, thresholds) == pytest.approx([0.5, 0.01, 0.5, 0.5, 0.1, 0.02])
    routing = route(6, 3, "uncertainty", "margin", random_share=0.0, expected=expected, thresholds=thresholds)
    assert set(np.flatnonzero(routing.teacher)) == {1, 4, 5}
    assert routing.score[1] == pytest.approx(-0.01)


def test_budget_caps_teacher_pairs_by_share_usd_and_count() -> None:
    assert budget_pairs(100, share=0.2) == 20
    assert budget_pairs(101, share=0.2) == 21  # ceil, as the inbox sample
    assert budget_pairs(100, share=0.5, usd=0.30, usd_per_pair=0.01) == 30  # the tighter cap wins
    assert budget_pairs(100, usd=5.0, usd_per_pair=0.01) == 100
    assert budget_pairs(100, share=1.0, max_pairs=7) == 7
    assert budget_pairs(100) == 100
    with pytest.raises(ValueError):
        budget_pairs(10, usd=1.0)
    with pytest.raises(ValueError):
        budget_pairs(10, share=1.5)
    for policy in ("random", "uncertainty"):
        for budget in (0, 1, 17, 100, 250):
            routing = route(100, budget, policy, probabilities=synthetic())
            assert routing.teacher.sum() == min(budget, 100) == routing.budget


def test_random_slice_is_random_and_reported() -> None:
    probabilities = synthetic(200)
    routing = route(200, 40, "uncertainty", random_share=0.25, seed=3, probabilities=probabilities)
    assert routing.random_slice == 10
    assert (routing.reason == REASON_RANDOM_SLICE).sum() == 10
    assert (routing.reason == REASON_UNCERTAIN).sum() == 30
    assert routing.random_mask.sum() == 10
    # the slice is the head of the seeded random order, whatever the uncertainties are
    assert set(np.flatnonzero(routing.reason == REASON_RANDOM_SLICE)) == set(random_order(200, 3)[:10])
    # and it does not follow uncertainty: a confident pair can be in it
    flat = route(200, 40, "uncertainty", random_share=0.25, seed=3, probabilities=np.tile(CONFIDENT, (200, 1)))
    assert set(np.flatnonzero(flat.reason == REASON_RANDOM_SLICE)) == set(random_order(200, 3)[:10])


def test_random_policy_is_seeded_and_independent_of_uncertainty() -> None:
    a = route(50, 10, "random", seed=5)
    b = route(50, 10, "random", seed=5)
    c = route(50, 10, "random", seed=6)
    assert (a.teacher == b.teacher).all() and not (a.teacher == c.teacher).all()
    assert (a.reason[a.teacher] == REASON_RANDOM).all() and a.random_slice == 10
    assert np.isnan(a.score).all()


def test_keyed_random_order_does_not_depend_on_input_order() -> None:
    keys = [(f"q{i % 3}", f"d{i}") for i in range(30)]
    order = random_order(30, 7, keys)
    reversed_order = random_order(30, 7, keys[::-1])
    assert [keys[i] for i in order] == [keys[::-1][i] for i in reversed_order]


def test_combine_takes_teacher_where_asked_with_provenance() -> None:
    probabilities = np.array([CONFIDENT, UNSURE, HALF, CONFIDENT])
    routing = route(4, 2, "uncertainty", random_share=0.0, probabilities=probabilities)
    student = np.array([0, 1, 1, 0])
    teacher = np.array([3.0, 2.0, np.nan, 3.0])
    labels = combine(routing, student, student.astype(float), teacher)
    # pairs 1 (uniform) and 2 (half) are the unsure ones; the teacher has no grade for pair 2
    assert list(labels.grade) == [0, 2, 1, 0]
    assert list(labels.labeler_kind) == ["student", "teacher", "student", "student"]
    assert list(labels.routing_reason) == [REASON_STUDENT, REASON_UNCERTAIN, REASON_TEACHER_MISSING, REASON_STUDENT]
    assert labels.routing_score == pytest.approx(entropy(probabilities))
    assert labels.score[1] == 2.0 and labels.score[0] == 0.0


def test_full_and_zero_budget_are_teacher_only_and_student_only() -> None:
    probabilities = synthetic(30)
    student = probabilities.argmax(axis=1)
    teacher = (student + 1) % 4
    everything = combine(route(30, 30, probabilities=probabilities), student, student, teacher)
    nothing = combine(route(30, 0, probabilities=probabilities), student, student, teacher)
    assert (everything.grade == teacher).all() and (everything.labeler_kind == "teacher").all()
    assert (nothing.grade == student).all() and (nothing.labeler_kind == "student").all()


def test_unknown_policy_and_missing_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="policy"):
        route(3, 1, "oracle")
    with pytest.raises(ValueError, match="probabilities"):
        route(3, 1, "uncertainty", "entropy")
    with pytest.raises(ValueError, match="thresholds"):
        route(3, 1, "uncertainty", "margin", expected=np.zeros(3))


def _labeled_frames(n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Human = teacher; the student is confident and right on even pairs, unsure (uniform) and wrong on odd."""
    human = pd.DataFrame(
        {
            "qid": [f"q{i % 4}" for i in range(n)],
            "doc_id": [f"d{i}" for i in range(n)],
            "grade": [i % 4 for i in range(n)],
        }
    )
    probabilities = np.array(
        [np.eye(4)[g] * 0.96 + 0.01 if i % 2 == 0 else np.full(4, 0.25) for i, g in enumerate(human["grade"])]
    )
    student = human.assign(
        pair_source="benchmark",
        grade=[g if i % 2 == 0 else (g + 2) % 4 for i, g in enumerate(human["grade"])],
        expected_grade=probabilities @ np.arange(4),
        **{f"p{g}": probabilities[:, g] for g in range(4)},
    )
    teacher = human.assign(pair_source="benchmark", expected_grade=human["grade"].astype(float))
    return human, student, teacher


def test_cascade_frame_is_a_labeler_with_provenance() -> None:
    from relabel.teacher.routing import cascade_frame

    _, student, teacher = _labeled_frames()
    rows = cascade_frame(student, teacher, 0.5, random_share=0.0)
    assert (
        len(rows) == 40
        and set(rows["role"]) == {"cascade"}
        and rows["labeler_id"].iloc[0] == "cascade:uncertainty-entropy@50%"
    )
    odd = rows["doc_id"].str[1:].astype(int) % 2 == 1
    assert (rows.loc[odd, "labeler_kind"] == "teacher").all() and (rows.loc[~odd, "labeler_kind"] == "student").all()
    merged = rows.merge(teacher, on=["qid", "doc_id"], suffixes=("", "_t"))
    assert (merged["grade"] == merged["grade_t"]).all(), "every unsure pair went to the teacher"


def test_cascade_curve_rises_from_student_to_teacher_and_uncertainty_leads() -> None:
    from relabel.teacher.routing import cascade_curve

    human, student, teacher = _labeled_frames()
    curve = cascade_curve(human, student, teacher, shares=(0.0, 0.5, 1.0), seeds=3, random_share=0.0)
    unc = curve[curve["policy"] == "uncertainty (entropy)"].set_index("share")
    rnd = curve[curve["policy"] == "random (3 seeds)"].set_index("share")
    assert unc.loc[1.0, "kappa"] == pytest.approx(1.0) and unc.loc[0.5, "kappa"] == pytest.approx(1.0)
    assert rnd.loc[0.5, "kappa"] < 0.9 and unc.loc[0.0, "kappa"] == pytest.approx(rnd.loc[0.0, "kappa"])
    assert unc.loc[0.5, "teacher_pairs"] == 20 and rnd.loc[0.5, "random_slice"] == 20


def test_report_shows_the_cost_dial(tmp_path: Path) -> None:
    from relabel.evaluation.plots import report_plots
    from relabel.evaluation.report import build_report, write_report
    from relabel.teacher.routing import cascade_curve

    human, student, teacher = _labeled_frames()
    labels = pd.concat(
        [student.assign(labeler_id="student:x", role="student"), teacher.assign(labeler_id="teacher:y", role="teacher")]
    )
    report = build_report(human, labels, n_resamples=20)
    report.cascade = cascade_curve(human, student, teacher, shares=(0.0, 0.5, 1.0), seeds=2)
    paths = write_report(report, tmp_path, report_plots(report))
    text = paths["markdown"].read_text()
    assert "## Cost dial" in text and "plots/cascade_curve.png" in text and "uncertainty (entropy)" in text
    assert paths["cascade_curve"].read_bytes().startswith(b"\x89PNG")


def test_disagreement_model_learns_where_the_student_is_wrong() -> None:
    from relabel.teacher.routing import fit_disagreement, student_features

    rng = np.random.default_rng(0)
    thresholds = [0.5, 1.5, 2.5]
    # a student that is wrong exactly on high expected grades, however confident: entropy cannot see it
    expected = rng.uniform(0, 3, 400)
    probabilities = np.tile(CONFIDENT, (400, 1))
    wrong = expected > 2.2
    model = fit_disagreement(student_features(expected, thresholds, probabilities), wrong)
    new_expected = np.array([0.2, 2.9, 1.0, 2.7])
    routing = route(
        4,
        2,
        "uncertainty",
        "disagreement",
        random_share=0.0,
        probabilities=np.tile(CONFIDENT, (4, 1)),
        expected=new_expected,
        thresholds=thresholds,
        model=model,
    )
    assert set(np.flatnonzero(routing.teacher)) == {1, 3}
    assert routing.score[1] > 0.5 > routing.score[0]
    with pytest.raises(ValueError, match="agree and disagree"):
        fit_disagreement(student_features(expected, thresholds), np.zeros(400))
    with pytest.raises(ValueError, match="fitted model"):
        route(4, 2, "uncertainty", "disagreement", expected=new_expected, thresholds=thresholds)
