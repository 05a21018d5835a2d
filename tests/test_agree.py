"""`relabel agree` (the agreement report from files alone) and `relabel report`."""

import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import ndcg_score

from relabel.cli import main
from relabel.evaluation.cost import cost_table
from relabel.evaluation.judgments import read_label_file
from relabel.evaluation.metrics import ir_measures_ndcg, tie_broken_scores
from relabel.evaluation.report import build_report
from relabel.warehouse import replace_table
from tests.conftest import BENCHMARKS, requires_benchmarks

TEST_A = BENCHMARKS / "trec-dl-2023-test-a"


def _write(path: Path, rows: list[tuple[str, str, int]], q0: str = "0") -> Path:
    path.write_text("".join(f"{q} {q0} {d} {g}\n" for q, d, g in rows))
    return path


def _tiny(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(1)
    rows = [(f"q{q}", f"d{d}", int(rng.integers(0, 4))) for q in range(4) for d in range(8)]
    human = _write(tmp_path / "qrels.txt", rows)
    same = _write(tmp_path / "same.txt", rows, q0="Q0")
    constant = _write(tmp_path / "constant.txt", [(q, d, 1) for q, d, _ in rows])
    return human, same, constant


@pytest.mark.unit
def test_agree_reports_identical_and_constant_labelers(tmp_path: Path) -> None:
    human, same, constant = _tiny(tmp_path)
    out = tmp_path / "report"
    args = [
        "agree",
        "--human",
        str(human),
        "--labels",
        str(same),
        str(constant),
        "--bootstrap",
        "50",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "agreement_report.json").read_text())
    table = {row["labeler_id"]: row for row in data["table"]}
    assert set(table) == {"same", "constant"}
    assert table["same"]["cohen_kappa"] == 1 and table["same"]["ndcg@10"] == pytest.approx(1)
    assert table["constant"]["cohen_kappa"] == 0 and table["constant"]["pairwise_accuracy"] == pytest.approx(0.5)
    assert table["same"]["coverage"] == 1 and table["same"]["n_pairs"] == 32
    assert "| same " in result.output and "1.000 [1.000, 1.000]" in result.output
    for name in ("confusion_matrices", "grade_distributions", "per_query_kappa"):
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000
    assert "data:image/png;base64," in (out / "agreement_report.html").read_text()


@pytest.mark.unit
def test_agree_computes_system_tau_from_run_files(tmp_path: Path) -> None:
    human, same, _ = _tiny(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    rng = np.random.default_rng(2)
    for system in ("a", "b", "c"):
        lines = [
            f"q{q} Q0 d{d} {rank + 1} {10 - rank} {system}\n"
            for q in range(4)
            for rank, d in enumerate(rng.permutation(8))
        ]
        (runs / f"{system}.run").write_text("".join(lines))
    args = ["agree", "--human", str(human), "--labels", str(same), "--runs", str(runs), "--bootstrap", "10"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "system tau" in result.output and "Systems by nDCG@10" in result.output


@pytest.mark.unit
def test_agree_rejects_bad_files_with_file_and_line(tmp_path: Path) -> None:
    human, _, _ = _tiny(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("q0 0 d0 2\nq0 0 d1 x\n")
    result = CliRunner().invoke(main, ["agree", "--human", str(human), "--labels", str(bad)])
    assert result.exit_code != 0 and "bad.txt:2: grade 'x' is not an integer" in result.output
    run = tmp_path / "bm25.run"
    run.write_text("q0 Q0 d0 1 3.2 bm25\n")
    result = CliRunner().invoke(main, ["agree", "--human", str(human), "--labels", str(run)])
    assert result.exit_code != 0 and "pass them with --runs" in result.output


@pytest.mark.unit
def test_report_command_prints_summary_and_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELABEL_DATA_DIR", str(tmp_path))
    human = pd.DataFrame({"qid": ["a", "a", "b", "b"], "doc_id": ["x", "y", "x", "z"], "grade": [3, 0, 1, 2]})
    labels = human.assign(labeler_id="student:1", role="student", model="student", status="ok", latency_s=0.01)
    report = build_report(human, labels, n_resamples=20)
    with duckdb.connect(str(tmp_path / "relabel.duckdb")) as conn:
        replace_table(conn, "agreement_report", report.table)
        replace_table(conn, "labeler_cost", cost_table(labels))
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 0, result.output
    assert "student:1" in result.output and "Cost and speed" in result.output and "USD/1k labels" in result.output


@pytest.mark.integration
@requires_benchmarks()
def test_agree_on_willia_umbrela1_matches_the_published_anchor_and_a_second_implementation(tmp_path: Path) -> None:
    qrels, run = TEST_A / "qrels.txt", TEST_A / "runs" / "willia-umbrela1.txt"
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["agree", "--human", str(qrels), "--labels", str(run), "--out", str(tmp_path)])
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "agreement_report.json").read_text())["table"][0]
    assert round(row["cohen_kappa"], 3) == 0.304 and round(row["quadratic_kappa"], 3) == 0.533
    assert row["coverage"] == 1 and row["n_pairs"] == 2691
    for name in ("cohen_kappa", "quadratic_kappa", "ndcg@10", "pairwise_accuracy"):
        assert row[f"{name}_ci_low"] < row[name] < row[f"{name}_ci_high"], name
    assert seconds < 30

    # second implementation: ir-measures (trec_eval) vs scikit-learn on the same tie-broken scores
    human, labels = read_label_file(qrels), read_label_file(run)
    merged = human.merge(labels, on=["qid", "doc_id"], suffixes=("", "_lab")).rename(columns={"grade_lab": "score"})
    merged["score"] = tie_broken_scores(merged.rename(columns={"grade": "human"}), seed=0)
    trec = ir_measures_ndcg(merged, merged)
    sklearn_values = {qid: ndcg_score([group["grade"]], [group["score"]], k=10) for qid, group in merged.groupby("qid")}
    assert set(trec) == set(sklearn_values)
    for qid, value in sklearn_values.items():
        assert trec[qid] == pytest.approx(value, abs=1e-6), qid
    check = json.loads((tmp_path / "agreement_report.json").read_text())["cross_check"][0]
    assert check["ndcg@10_sklearn_tie_broken"] == pytest.approx(np.mean(list(sklearn_values.values())), abs=1e-9)
    assert check["ndcg@10_ir_measures_tie_broken"] == pytest.approx(check["ndcg@10_sklearn_tie_broken"], abs=1e-6)
    assert check["pairwise_accuracy_mann_whitney"] == pytest.approx(row["pairwise_accuracy"], abs=1e-9)
    # the reported (tie-sharing) nDCG@10 lies near the tie-broken one
    assert abs(row["ndcg@10"] - check["ndcg@10_sklearn_tie_broken"]) < 0.1
