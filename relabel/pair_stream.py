"""Streaming pairs through a labeler: read (query, document) pairs in chunks and write labels chunk by chunk, so
the number of pairs is bounded by disk, not memory.

Input: a Parquet file read with ``pyarrow.parquet.ParquetFile.iter_batches``, either self-contained (columns
``qid``, ``doc_id`` or ``docid``, ``query_text``, ``doc_text`` and optionally ``title``: nothing but one chunk is
held) or ids only (``qid``, ``doc_id``), whose texts come from a queries file and the documents the pairs name;
or a text file of ``qid docid`` / ``qid 0 docid ...`` lines, read line by line (its duplicates are dropped, so
the set of pairs seen so far is kept). Output: TREC qrels lines plus ``<out>.probs.tsv``, or one Parquet file
(``.parquet``), appended a chunk at a time."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DOC_ID_COLUMNS = ("doc_id", "docid")
PROBS_HEADER = ["qid", "docid", "p0", "p1", "p2", "p3", "expected_grade", "grade"]


@dataclass
class PairChunk:
    """Up to one chunk of pairs with their texts (the document side as the student reads it)."""

    qids: list[str]
    doc_ids: list[str]
    queries: list[str]
    docs: list[str]

    def __len__(self) -> int:
        return len(self.qids)


def doc_side(title: Any, text: Any) -> str:
    """Title, then body (``relabel.student.pair_text`` without importing torch)."""
    title = str(title or "").strip()
    return f"{title}. {text}" if title else str(text)


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file to stream: ``pre_buffer=False``, because a pre-buffering reader keeps every column chunk it
    has read (its Arrow memory grew to 122 MB over 1M pairs here; without it the peak stays at one batch's)."""
    return pq.ParquetFile(path, pre_buffer=False)


def parquet_columns(path: Path) -> list[str]:
    return list(pq.ParquetFile(path).schema_arrow.names)


def _doc_column(columns: list[str]) -> str:
    for name in DOC_ID_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"a pairs Parquet file needs a doc_id (or docid) column; it has {columns}")


def self_contained(path: Path) -> bool:
    """Whether a pairs Parquet file carries the query and document texts."""
    columns = parquet_columns(path)
    return {"qid", "query_text", "doc_text"} <= set(columns) and any(c in columns for c in DOC_ID_COLUMNS)


def parquet_doc_ids(path: Path, batch_size: int = 65536) -> set[str]:
    """The distinct document ids a pairs Parquet file names (one column read, a batch at a time)."""
    column = _doc_column(parquet_columns(path))
    seen: set[str] = set()
    for batch in open_parquet(path).iter_batches(batch_size=batch_size, columns=[column]):
        seen.update(str(v) for v in batch.column(0).to_pylist())
    return seen


def iter_parquet_chunks(
    path: Path,
    chunk_size: int,
    queries: Mapping[str, str] | None = None,
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    skipped: Callable[[str, str], None] | None = None,
) -> Iterator[PairChunk]:
    """Chunks of a pairs Parquet file; without text columns the texts come from ``queries`` and ``docs``
    (pairs missing either are passed to ``skipped``)."""
    columns = parquet_columns(path)
    doc_column = _doc_column(columns)
    texts = self_contained(path)
    wanted = [
        "qid",
        doc_column,
        *(["query_text", "doc_text"] if texts else []),
        *(["title"] if "title" in columns else []),
    ]
    for batch in open_parquet(path).iter_batches(batch_size=chunk_size, columns=wanted):
        data = batch.to_pydict()
        chunk = PairChunk([], [], [], [])
        titles = data.get("title") or [None] * batch.num_rows
        for i, (qid, doc_id) in enumerate(zip(data["qid"], data[doc_column], strict=True)):
            qid, doc_id = str(qid), str(doc_id)
            if texts:
                query, doc = data["query_text"][i], doc_side(titles[i], data["doc_text"][i])
            elif queries is not None and docs is not None and qid in queries and doc_id in docs:
                query, doc = queries[qid], doc_side(docs[doc_id].get("title"), docs[doc_id]["text"])
            else:
                if skipped is not None:
                    skipped(qid, doc_id)
                continue
            chunk.qids.append(qid)
            chunk.doc_ids.append(doc_id)
            chunk.queries.append(str(query))
            chunk.docs.append(doc)
        if len(chunk):
            yield chunk


def iter_text_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """(qid, docid) of each ``qid docid`` or ``qid 0 docid ...`` line, first occurrence only, read lazily."""
    seen: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 1:
                raise ValueError(f"{path}:{number}: expected 'qid docid' or 'qid 0 docid ...'")
            pair = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[2])
            if pair not in seen:
                seen.add(pair)
                yield pair


def iter_text_chunks(
    pairs: Iterator[tuple[str, str]],
    chunk_size: int,
    queries: Mapping[str, str],
    docs: Mapping[str, Mapping[str, Any]],
    skipped: Callable[[str, str], None] | None = None,
) -> Iterator[PairChunk]:
    """Chunks of (qid, docid) pairs with texts from ``queries`` and ``docs``."""
    chunk = PairChunk([], [], [], [])
    for qid, doc_id in pairs:
        if qid not in queries or doc_id not in docs:
            if skipped is not None:
                skipped(qid, doc_id)
            continue
        chunk.qids.append(qid)
        chunk.doc_ids.append(doc_id)
        chunk.queries.append(queries[qid])
        chunk.docs.append(doc_side(docs[doc_id].get("title"), docs[doc_id]["text"]))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = PairChunk([], [], [], [])
    if len(chunk):
        yield chunk


class LabelWriter:
    """Labels appended a chunk at a time: ``.parquet`` output is one Parquet file (a row group per chunk: qid,
    docid, grade, expected_grade, p0-p3); any other name gets TREC qrels lines (``qid 0 docid grade``) and the
    grade probabilities in ``<out>.probs.tsv``."""

    SCHEMA = pa.schema(
        [
            ("qid", pa.string()),
            ("docid", pa.string()),
            ("grade", pa.int8()),
            ("expected_grade", pa.float64()),
            *[(f"p{g}", pa.float64()) for g in range(4)],
        ]
    )

    def __init__(self, out_path: Path) -> None:
        self.out_path = out_path
        self.rows = 0
        self._parquet = pq.ParquetWriter(out_path, self.SCHEMA) if is_parquet(out_path) else None
        if self._parquet is None:
            self._qrels = out_path.open("w")
            self._probs = open(f"{out_path}.probs.tsv", "w", newline="")
            self._tsv = csv.writer(self._probs, delimiter="\t")
            self._tsv.writerow(PROBS_HEADER)

    def write(
        self, qids: list[str], doc_ids: list[str], scores: np.ndarray, grades: np.ndarray, probs: np.ndarray
    ) -> None:
        """Append one chunk's labels (``grades`` may be the cascade's final grades)."""
        self.rows += len(qids)
        if self._parquet is not None:
            columns = {"qid": qids, "docid": doc_ids, "grade": np.asarray(grades, dtype=np.int8)}
            columns["expected_grade"] = np.asarray(scores, dtype=np.float64)
            for g in range(4):
                columns[f"p{g}"] = np.asarray(probs)[:, g].astype(np.float64)
            self._parquet.write_table(pa.table(columns, schema=self.SCHEMA))
            return
        self._qrels.write("".join(f"{q} 0 {d} {int(g)}\n" for q, d, g in zip(qids, doc_ids, grades, strict=True)))
        self._tsv.writerows(
            [q, d, *(f"{p:.5f}" for p in prob), f"{s:.5f}", int(g)]
            for q, d, s, g, prob in zip(qids, doc_ids, scores, grades, probs, strict=True)
        )

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        else:
            self._qrels.close()
            self._probs.close()

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
