"""Judgment readers: the demo's reference judgments, TREC and BEIR folders, label and run files, clear errors."""

import json
from pathlib import Path

import pytest

from relabel.evaluation.judgments import (
    JudgmentError,
    detect_layout,
    folder_runs,
    load_folder,
    load_judgments,
    load_trec_folder,
    read_label_file,
    read_runs,
    read_trec_run,
)
from tests.conftest import BENCHMARKS, TINY_DOCS, requires_benchmarks, write_tiny_judgments

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


@pytest.mark.integration
@requires_benchmarks()
def test_shared_trec_folder_loads() -> None:
    frame = load_judgments(str(BENCHMARKS / "trec-dl-2023-dev"), max_pairs=200, seed=0)
    assert 190 <= len(frame) <= 210 and set(frame["grade"]) == {0, 1, 2, 3}
    assert frame["text"].str.len().min() > 0


def _beir(root: Path) -> Path:
    """A BEIR-layout copy of the tiny judgments."""
    (root / "qrels").mkdir(parents=True)
    corpus = [json.dumps({"_id": name, "title": name.split("/")[-1], "text": text}) for name, text in TINY_DOCS.items()]
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    queries = [{"_id": "j1", "text": "how do I set up the vpn"}, {"_id": "j2", "text": "hotel limit london"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    qrels = ["query-id\tcorpus-id\tscore", "j1\tit/vpn-windows.md\t2", "j1\thr/leave.html\t0", "j2\teng/kafka.md\t1"]
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nj2\thr/leave.html\t1\n")
    return root


def test_beir_layout_is_detected_and_prefers_the_test_split(tmp_path: Path) -> None:
    folder = _beir(tmp_path / "beir")
    assert detect_layout(folder) == "beir"
    frame = load_judgments(str(folder))
    assert len(frame) == 3 and set(frame["qid"]) == {"j1", "j2"}
    assert frame.set_index("doc_id").loc["it/vpn-windows.md", "title"] == "vpn-windows.md"


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("j1\tit/vpn-windows.md\ttwo", "test.tsv:1: grade 'two' is not an integer"),
        ("j1\tit/vpn-windows.md\t2\nj1\tit/vpn-windows.md\t1", "test.tsv:2: duplicate judgment"),
        ("query-id\tcorpus-id\tscore\nj7\tit/vpn-windows.md\t2", "test.tsv:2: judgment for unknown query id 'j7'"),
        ("j1\tmissing.md\t2", "test.tsv:1: judgment for unknown document id 'missing.md'"),
        ("j1\tit/vpn-windows.md\t7", "test.tsv:1: grade 7 .* outside 0-3"),
    ],
)
def test_invalid_beir_judgments_name_file_and_line(tmp_path: Path, qrels: str, message: str) -> None:
    folder = _beir(tmp_path / "beir")
    (folder / "qrels" / "test.tsv").write_text(qrels + "\n")
    with pytest.raises(JudgmentError, match=message):
        load_folder(folder)


def test_empty_beir_document_is_an_error(tmp_path: Path) -> None:
    folder = _beir(tmp_path / "beir")
    with (folder / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "it/vpn-windows.md", "text": " "}) + "\n")
    with pytest.raises(JudgmentError, match=r"corpus.jsonl:7: document 'it/vpn-windows.md' has empty text"):
        load_folder(folder)


def test_trec_layout_with_topics_and_docs_tsv(tmp_path: Path, tiny_corpus: Path) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    (folder / "queries.tsv").rename(folder / "topics.tsv")
    (folder / "docs.jsonl").unlink()
    lines = ["docid\ttext"] + [f"{name}\t{text.replace(chr(10), ' ')}" for name, text in TINY_DOCS.items()]
    (folder / "docs.tsv").write_text("\n".join(lines) + "\n")
    frame = load_folder(folder)
    assert detect_layout(folder) == "trec" and len(frame) == 6 and (frame["format"] == "tsv").all()
    (folder / "docs.tsv").write_text("docid\ttext\nit/vpn-windows.md\t  \n")
    with pytest.raises(JudgmentError, match=r"docs.tsv:2: document 'it/vpn-windows.md' has empty text"):
        load_folder(folder)


def test_unknown_layout_and_empty_query_are_errors(tmp_path: Path, tiny_corpus: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgmentError, match="unknown layout"):
        load_judgments(str(tmp_path / "empty"))
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    (folder / "queries.tsv").write_text("j1\thow do I set up the vpn\nj2\t \n")
    with pytest.raises(JudgmentError, match=r"queries.tsv:2: expected 'qid<TAB>query text'"):
        load_folder(folder)


def test_label_files_and_trec_runs(tmp_path: Path) -> None:
    (tmp_path / "labeler.txt").write_text("q1 Q0 d1 3\nq1 0 d2 0\n")
    (tmp_path / "bm25.run").write_text("q1 Q0 d1 1 12.5 bm25\nq1 Q0 d2 2 11.0 bm25\n")
    labels, systems = read_runs([tmp_path])
    assert labels["labeler"].to_dict("records") == [
        {"qid": "q1", "doc_id": "d1", "grade": 3},
        {"qid": "q1", "doc_id": "d2", "grade": 0},
    ]
    assert systems["bm25"]["score"].tolist() == [12.5, 11.0]
    (tmp_path / "bad.txt").write_text("q1 0 d1 3\nq1 0 d2 4\n")
    with pytest.raises(JudgmentError, match=r"bad.txt:2: grade 4 .* outside 0-3"):
        read_label_file(tmp_path / "bad.txt")
    (tmp_path / "bad.run").write_text("q1 Q0 d1 1 high bm25\n")
    with pytest.raises(JudgmentError, match=r"bad.run:1: score 'high' is not a number"):
        read_trec_run(tmp_path / "bad.run")


@pytest.mark.integration
@requires_benchmarks()
def test_shared_runs_folder_holds_label_files() -> None:
    labels, systems = folder_runs(str(BENCHMARKS / "trec-dl-2023-test-a"))
    assert len(labels) >= 30 and not systems
    assert len(labels["willia-umbrela1"]) == 2691
