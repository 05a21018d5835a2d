"""`relabel distill` and `relabel label` on a small pairs file."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from relabel.cli import main
from tests.conftest import write_tiny_judgments

pytestmark = pytest.mark.integration


def test_distill_then_label_from_files(tmp_path: Path, tiny_corpus: Path) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    teacher = tmp_path / "teacher-run.txt"
    teacher.write_text((folder / "qrels.txt").read_text().replace(" 0 it/vpn-mac.txt 1", " 0 it/vpn-mac.txt 2"))
    model = tmp_path / "student"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "distill",
            "--queries",
            str(folder / "queries.tsv"),
            "--docs",
            str(folder / "docs.jsonl"),
            "--teacher-labels",
            str(teacher),
            "--out",
            str(model),
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (model / "model.safetensors").exists() and "training on 6 teacher-labeled pairs" in result.output
    card = (model / "README.md").read_text()
    assert "teacher: `teacher-run`" in card and "bi-encoder" in card and "training data sha256" in card
    out = tmp_path / "labels.txt"
    args = [
        "label",
        "--model",
        str(model),
        "--queries",
        str(folder / "queries.tsv"),
        "--docs",
        str(folder / "docs.jsonl"),
        "--pairs",
        str(folder / "qrels.txt"),
        "--out",
        str(out),
    ]
    assert runner.invoke(main, args).exit_code == 0
    first = out.read_text()
    lines = [line.split() for line in first.splitlines()]
    assert len(lines) == 6 and all(len(parts) == 4 and parts[3] in "0123" for parts in lines)
    probs = [line.split("\t") for line in (tmp_path / "labels.txt.probs.tsv").read_text().splitlines()]
    assert probs[0] == ["qid", "docid", "p0", "p1", "p2", "p3", "expected_grade", "grade"] and len(probs) == 7
    assert all(abs(sum(float(p) for p in row[2:6]) - 1) < 1e-3 for row in probs[1:])
    assert [row[7] for row in probs[1:]] == [parts[3] for parts in lines], "same grades in both files"
    assert runner.invoke(main, args).exit_code == 0 and out.read_text() == first, "labeling is deterministic"


def _tsv(path: Path) -> list[dict[str, str]]:
    head, *body = [line.split("\t") for line in path.read_text().splitlines()]
    return [dict(zip(head, row, strict=True)) for row in body]


def test_label_with_a_recorded_teacher_routes_the_share_with_provenance(tmp_path: Path, tiny_corpus: Path) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    model = tmp_path / "student"
    runner = CliRunner()
    base = ["--queries", str(folder / "queries.tsv"), "--docs", str(folder / "docs.jsonl")]
    assert (
        runner.invoke(
            main,
            ["distill", *base, "--teacher-labels", str(folder / "qrels.txt"), "--out", str(model), "--epochs", "0"],
        ).exit_code
        == 0
    )
    # a teacher that grades every pair 3, so its grade is visible wherever it is used
    teacher = tmp_path / "teacher.txt"
    teacher.write_text(
        "".join(
            f"{q} 0 {d} 3\n"
            for q, _, d, _ in (line.split() for line in (folder / "qrels.txt").read_text().splitlines())
        )
    )
    out = tmp_path / "cascade.txt"
    label = [
        "label",
        "--model",
        str(model),
        *base,
        "--pairs",
        str(folder / "qrels.txt"),
        "--out",
        str(out),
        "--teacher-labels",
        str(teacher),
    ]
    result = runner.invoke(main, [*label, "--route-share", "0.5", "--random-slice", "0.3"])
    assert result.exit_code == 0, result.output
    routing = _tsv(tmp_path / "cascade.txt.routing.tsv")
    probs = {(r["qid"], r["docid"]): r for r in _tsv(tmp_path / "cascade.txt.probs.tsv")}
    assert len(routing) == 6 and sum(r["labeler_kind"] == "teacher" for r in routing) == 3
    assert sorted(r["routing_reason"] for r in routing) == [
        "random_slice",
        "student",
        "student",
        "student",
        "uncertain",
        "uncertain",
    ]
    final = {(q, d): g for q, _, d, g in (line.split() for line in out.read_text().splitlines())}
    for r in routing:
        expected = "3" if r["labeler_kind"] == "teacher" else probs[(r["qid"], r["docid"])]["grade"]
        assert final[(r["qid"], r["docid"])] == r["grade"] == expected
    # the uncertain pairs are the student's highest-entropy ones among those not in the random slice
    import math

    def h(row: dict[str, str]) -> float:
        return -sum(float(row[f"p{g}"]) * math.log(float(row[f"p{g}"])) for g in range(4) if float(row[f"p{g}"]) > 0)

    rest = [r for r in routing if r["routing_reason"] != "random_slice"]
    least_sure = sorted(rest, key=lambda r: -h(probs[(r["qid"], r["docid"])]))[:2]
    assert {r["routing_reason"] for r in least_sure} == {"uncertain"}
    assert "3 of 6 pairs (50.0%) take the teacher's grade" in result.output
    # a USD cap tighter than the share wins
    capped = runner.invoke(main, [*label, "--route-share", "0.5", "--route-usd", "0.002", "--teacher-usd-per-1k", "1"])
    assert capped.exit_code == 0, capped.output
    assert sum(r["labeler_kind"] == "teacher" for r in _tsv(tmp_path / "cascade.txt.routing.tsv")) == 2
    assert runner.invoke(main, [*label, "--route-usd", "1"]).exit_code != 0
