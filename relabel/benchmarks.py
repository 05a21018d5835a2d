"""Human judgments: the demo's reference judgments or any TREC-layout folder (queries.tsv, qrels.txt,
docs.jsonl), as one table of (qid, query_text, doc_id, grade) plus the document fields."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from relabel.documents import scan_directory

DEMO = "demo"


class JudgmentError(ValueError):
    """Invalid judgment data; the message names the file and line."""


def demo_corpus_dir() -> Path:
    """The bundled demo corpus (``relabel/demo_corpus/docs``)."""
    return Path(str(resources.files("relabel") / "demo_corpus" / "docs"))


def read_queries(path: Path) -> dict[str, str]:
    """``qid<TAB>text`` lines."""
    queries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise JudgmentError(f"{path}:{number}: expected 'qid<TAB>query text'")
        if qid in queries:
            raise JudgmentError(f"{path}:{number}: duplicate query id {qid!r}")
        queries[qid.strip()] = text.strip()
    return queries


def read_qrels(path: Path) -> list[tuple[str, str, int]]:
    """TREC qrels ``qid 0 docid grade`` lines, validated."""
    judgments: list[tuple[str, str, int]] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise JudgmentError(f"{path}:{number}: expected 'qid 0 docid grade', got {len(parts)} fields")
        qid, _, doc_id, grade_text = parts
        try:
            grade = int(grade_text)
        except ValueError as error:
            raise JudgmentError(f"{path}:{number}: grade {grade_text!r} is not an integer") from error
        if (qid, doc_id) in seen:
            raise JudgmentError(f"{path}:{number}: duplicate judgment for ({qid}, {doc_id})")
        seen.add((qid, doc_id))
        judgments.append((qid, doc_id, grade))
    return judgments


def _frame(
    queries: dict[str, str], qrels: list[tuple[str, str, int]], docs: dict[str, dict[str, Any]], source: str
) -> pd.DataFrame:
    rows = []
    for qid, doc_id, grade in qrels:
        if qid not in queries:
            raise JudgmentError(f"{source}: judgment for unknown query id {qid!r}")
        if doc_id not in docs:
            raise JudgmentError(f"{source}: judgment for unknown document id {doc_id!r}")
        if not 0 <= grade <= 3:
            raise JudgmentError(f"{source}: grade {grade} for ({qid}, {doc_id}) is outside 0-3")
        rows.append({"qid": qid, "query_text": queries[qid], "grade": grade, **docs[doc_id]})
    return pd.DataFrame(rows)


def load_demo_judgments() -> pd.DataFrame:
    """The reference judgments authored with the demo corpus."""
    folder = demo_corpus_dir().parent / "judgments"
    queries: dict[str, str] = {}
    for path in sorted(folder.glob("queries_*.tsv")):
        queries.update(read_queries(path))
    qrels = [j for path in sorted(folder.glob("qrels_*.txt")) for j in read_qrels(path)]
    documents, _ = scan_directory(demo_corpus_dir())
    docs = {d.doc_id: {k: v for k, v in d.as_row().items() if k != "content_hash"} for d in documents}
    return _frame(queries, qrels, docs, str(folder))


def load_trec_folder(folder: Path) -> pd.DataFrame:
    """A ``queries.tsv`` + ``qrels.txt`` + ``docs.jsonl`` folder (the layout of ../shared/benchmarks)."""
    queries = read_queries(folder / "queries.tsv")
    qrels = read_qrels(folder / "qrels.txt")
    wanted = {doc_id for _, doc_id, _ in qrels}
    docs: dict[str, dict[str, Any]] = {}
    docs_path = folder / "docs.jsonl"
    for number, line in enumerate(docs_path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            doc_id, text = str(record["docid"]), str(record["text"])
        except (json.JSONDecodeError, KeyError) as error:
            raise JudgmentError(f"{docs_path}:{number}: expected a JSON object with 'docid' and 'text'") from error
        if doc_id in wanted:
            if not text.strip():
                raise JudgmentError(f"{docs_path}:{number}: document {doc_id!r} has empty text")
            docs[doc_id] = {
                "doc_id": doc_id,
                "title": "",
                "author": "",
                "path": doc_id,
                "modified": "",
                "doc_type": "passage",
                "format": "jsonl",
                "text": text,
            }
    return _frame(queries, qrels, docs, str(folder))


def load_judgments(source: str, max_pairs: int | None = None, seed: int = 0) -> pd.DataFrame:
    """``demo`` or a TREC folder path; optionally a deterministic sample stratified by grade."""
    frame = load_demo_judgments() if source == DEMO else load_trec_folder(Path(source))
    if max_pairs is not None and len(frame) > max_pairs:
        share = max_pairs / len(frame)
        frame = frame.groupby("grade", group_keys=False).sample(frac=share, random_state=seed)
    return frame.sort_values(["qid", "doc_id"]).reset_index(drop=True)
