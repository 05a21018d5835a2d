"""Human judgments: the demo's reference judgments or a judgments folder, auto-detected by layout, as one
table of (qid, query_text, doc_id, grade) plus the document fields.

- TREC layout: ``queries.tsv`` or ``topics.tsv`` (qid TAB text), ``qrels.txt`` (``qid 0 docid grade``),
  ``docs.jsonl`` (``{"docid","text"}``) or ``docs.tsv`` (docid TAB text, or docid TAB title TAB text);
  optional ``runs/``: label files in qrels format (imported labelers) and TREC run files
  (``qid Q0 docid rank score tag``: retrieval systems).
- BEIR layout: ``corpus.jsonl`` (``{"_id","title","text"}``), ``queries.jsonl`` (``{"_id","text"}``),
  ``qrels/<split>.tsv`` (header, then ``query-id TAB corpus-id TAB score``; ``test`` is preferred).

Every error names the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from relabel.corpus.documents import scan_directory

DEMO = "demo"
GRADES = range(0, 4)
QRELS_NAMES = ("qrels.txt", "qrels.tsv", "qrels")
QUERY_NAMES = ("queries.tsv", "topics.tsv")
DOC_NAMES = ("docs.jsonl", "docs.tsv")
BEIR_SPLITS = ("test", "dev", "validation", "train")
HEADER_IDS = {"qid", "query_id", "query-id", "id", "_id", "docid", "doc_id", "corpus-id"}

Judgment = tuple[str, str, int]


class JudgmentError(ValueError):
    """Invalid judgment data; the message names the file and line."""


def demo_corpus_dir() -> Path:
    """The bundled demo corpus (``relabel/demo_corpus/docs``)."""
    return Path(str(resources.files("relabel") / "demo_corpus" / "docs"))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines of a UTF-8 text file."""
    if not path.exists():
        raise JudgmentError(f"{path}: file not found")
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            yield number, line.rstrip("\r")


def _grade(text: str, path: Path, number: int) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise JudgmentError(f"{path}:{number}: grade {text!r} is not an integer") from error


def read_queries(path: Path) -> dict[str, str]:
    """``qid<TAB>text`` lines (a ``qid<TAB>...`` header line is skipped)."""
    queries: dict[str, str] = {}
    for number, line in _lines(path):
        qid, sep, text = line.partition("\t")
        qid = qid.strip()
        if number == 1 and qid.lower() in HEADER_IDS:
            continue
        if not sep or not text.strip():
            raise JudgmentError(f"{path}:{number}: expected 'qid<TAB>query text' (empty query text?)")
        if qid in queries:
            raise JudgmentError(f"{path}:{number}: duplicate query id {qid!r}")
        queries[qid] = text.strip()
    return queries


def read_queries_jsonl(path: Path) -> dict[str, str]:
    """BEIR ``queries.jsonl``: ``{"_id", "text"}`` per line."""
    queries: dict[str, str] = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
            qid, text = str(record["_id"]), str(record["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise JudgmentError(f"{path}:{number}: expected a JSON object with '_id' and 'text'") from error
        if not text.strip():
            raise JudgmentError(f"{path}:{number}: query {qid!r} has empty text")
        if qid in queries:
            raise JudgmentError(f"{path}:{number}: duplicate query id {qid!r}")
        queries[qid] = text.strip()
    return queries


def _read_qrels_numbered(path: Path) -> list[tuple[str, str, int, int]]:
    """TREC qrels ``qid 0 docid grade`` (or ``qid Q0 docid grade``) lines with their line numbers."""
    judgments: list[tuple[str, str, int, int]] = []
    seen: set[tuple[str, str]] = set()
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 4:
            raise JudgmentError(f"{path}:{number}: expected 'qid 0 docid grade', got {len(parts)} fields")
        qid, _, doc_id, grade_text = parts
        grade = _grade(grade_text, path, number)
        if (qid, doc_id) in seen:
            raise JudgmentError(f"{path}:{number}: duplicate judgment for ({qid}, {doc_id})")
        seen.add((qid, doc_id))
        judgments.append((qid, doc_id, grade, number))
    return judgments


def read_qrels(path: Path) -> list[Judgment]:
    """TREC qrels ``qid 0 docid grade`` lines, validated."""
    return [(qid, doc_id, grade) for qid, doc_id, grade, _ in _read_qrels_numbered(path)]


def _read_beir_qrels_numbered(path: Path) -> list[tuple[str, str, int, int]]:
    """BEIR ``qrels/*.tsv``: an optional header, then ``query-id TAB corpus-id TAB score``."""
    judgments: list[tuple[str, str, int, int]] = []
    seen: set[tuple[str, str]] = set()
    for number, line in _lines(path):
        parts = line.split("\t")
        if number == 1 and parts[0].strip().lower() in HEADER_IDS:
            continue
        if len(parts) != 3:
            raise JudgmentError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'")
        qid, doc_id = parts[0].strip(), parts[1].strip()
        grade = _grade(parts[2].strip(), path, number)
        if (qid, doc_id) in seen:
            raise JudgmentError(f"{path}:{number}: duplicate judgment for ({qid}, {doc_id})")
        seen.add((qid, doc_id))
        judgments.append((qid, doc_id, grade, number))
    return judgments


def _document(doc_id: str, text: str, title: str, fmt: str) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "title": title,
        "author": "",
        "path": doc_id,
        "modified": "",
        "doc_type": "passage",
        "format": fmt,
        "text": text,
    }


def read_docs_jsonl(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """``docs.jsonl`` (``docid``/``text``) or BEIR ``corpus.jsonl`` (``_id``/``title``/``text``): the wanted
    documents; an empty wanted text is an error."""
    docs: dict[str, dict[str, Any]] = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
            key = next(k for k in ("docid", "_id", "doc_id") if k in record)
            doc_id, text, title = str(record[key]), str(record["text"]), str(record.get("title") or "")
        except (json.JSONDecodeError, KeyError, StopIteration, TypeError) as error:
            raise JudgmentError(
                f"{path}:{number}: expected a JSON object with 'docid' (or '_id') and 'text'"
            ) from error
        if doc_id in wanted:
            if not text.strip():
                raise JudgmentError(f"{path}:{number}: document {doc_id!r} has empty text")
            docs[doc_id] = _document(doc_id, text, title, "jsonl")
    return docs


def read_docs_tsv(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """``docs.tsv``: ``docid<TAB>text`` or ``docid<TAB>title<TAB>text`` lines (a header line is skipped)."""
    docs: dict[str, dict[str, Any]] = {}
    for number, line in _lines(path):
        parts = line.split("\t")
        if number == 1 and parts[0].strip().lower() in HEADER_IDS:
            continue
        if len(parts) not in (2, 3):
            raise JudgmentError(f"{path}:{number}: expected 'docid<TAB>text' or 'docid<TAB>title<TAB>text'")
        doc_id, text = parts[0].strip(), parts[-1]
        title = parts[1].strip() if len(parts) == 3 else ""
        if doc_id in wanted:
            if not text.strip():
                raise JudgmentError(f"{path}:{number}: document {doc_id!r} has empty text")
            docs[doc_id] = _document(doc_id, text.strip(), title, "tsv")
    return docs


def _frame(
    queries: dict[str, str],
    qrels: list[tuple[str, str, int, int]],
    docs: dict[str, dict[str, Any]],
    qrels_path: Path | str,
) -> pd.DataFrame:
    rows = []
    for qid, doc_id, grade, number in qrels:
        where = f"{qrels_path}:{number}"
        if qid not in queries:
            raise JudgmentError(f"{where}: judgment for unknown query id {qid!r}")
        if doc_id not in docs:
            raise JudgmentError(f"{where}: judgment for unknown document id {doc_id!r}")
        if grade not in GRADES:
            raise JudgmentError(f"{where}: grade {grade} for ({qid}, {doc_id}) is outside 0-3")
        rows.append({"qid": qid, "query_text": queries[qid], "grade": grade, **docs[doc_id]})
    return pd.DataFrame(rows)


def load_demo_judgments() -> pd.DataFrame:
    """The reference judgments authored with the demo corpus."""
    folder = demo_corpus_dir().parent / "judgments"
    queries: dict[str, str] = {}
    for path in sorted(folder.glob("queries_*.tsv")):
        queries.update(read_queries(path))
    qrels = [j for path in sorted(folder.glob("qrels_*.txt")) for j in _read_qrels_numbered(path)]
    documents, _ = scan_directory(demo_corpus_dir())
    docs = {d.doc_id: {k: v for k, v in d.as_row().items() if k != "content_hash"} for d in documents}
    return _frame(queries, qrels, docs, str(folder / "qrels_*.txt"))


def _first(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise JudgmentError(f"{folder}: no {what} file (looked for {', '.join(names)})")


def load_trec_folder(folder: Path) -> pd.DataFrame:
    """A TREC-layout folder: queries/topics TSV, qrels, and docs JSONL or TSV (the layout of
    ../shared/benchmarks)."""
    queries = read_queries(_first(folder, QUERY_NAMES, "queries"))
    qrels_path = _first(folder, QRELS_NAMES, "qrels")
    qrels = _read_qrels_numbered(qrels_path)
    wanted = {doc_id for _, doc_id, _, _ in qrels}
    docs_path = _first(folder, DOC_NAMES, "documents")
    docs = read_docs_jsonl(docs_path, wanted) if docs_path.suffix == ".jsonl" else read_docs_tsv(docs_path, wanted)
    return _frame(queries, qrels, docs, qrels_path)


def beir_qrels_path(folder: Path) -> Path:
    """The BEIR qrels file: ``qrels/test.tsv`` when present (else dev, validation, train, or the only one)."""
    files = sorted((folder / "qrels").glob("*.tsv"))
    for split in BEIR_SPLITS:
        for path in files:
            if path.stem == split:
                return path
    if len(files) == 1:
        return files[0]
    raise JudgmentError(f"{folder / 'qrels'}: expected test.tsv (or one .tsv file), found {[p.name for p in files]}")


def load_beir_folder(folder: Path) -> pd.DataFrame:
    """A BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    queries = read_queries_jsonl(folder / "queries.jsonl")
    qrels_path = beir_qrels_path(folder)
    qrels = _read_beir_qrels_numbered(qrels_path)
    docs = read_docs_jsonl(folder / "corpus.jsonl", {doc_id for _, doc_id, _, _ in qrels})
    return _frame(queries, qrels, docs, qrels_path)


def detect_layout(folder: Path) -> str:
    """``beir`` (corpus.jsonl + qrels/) or ``trec`` (queries or topics TSV + qrels)."""
    if not folder.is_dir():
        raise JudgmentError(f"{folder}: judgments folder not found")
    if (folder / "corpus.jsonl").is_file() and (folder / "qrels").is_dir():
        return "beir"
    if any((folder / name).is_file() for name in QUERY_NAMES) and any((folder / n).is_file() for n in QRELS_NAMES):
        return "trec"
    raise JudgmentError(
        f"{folder}: unknown layout: expected TREC (queries.tsv or topics.tsv, qrels.txt, docs.jsonl or docs.tsv) "
        "or BEIR (corpus.jsonl, queries.jsonl, qrels/test.tsv)"
    )


def load_folder(folder: Path) -> pd.DataFrame:
    """A judgments folder in either layout, detected from its files."""
    return load_beir_folder(folder) if detect_layout(folder) == "beir" else load_trec_folder(folder)


def load_judgments(source: str, max_pairs: int | None = None, seed: int = 0) -> pd.DataFrame:
    """``demo`` or a judgments folder (TREC or BEIR layout); optionally a deterministic sample stratified
    by grade."""
    frame = load_demo_judgments() if source == DEMO else load_folder(Path(source))
    if max_pairs is not None and len(frame) > max_pairs:
        share = max_pairs / len(frame)
        frame = frame.groupby("grade", group_keys=False).sample(frac=share, random_state=seed)
    return frame.sort_values(["qid", "doc_id"]).reset_index(drop=True)


def read_label_file(path: Path) -> pd.DataFrame:
    """A labeler's grades in TREC qrels format (``qid 0 docid grade`` or ``qid Q0 docid grade``) as
    qid, doc_id, grade; grades must be 0-3."""
    rows = []
    for qid, doc_id, grade, number in _read_qrels_numbered(path):
        if grade not in GRADES:
            raise JudgmentError(f"{path}:{number}: grade {grade} for ({qid}, {doc_id}) is outside 0-3")
        rows.append((qid, doc_id, grade))
    return pd.DataFrame(rows, columns=["qid", "doc_id", "grade"])


def read_trec_run(path: Path) -> pd.DataFrame:
    """A TREC run file (``qid Q0 docid rank score tag``) as qid, doc_id, score."""
    rows = []
    seen: set[tuple[str, str]] = set()
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise JudgmentError(f"{path}:{number}: expected 'qid Q0 docid rank score tag', got {len(parts)} fields")
        qid, _, doc_id, _, score_text, _ = parts
        try:
            score = float(score_text)
        except ValueError as error:
            raise JudgmentError(f"{path}:{number}: score {score_text!r} is not a number") from error
        if (qid, doc_id) in seen:
            raise JudgmentError(f"{path}:{number}: document {doc_id!r} retrieved twice for query {qid!r}")
        seen.add((qid, doc_id))
        rows.append((qid, doc_id, score))
    return pd.DataFrame(rows, columns=["qid", "doc_id", "score"])


def _field_count(path: Path) -> int:
    for _, line in _lines(path):
        return len(line.split())
    return 0


def read_runs(paths: list[Path]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Label files (4 fields) and TREC run files (6 fields) among ``paths`` (folders are expanded to their
    files), keyed by file stem: (labelers, retrieval systems)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise JudgmentError(f"{path}: file not found")
    labels: dict[str, pd.DataFrame] = {}
    systems: dict[str, pd.DataFrame] = {}
    for path in files:
        if path.suffix.lower() in {".md", ".json", ".jsonl"}:
            continue
        fields = _field_count(path)
        if fields == 4:
            labels[path.stem] = read_label_file(path)
        elif fields == 6:
            systems[path.stem] = read_trec_run(path)
        else:
            raise JudgmentError(f"{path}:1: expected a label file (4 fields) or a TREC run (6 fields)")
    return labels, systems


def folder_runs(source: str) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The ``runs/`` folder next to a judgments folder (``{}`` for the demo or when there is none)."""
    folder = Path(source) / "runs"
    if source == DEMO or not folder.is_dir():
        return {}, {}
    return read_runs([folder])
