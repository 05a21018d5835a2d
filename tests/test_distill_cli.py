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
    result = runner.invoke(main, ["distill", "--queries", str(folder / "queries.tsv"), "--docs",
                                  str(folder / "docs.jsonl"), "--teacher-labels", str(teacher), "--out", str(model),
                                  "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (model / "model.safetensors").exists() and "training on 6 teacher-labeled pairs" in result.output
    card = (model / "README.md").read_text()
    assert "teacher: `teacher-run`" in card and "bi-encoder" in card and "training data sha256" in card
    out = tmp_path / "labels.txt"
    args = ["label", "--model", str(model), "--queries", str(folder / "queries.tsv"), "--docs",
            str(folder / "docs.jsonl"), "--pairs", str(folder / "qrels.txt"), "--out", str(out)]
    assert runner.invoke(main, args).exit_code == 0
    first = out.read_text()
    lines = [line.split() for line in first.splitlines()]
    assert len(lines) == 6 and all(len(parts) == 4 and parts[3] in "0123" for parts in lines)
    probs = [line.split("\t") for line in (tmp_path / "labels.txt.probs.tsv").read_text().splitlines()]
    assert probs[0] == ["qid", "docid", "p0", "p1", "p2", "p3", "expected_grade", "grade"] and len(probs) == 7
    assert all(abs(sum(float(p) for p in row[2:6]) - 1) < 1e-3 for row in probs[1:])
    assert [row[7] for row in probs[1:]] == [parts[3] for parts in lines], "same grades in both files"
    assert runner.invoke(main, args).exit_code == 0 and out.read_text() == first, "labeling is deterministic"
