"""Judgment readers: the demo's reference judgments, TREC folders, and clear errors."""

from pathlib import Path

import pytest

from relabel.benchmarks import JudgmentError, load_judgments, load_trec_folder
from tests.conftest import BENCHMARKS, requires_benchmarks, write_tiny_judgments

pytestmark = pytest.mark.unit


def test_demo_reference_judgments() -> None:
    frame = load_judgments("demo")
    assert len(frame) >= 150 and frame["qid"].nunique() >= 25
    assert set(frame["grade"]) == {0, 1, 2, 3}
    assert not frame.duplicated(["qid", "doc_id"]).any()


def test_stratified_sample_is_deterministic(tmp_path: Path, tiny_corpus: Path) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    a = load_judgments(str(folder), max_pairs=3, seed=1)
    assert len(a) == 3 and a.equals(load_judgments(str(folder), max_pairs=3, seed=1))


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("j1 0 it/vpn-windows.md three", "qrels.txt:1: grade 'three' is not an integer"),
        ("j1 0 it/vpn-windows.md 3\nj1 0 it/vpn-windows.md 2", "qrels.txt:2: duplicate judgment"),
        ("j9 0 it/vpn-windows.md 3", "unknown query id 'j9'"),
        ("j1 0 nowhere.md 3", "unknown document id 'nowhere.md'"),
        ("j1 0 it/vpn-windows.md", "qrels.txt:1: expected 'qid 0 docid grade'"),
    ],
)
def test_invalid_judgments_name_file_and_line(tmp_path: Path, tiny_corpus: Path, qrels: str, message: str) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    (folder / "qrels.txt").write_text(qrels + "\n")
    with pytest.raises(JudgmentError, match=message.replace("(", r"\(")):
        load_trec_folder(folder)


@requires_benchmarks()
def test_shared_trec_folder_loads() -> None:
    frame = load_judgments(str(BENCHMARKS / "trec-dl-2023-dev"), max_pairs=200, seed=0)
    assert 190 <= len(frame) <= 210 and set(frame["grade"]) == {0, 1, 2, 3}
    assert frame["text"].str.len().min() > 0
