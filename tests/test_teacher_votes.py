"""Recorded labelings as a teacher, and ensembles combined by vote."""

from pathlib import Path

import pytest

from relabel.evaluation.judgments import JudgmentError
from relabel.teacher.votes import combine_votes, read_recorded_labels, recorded_teacher_rows
from tests.conftest import BENCHMARKS, requires_benchmarks

pytestmark = pytest.mark.unit


def _row(labeler: str, qid: str, grade: int | None, expected: float | None = None, status: str = "ok") -> dict:
    return {
        "pair_source": "pool",
        "qid": qid,
        "doc_id": "d",
        "labeler_id": labeler,
        "model": labeler,
        "prompt_id": "p",
        "prompt_version": "v",
        "status": status,
        "grade": grade,
        "expected_grade": expected if expected is not None else grade,
        "p0": None,
        "p1": None,
        "p2": None,
        "p3": None,
        "error": None if status == "ok" else "boom",
        "latency_s": 1.0,
    }


def test_majority_vote_mean_expected_grade_and_agreement() -> None:
    members = [
        [_row("a", "q1", 3), _row("a", "q2", 0)],
        [_row("b", "q1", 3), _row("b", "q2", 2)],
        [_row("c", "q1", 1), _row("c", "q2", None, status="failed")],
    ]
    combined = {r["qid"]: r for r in combine_votes(members, "ensemble")}
    assert combined["q1"]["grade"] == 3 and combined["q1"]["agreement"] == pytest.approx(2 / 3)
    assert combined["q1"]["expected_grade"] == pytest.approx(7 / 3) and combined["q1"]["votes"] == 3
    # a tie (0 vs 2, mean 1.0) goes to the grade nearest the mean, the lower one on equal distance
    assert combined["q2"]["grade"] == 0 and combined["q2"]["votes"] == 2 and combined["q2"]["agreement"] == 0.5
    # hard-grade members: the grade distribution is the vote shares (a soft target for the student)
    assert [combined["q1"][f"p{g}"] for g in range(4)] == pytest.approx([0, 1 / 3, 0, 2 / 3])


def test_pair_no_member_graded_is_failed_with_reasons() -> None:
    combined = combine_votes([[_row("a", "q1", None, status="failed")]], "ensemble")
    assert combined[0]["status"] == "failed" and combined[0]["grade"] is None and "boom" in combined[0]["error"]


def test_recorded_labels_become_teacher_rows(tmp_path: Path) -> None:
    run = tmp_path / "gpt4o-run.txt"
    run.write_text("q1 Q0 d1 3\nq1 0 d2 0\n")
    pairs = [{"pair_source": "benchmark", "qid": "q1", "doc_id": d} for d in ("d1", "d2", "d3")]
    rows = recorded_teacher_rows(pairs, run)
    assert [r["grade"] for r in rows] == [3, 0, None]
    assert rows[0]["labeler_id"] == "recorded:gpt4o-run" and rows[2]["status"] == "failed"
    run.write_text("q1 0 d1 7\n")
    with pytest.raises(JudgmentError, match="gpt4o-run.txt:1: grade 7 is outside 0-3"):
        read_recorded_labels(run)


@requires_benchmarks()
def test_recorded_llmjudge_run_imports() -> None:
    labels = read_recorded_labels(BENCHMARKS / "trec-dl-2023-test-a" / "runs" / "willia-umbrela1.txt")
    assert len(labels) >= 2000 and set(labels.values()) <= {0, 1, 2, 3}
