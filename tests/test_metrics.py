"""Agreement metrics on hand-computed cases, their bootstrap intervals, system tau, cost and plots."""

import math
import struct
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from relabel.evaluation.cost import api_cost_usd, cost_table
from relabel.evaluation.metrics import (
    agreement,
    confusion_metrics,
    grade_confusion,
    ir_measures_ndcg,
    ndcg_at_k,
    ndcg_cross_check,
    pairwise_accuracy,
    pairwise_accuracy_ranksum,
    per_query_table,
    query_bootstrap,
    ranking_agreement,
    system_ranking_tau,
    tie_broken_scores,
)
from relabel.evaluation.plots import report_plots
from relabel.evaluation.report import agreement_table, build_report, report_html, report_json, to_markdown, write_report

pytestmark = pytest.mark.unit

# rows = human grade, columns = labeler grade (hand-computed below)
KNOWN = [[2, 1, 0, 0], [0, 2, 1, 0], [0, 0, 2, 0], [0, 0, 1, 1]]


def _pairs(matrix: list[list[int]]) -> tuple[list[int], list[int]]:
    human, labeler = [], []
    for h, row in enumerate(matrix):
        for lab, count in enumerate(row):
            human += [h] * count
            labeler += [lab] * count
    return human, labeler


def _old_pairwise(human: list[int], score: list[float]) -> tuple[float, int]:
    """The original loop over all pairs, as an oracle."""
    agree, pairs = 0.0, 0
    for (h1, s1), (h2, s2) in combinations(zip(human, score, strict=True), 2):
        if h1 == h2:
            continue
        pairs += 1
        agree += 0.5 if s1 == s2 else float((h1 > h2) == (s1 > s2))
    return agree / pairs, pairs


def _synthetic(n_queries: int = 6, docs: int = 12, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        human = rng.integers(0, 4, size=docs)
        noisy = np.clip(human + rng.integers(-1, 2, size=docs), 0, 3)
        for d in range(docs):
            rows.append(
                {
                    "qid": f"q{q}",
                    "doc_id": f"d{d}",
                    "human": int(human[d]),
                    "grade": int(noisy[d]),
                    "score": float(noisy[d]),
                }
            )
    return pd.DataFrame(rows)


def test_identical_labels_give_kappa_one() -> None:
    m = agreement([0, 1, 2, 3, 2], [0, 1, 2, 3, 2])
    assert m["cohen_kappa"] == 1 and m["quadratic_kappa"] == 1 and m["exact_accuracy"] == 1
    assert m["binary_kappa"] == 1 and m["krippendorff_alpha"] == pytest.approx(1.0)


def test_constant_labeler_gives_kappa_zero() -> None:
    m = agreement([0, 1, 2, 3], [2, 2, 2, 2])
    assert m["cohen_kappa"] == 0 and m["quadratic_kappa"] == 0 and m["binary_kappa"] == 0


def test_known_confusion_matrix_kappa() -> None:
    # 2x2 case: human = [1,1,1,1,0,0,0,0,0,0], labeler agrees on 3 ones and 5 zeros
    human = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    labeler = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    # po = 0.8, pe = 0.4*0.4 + 0.6*0.6 = 0.52, kappa = 0.28/0.48
    assert agreement(human, labeler)["cohen_kappa"] == pytest.approx(0.28 / 0.48)
    assert grade_confusion(human, labeler)[1][:2] == [1, 3]


def test_known_four_grade_confusion_matrix() -> None:
    human, labeler = _pairs(KNOWN)
    assert grade_confusion(human, labeler) == KNOWN
    m = agreement(human, labeler)
    # po = 7/10; rows 3,3,2,2 and columns 2,3,4,1 give pe = 25/100; kappa = 0.45/0.75
    assert m["cohen_kappa"] == pytest.approx(0.6)
    # quadratic: sum (i-j)^2 O = 3, sum (i-j)^2 E = 20.6
    assert m["quadratic_kappa"] == pytest.approx(1 - 3 / 20.6)
    # grade >= 2: po = 0.9, pe = 0.4*0.5 + 0.6*0.5 = 0.5
    assert m["binary_kappa"] == pytest.approx(0.8)
    assert m["exact_accuracy"] == pytest.approx(0.7)
    assert -1 < m["krippendorff_alpha"] < 1


def test_sample_weights_equal_repeated_pairs() -> None:
    human, labeler = _pairs(KNOWN)
    weights = [1, 2, 3, 1, 1, 2, 1, 3, 1, 2]
    weighted = agreement(human, labeler, sample_weight=weights)
    repeated = agreement(np.repeat(human, weights), np.repeat(labeler, weights))
    for name, value in repeated.items():
        assert weighted[name] == pytest.approx(value), name


def test_pairwise_accuracy_counts_ties_half() -> None:
    acc, pairs = pairwise_accuracy([2, 1, 0], [0.9, 0.5, 0.5])
    assert pairs == 3 and acc == pytest.approx((1 + 1 + 0.5) / 3)


def test_pairwise_accuracy_matches_loop_rank_sum_and_roc_auc() -> None:
    rng = np.random.default_rng(0)
    human = rng.integers(0, 4, size=40).tolist()
    score = rng.integers(0, 5, size=40).astype(float).tolist()
    expected = _old_pairwise(human, score)
    assert pairwise_accuracy(human, score) == pytest.approx(expected)
    assert pairwise_accuracy_ranksum(human, score) == pytest.approx(expected)
    binary = [int(g >= 2) for g in human]
    assert pairwise_accuracy(binary, score)[0] == pytest.approx(roc_auc_score(binary, score))


def test_ranking_agreement_perfect_and_reversed() -> None:
    frame = pd.DataFrame({"qid": ["a"] * 3, "human": [3, 1, 0], "score": [2.0, 1.0, 0.0]})
    assert ranking_agreement(frame)["ndcg@10"] == pytest.approx(1.0)
    reversed_ = ranking_agreement(frame.assign(score=[0.0, 1.0, 2.0]))
    assert reversed_["pairwise_accuracy"] == 0 and reversed_["ndcg@10"] < 0.7


def test_ndcg_by_sklearn_and_ir_measures_agree_on_tie_broken_scores() -> None:
    frame = _synthetic()
    ranked = frame.assign(score=tie_broken_scores(frame, seed=1))
    assert ranked.groupby("qid")["score"].nunique().eq(12).all()
    trec = ir_measures_ndcg(ranked.rename(columns={"grade": "labeler", "human": "grade"}), ranked)
    for qid, group in ranked.groupby("qid"):
        assert trec[qid] == pytest.approx(ndcg_at_k(group["human"], group["score"]), abs=1e-6)
    check = ndcg_cross_check(frame)
    assert check["ndcg@10_sklearn_tie_broken"] == pytest.approx(check["ndcg@10_ir_measures_tie_broken"], abs=1e-6)
    assert check["pairwise_accuracy_mann_whitney"] == pytest.approx(ranking_agreement(frame)["pairwise_accuracy"])


def test_query_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    frame = _synthetic(n_queries=8)
    per_query = per_query_table(frame)
    first = query_bootstrap(frame, per_query, n_resamples=200, seed=5)
    assert first == query_bootstrap(frame, per_query, n_resamples=200, seed=5)
    point = {**agreement(frame["human"], frame["grade"]), **ranking_agreement(frame)}
    for name, (low, high) in first.items():
        assert low <= high and low - 0.05 <= point[name] <= high + 0.05, name


def test_query_bootstrap_of_one_query_collapses_to_the_estimate() -> None:
    frame = _synthetic(n_queries=1)
    intervals = query_bootstrap(frame, n_resamples=50, seed=0)
    kappa = agreement(frame["human"], frame["grade"])["cohen_kappa"]
    assert intervals["cohen_kappa"] == pytest.approx((kappa, kappa))


def test_system_ranking_tau_on_a_tiny_example() -> None:
    docs = ["d1", "d2", "d3", "d4"]
    human = pd.DataFrame({"qid": "q1", "doc_id": docs, "grade": [3, 2, 1, 0]})
    reversed_labels = human.assign(grade=[0, 1, 2, 3])
    orders = {"A": ["d1", "d2", "d3", "d4"], "B": ["d4", "d3", "d2", "d1"], "C": ["d2", "d1", "d4", "d3"]}
    runs = {
        name: pd.DataFrame({"qid": "q1", "doc_id": order, "score": [4.0, 3.0, 2.0, 1.0]})
        for name, order in orders.items()
    }
    same, table = system_ranking_tau(human, human, runs)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["n_systems"] == 3
    # humans: A (perfect) > C > B; reversed labels: B > C > A
    assert table.set_index("system")["ndcg@10_human"].idxmax() == "A"
    opposite, _ = system_ranking_tau(human, reversed_labels, runs)
    assert opposite["kendall_tau"] == pytest.approx(-1.0)


def _labels() -> tuple[pd.DataFrame, pd.DataFrame]:
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
    return human, labels


def test_agreement_table_has_teacher_student_rows() -> None:
    human, labels = _labels()
    table = agreement_table(human, labels).set_index(["labeler_id", "reference"])
    assert table.loc[("teacher:m", "human"), "cohen_kappa"] == 1
    assert table.loc[("teacher:m", "human"), "labels_per_s"] == pytest.approx(2.0)
    assert table.loc[("student:1", "teacher:m"), "n_pairs"] == 4
    assert not math.isnan(table.loc[("student:1", "human"), "pairwise_accuracy"])
    assert table.loc[("student:1", "human"), "coverage"] == 1
    assert "cohen_kappa_ci_low" in table and "pairwise_accuracy_ci_high" in table


def test_report_reports_coverage_of_partial_labels() -> None:
    human, labels = _labels()
    partial = labels[labels["labeler_id"] == "teacher:m"].iloc[:3]
    extra = partial.iloc[:1].assign(qid="c")
    report = build_report(human, pd.concat([partial, extra]), n_resamples=20)
    row = report.table.iloc[0]
    assert row["n_pairs"] == 3 and row["coverage"] == pytest.approx(0.75) and row["n_labeled"] == 4
    assert any("coverage 75.0%" in note for note in report.notes)


def test_cost_table_prices_local_and_api_models() -> None:
    labels = pd.DataFrame(
        {
            "labeler_id": ["teacher:gpt-4o"] * 4 + ["teacher:relabel-local/q"] * 2 + ["student:1"] * 4,
            "role": ["teacher"] * 6 + ["student"] * 4,
            "model": ["gpt-4o"] * 4 + ["relabel-local/q"] * 2 + ["student"] * 4,
            "prompt_id": ["grade"] * 6 + [None] * 4,
            "status": ["ok"] * 10,
            "latency_s": [1.0] * 4 + [3.6] * 2 + [0.01] * 4,
        }
    )
    tokens = pd.DataFrame(
        {"model": ["gpt-4o"], "prompt_id": ["grade"], "calls": [4], "prompt_tokens": [4000], "completion_tokens": [4]}
    )
    table = cost_table(labels, tokens, hourly_rate_usd=1.0).set_index("labeler_id")
    api = api_cost_usd("gpt-4o", 4000, 4)
    assert api is not None and api > 0 and api_cost_usd("no-such-model-xyz", 10, 1) is None
    assert table.loc["teacher:gpt-4o", "usd_per_1k_labels"] == pytest.approx(api / 4 * 1000)
    assert table.loc["teacher:gpt-4o", "tokens_in_per_label"] == 1000
    # 7.2 machine-seconds at 1 USD/h for 2 labels
    assert table.loc["teacher:relabel-local/q", "usd_per_1k_labels"] == pytest.approx(7.2 / 3600 / 2 * 1000)
    assert table.loc["student:1", "labels_per_s"] == pytest.approx(100)
    # the first teacher (gpt-4o, 1 label/s) is the reference for the student's ratios
    assert table.loc["student:1", "throughput_vs_teacher"] == pytest.approx(100)
    assert table.loc["student:1", "teacher_cost_over_student"] > 1


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plots_are_real_pngs_and_the_report_renders(tmp_path) -> None:
    human, labels = _labels()
    report = build_report(human, labels, n_resamples=20)
    images = report_plots(report)
    assert set(images) == {"confusion_matrices", "grade_distributions", "per_query_kappa"}
    for name, png in images.items():
        width, height = _png_size(png)
        assert 5_000 < len(png) < 2_000_000 and 200 <= width <= 4000 and 100 <= height <= 4000, name
    paths = write_report(report, tmp_path, images)
    assert (tmp_path / "plots" / "confusion_matrices.png").read_bytes() == images["confusion_matrices"]
    markdown = paths["markdown"].read_text()
    assert "![confusion matrices](plots/confusion_matrices.png)" in markdown and "teacher:m" in markdown
    assert "data:image/png;base64," in report_html(report, images)
    assert report_json(report)["table"][0]["labeler_id"] == "student:1"
    assert "[" in to_markdown(report.table)  # intervals in brackets


def test_bootstrap_fast_path_equals_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    stack = rng.integers(0, 30, size=(25, 4, 4)).astype(float)
    stack[0] = 0
    stack[0, 2, 2] = 5  # one grade from both raters
    stack[1] = 0
    stack[1, :, 1] = [3, 1, 4, 2]  # constant labeler
    fast = confusion_metrics(stack)
    cells_h, cells_l = np.repeat([0, 1, 2, 3], 4), np.tile([0, 1, 2, 3], 4)
    for index, matrix in enumerate(stack):
        slow = agreement(cells_h, cells_l, sample_weight=matrix.ravel())
        for name, values in fast.items():
            assert values[index] == pytest.approx(slow[name], abs=1e-12, nan_ok=True), (index, name)
