"""bench/scale_bench.py on the shared trec-dl-2019-2021-gpt4o and trec-dl-2023-test-a folders: the rows it
trains on carry no human grade, and its report reproduces the teacher's published agreement when fed the
teacher's own grades as predictions."""

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import BENCHMARKS, load_bench, requires_benchmarks


@pytest.mark.integration
@requires_benchmarks()
def test_training_rows_are_the_teachers_and_nothing_human(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench("scale_bench")
    data = bench.load_rows(BENCHMARKS)
    assert len(data["train"]) == 31474 and len({r["qid"] for r in data["train"]}) == 150
    assert {r["year"] for r in data["train"]} == {"TREC-DL-2019", "TREC-DL-2020", "TREC-DL-2021"}
    assert len(data["test_a"]) == 2691
    assert not {"human", "nist"} & set(data["train"][0]) and "grade" not in data["test_a"][0]
    gpt4o = {
        (q, d): int(g)
        for q, _, d, g in (
            line.split()
            for line in (BENCHMARKS / bench.SCALE / "runs" / f"{bench.GPT4O_RUN}.txt").read_text().splitlines()
        )
    }
    assert all(r["grade"] == gpt4o[(r["qid"], r["doc_id"])] for r in data["train"])
    assert not {r["qid"] for r in data["train"]} & {r["qid"] for r in data["test_a"]}
    packed = tmp_path / "rows.json.gz"
    monkeypatch.setattr("sys.argv", ["scale_bench", "--shared", str(BENCHMARKS), "--save-rows", str(packed)])
    bench.main()
    assert json.loads(gzip.decompress(packed.read_bytes())) == data


@pytest.mark.integration
@requires_benchmarks()
def test_report_scores_predictions_against_nist() -> None:
    bench = load_bench("scale_bench")
    references = bench.reference_frames(BENCHMARKS)
    test = references["test-a"]
    # the recorded willia-umbrela1 labeling as if it were a student: the report must give its known kappa
    as_student = {
        "protocol": "transfer",
        "split": "test-a",
        "config": {"epochs": 3},
        "train_seconds": 1.0,
        "labels_per_s": 1.0,
        "val_kappa_vs_teacher": 0.5,
        "best_epoch": 1,
        "pairs": [
            [q, d, float(g), int(g)]
            for q, d, g in zip(test["qid"], test["doc_id"], test["willia-umbrela1"], strict=True)
        ],
    }
    loyo = []
    for year in ("TREC-DL-2019", "TREC-DL-2020", "TREC-DL-2021"):
        frame = references[year]
        loyo.append(
            {
                "protocol": "loyo",
                "split": year,
                "config": {},
                "train_seconds": 2.0,
                "labels_per_s": 3.0,
                "val_kappa_vs_teacher": None,
                "best_epoch": 0,
                "pairs": [
                    [q, d, float(g), int(g)]
                    for q, d, g in zip(frame["qid"], frame["doc_id"], frame["teacher_gpt4o"], strict=True)
                ],
            }
        )
    tables = bench.report([as_student, *loyo], references)
    transfer = tables["transfer: train on DL 2019-2021 (GPT-4o), label trec-dl-2023-test-a"].set_index("labeler")
    student = transfer.loc['student {"epochs": 3}']
    assert student["pairs"] == 2691 and student["kappa"] == pytest.approx(0.304, abs=0.0015)
    assert student["kappa_vs_teacher"] == pytest.approx(1.0)
    assert student["kappa"] == pytest.approx(transfer.loc["teacher: willia-umbrela1", "kappa"])
    pooled = tables["leave one year out: held-out pooled (TREC-DL-2019, TREC-DL-2020, TREC-DL-2021)"]
    pooled = pooled.set_index("labeler")
    assert pooled.loc["student (default recipe)", "pairs"] == 31474
    assert pooled.loc["student (default recipe)", "kappa"] == pytest.approx(0.352, abs=0.0015)
    assert pooled.loc["teacher: GPT-4o (UMBRELA)", "qw_kappa"] == pytest.approx(0.604, abs=0.0015)
    assert pooled.loc["student (default recipe)", "train_s"] == 6.0
    assert set(tables) >= {f"leave one year out: held-out {y}" for y in ("TREC-DL-2019", "TREC-DL-2021")}
    # a configuration that labeled one year only: no pooled table (it would mix pair sets)
    base = {**loyo[0], "config": {"epochs": 0}}
    assert not [t for t in bench.report([*loyo, base], references) if "pooled" in t]
    two_years = bench.report([*loyo, base, {**loyo[1], "config": {"epochs": 0}}], references)
    pooled = two_years["leave one year out: held-out pooled (TREC-DL-2019, TREC-DL-2020)"].set_index("labeler")
    assert pooled["pairs"].nunique() == 1, "every row scores the same pairs"


@pytest.mark.unit
def test_held_out_years_take_the_number_or_the_full_name_and_reject_unknown_years() -> None:
    held_out_years = load_bench("scale_bench").held_out_years
    rows = [{"year": y} for y in ("TREC-DL-2019", "TREC-DL-2020", "TREC-DL-2021", "TREC-DL-2019")]
    assert held_out_years(rows, None) == ["TREC-DL-2019", "TREC-DL-2020", "TREC-DL-2021"]
    assert held_out_years(rows, ["2021", "TREC-DL-2019", "2019"]) == ["TREC-DL-2019", "TREC-DL-2021"]
    with pytest.raises(SystemExit, match="unknown year"):
        held_out_years(rows, ["2022"])


def test_a_subset_keeps_the_first_queries_of_each_year_and_optionally_all_of_test_a() -> None:
    bench = load_bench("scale_bench")
    train = [{"qid": f"{y}-{q}", "year": y} for y in ("A", "B") for q in (3, 1, 2) for _ in range(2)]
    data = {"train": train, "test_a": [{"qid": q} for q in ("t2", "t1", "t3")]}
    subset = bench.first_queries(data, 2)
    assert sorted({r["qid"] for r in subset["train"]}) == ["A-1", "A-2", "B-1", "B-2"]
    assert len(subset["train"]) == 8 and [r["qid"] for r in subset["test_a"]] == ["t2", "t1"]
    assert [r["qid"] for r in bench.first_queries(data, 2, all_test_a=True)["test_a"]] == ["t2", "t1", "t3"]
    assert bench.config_name({"epochs": 0, "base_model": "mpnet-base"}) == 'untrained base {"base_model": "mpnet-base"}'
