"""BM25 over the seed corpus (bm25s + PyStemmer) and candidate pools with hard and random negatives."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from relabel.query_synthesis import normalize

DOC_IDS_FILE = "doc_ids.json"


def _tokens(texts: Sequence[str]) -> list[list[str]]:
    stemmer = Stemmer.Stemmer("english")
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


def index_text(doc: dict[str, Any]) -> str:
    """The indexed fields: title (twice, a cheap boost), metadata and body."""
    return " ".join([doc["title"], doc["title"], doc["author"], doc["path"].replace("/", " "), doc["text"]])


@dataclass
class BM25Index:
    """A bm25s retriever plus the doc ids in index order."""

    retriever: bm25s.BM25
    doc_ids: list[str]

    @classmethod
    def build(cls, documents: Sequence[dict[str, Any]]) -> BM25Index:
        """Index the documents (stemmed, English stopwords removed)."""
        if not documents:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        retriever = bm25s.BM25()
        retriever.index(_tokens([index_text(d) for d in documents]), show_progress=False)
        return cls(retriever, [d["doc_id"] for d in documents])

    def save(self, directory: Path) -> None:
        """Persist the index and its doc ids under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(directory))
        (directory / DOC_IDS_FILE).write_text(json.dumps(self.doc_ids))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Reload a saved index, memory-mapped."""
        retriever = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
        return cls(retriever, json.loads((directory / DOC_IDS_FILE).read_text()))

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-k (doc_id, score) per query; documents with score 0 are left out."""
        k = min(k, len(self.doc_ids))
        indices, scores = self.retriever.retrieve(_tokens(queries), k=k, show_progress=False)
        results = []
        for row_idx, row_scores in zip(np.asarray(indices), np.asarray(scores), strict=True):
            results.append(
                [(self.doc_ids[int(i)], float(s)) for i, s in zip(row_idx, row_scores, strict=True) if s > 0]
            )
        return results


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicates(texts: dict[str, str], threshold: float = 0.8) -> dict[str, set[str]]:
    """For each doc id, the other doc ids whose 5-word-shingle Jaccard similarity is at least ``threshold``."""
    shingles = {doc_id: _shingles(text) for doc_id, text in texts.items()}
    ids = sorted(shingles)
    dupes: dict[str, set[str]] = {doc_id: set() for doc_id in ids}
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            union = len(shingles[a] | shingles[b])
            if union and len(shingles[a] & shingles[b]) / union >= threshold:
                dupes[a].add(b)
                dupes[b].add(a)
    return dupes


def build_pools(
    queries: Sequence[dict[str, Any]],
    index: BM25Index,
    duplicates: dict[str, set[str]],
    *,
    bm25_negatives: int,
    random_negatives: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Per query: its seed document, the top BM25 hard negatives (seed and its near-duplicates excluded)
    and random negatives. Deterministic for a given ``seed``."""
    depth = bm25_negatives + 1 + max((len(v) for v in duplicates.values()), default=0)
    hits = index.search([q["query_text"] for q in queries], k=depth)
    rows: list[dict[str, Any]] = []
    for query, ranked in zip(queries, hits, strict=True):
        seed_doc = query["doc_id"]
        excluded = {seed_doc} | duplicates.get(seed_doc, set())
        rank_of = {doc_id: (rank, score) for rank, (doc_id, score) in enumerate(ranked, start=1)}
        seed_rank, seed_score = rank_of.get(seed_doc, (None, None))
        rows.append(
            {"qid": query["qid"], "doc_id": seed_doc, "role": "seed", "bm25_rank": seed_rank, "bm25_score": seed_score}
        )
        chosen = [(doc_id, rank, score) for doc_id, (rank, score) in rank_of.items() if doc_id not in excluded]
        for doc_id, rank, score in chosen[:bm25_negatives]:
            rows.append(
                {"qid": query["qid"], "doc_id": doc_id, "role": "bm25_negative", "bm25_rank": rank, "bm25_score": score}
            )
        taken = excluded | {doc_id for doc_id, _, _ in chosen[:bm25_negatives]}
        rest = sorted(set(index.doc_ids) - taken)
        rng = random.Random(f"{seed}:{query['qid']}")
        for doc_id in rng.sample(rest, min(random_negatives, len(rest))):
            rank, score = rank_of.get(doc_id, (None, None))
            rows.append(
                {
                    "qid": query["qid"],
                    "doc_id": doc_id,
                    "role": "random_negative",
                    "bm25_rank": rank,
                    "bm25_score": score,
                }
            )
    return rows
