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
    out = tmp_path / "labels.txt"
    args = ["label", "--model", str(model), "--queries", str(folder / "queries.tsv"), "--docs",
            str(folder / "docs.jsonl"), "--pairs", str(folder / "qrels.txt"), "--out", str(out)]
    assert runner.invoke(main, args).exit_code == 0
    first = out.read_text()
    lines = [line.split() for line in first.splitlines()]
    assert len(lines) == 6 and all(len(parts) == 4 and parts[3] in "0123" for parts in lines)
    assert (tmp_path / "labels.txt.scores.tsv").read_text().startswith("qid\tdocid\texpected_grade\tgrade")
    assert runner.invoke(main, args).exit_code == 0 and out.read_text() == first, "labeling is deterministic"
