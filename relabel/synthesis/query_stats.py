"""Quality of a synthetic query set: near-duplicates, diversity, length and type mix, BM25 difficulty."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

from relabel.checks.expectations import CheckOutcome

NEAR_DUPLICATE_JACCARD = 0.75
MAX_COLLAPSED_SHARE = 0.5
ENGLISH_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)


def normalize(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced form used for duplicate and copy tests."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def content_terms(text: str) -> frozenset[str]:
    """Stemmed words without English stopwords (all words if only stopwords remain): the unit of
    near-duplicate tests, so word order, inflection and filler words do not hide a repeat."""
    words = normalize(text).split()
    content = [w for w in words if w not in ENGLISH_STOPWORDS] or words
    return frozenset(_stemmer().stemWords(content))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two term sets (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class NearDuplicateIndex:
    """Queries seen so far, found again by content-term Jaccard >= ``threshold`` (inverted index on terms)."""

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._terms: list[frozenset[str]] = []
        self._labels: list[Any] = []
        self._postings: dict[str, list[int]] = defaultdict(list)

    def matches(self, terms: frozenset[str]) -> list[int]:
        """Positions of the stored queries that are near-duplicates of ``terms``."""
        seen: set[int] = set()
        found = []
        for term in terms:
            for position in self._postings.get(term, ()):
                if position not in seen:
                    seen.add(position)
                    if jaccard(terms, self._terms[position]) >= self.threshold:
                        found.append(position)
        return sorted(found)

    def find(self, text: str) -> Any | None:
        """The label of the first stored near-duplicate of ``text``, or ``None``."""
        found = self.matches(content_terms(text))
        return self._labels[found[0]] if found else None

    def add(self, text: str, label: Any) -> None:
        """Store a query under ``label``."""
        terms = content_terms(text)
        for term in terms:
            self._postings[term].append(len(self._terms))
        self._terms.append(terms)
        self._labels.append(label)


def _near_duplicate_neighbours(texts: Sequence[str], threshold: float) -> list[list[int]]:
    """For each text, the positions of the other texts that are its near-duplicates."""
    index = NearDuplicateIndex(threshold)
    for position, text in enumerate(texts):
        index.add(text, position)
    return [[j for j in index.matches(content_terms(text)) if j != i] for i, text in enumerate(texts)]


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Distinct-n: distinct word n-grams over all n-grams of the set (``None`` when there are none)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = normalize(text).split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return round(len(set(grams)) / len(grams), 4) if grams else None


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def length_stats(texts: Sequence[str]) -> dict[str, Any]:
    """Words per query (mean, quartiles, extremes, histogram) and mean characters."""
    words = np.array([len(normalize(t).split()) for t in texts]) if texts else np.zeros(0)
    if not len(words):
        return {"queries": 0}
    buckets = {"1-2": (1, 2), "3-4": (3, 4), "5-8": (5, 8), "9+": (9, 10**6)}
    return {
        "queries": len(texts),
        "words_mean": round(float(words.mean()), 2),
        "words_min": int(words.min()),
        "words_p25": float(np.percentile(words, 25)),
        "words_median": float(np.median(words)),
        "words_p75": float(np.percentile(words, 75)),
        "words_max": int(words.max()),
        "chars_mean": round(float(np.mean([len(t) for t in texts])), 1),
        "histogram": {name: int(((words >= lo) & (words <= hi)).sum()) for name, (lo, hi) in buckets.items()},
    }


def query_set_stats(queries: Sequence[Mapping[str, Any]], threshold: float = NEAR_DUPLICATE_JACCARD) -> dict[str, Any]:
    """Diversity (distinct-1/2, share of queries with a near-duplicate anywhere in the set), length and
    type distribution of a query set (rows with ``query_text`` and optionally ``query_type``)."""
    texts = [str(q["query_text"]) for q in queries]
    neighbours = _near_duplicate_neighbours(texts, threshold)
    types = Counter(str(q.get("query_type") or "unspecified") for q in queries)
    return {
        "queries": len(texts),
        "documents": len({q.get("doc_id") for q in queries}),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "near_duplicate_share": _share(sum(1 for n in neighbours if n), len(texts)),
        "length": length_stats(texts),
        "types": dict(sorted(types.items())),
    }


def candidate_diversity(
    candidates: Sequence[Mapping[str, Any]], threshold: float = NEAR_DUPLICATE_JACCARD
) -> dict[str, Any]:
    """Diversity of everything the generator wrote (accepted and rejected), rows with ``doc_id`` and
    ``query_text``. Per document: the share of its queries with a near-duplicate among its other
    queries; a document is *collapsed* when that share is above one half. Across documents: the share
    of queries with a near-duplicate written for another document (the same generic query everywhere)."""
    rows = [(str(c["doc_id"]), str(c["query_text"])) for c in candidates if c.get("query_text")]
    neighbours = _near_duplicate_neighbours([text for _, text in rows], threshold)
    by_doc: dict[str, list[int]] = defaultdict(list)
    for position, (doc_id, _) in enumerate(rows):
        by_doc[doc_id].append(position)
    within = [any(rows[j][0] == rows[i][0] for j in neighbours[i]) for i in range(len(rows))]
    across = [any(rows[j][0] != rows[i][0] for j in neighbours[i]) for i in range(len(rows))]
    judged = {doc: pos for doc, pos in by_doc.items() if len(pos) >= 2}
    collapsed = sorted(doc for doc, pos in judged.items() if sum(within[i] for i in pos) / len(pos) > 0.5)
    return {
        "candidates": len(rows),
        "documents_with_2_or_more": len(judged),
        "collapsed_documents": len(collapsed),
        "collapsed_document_share": _share(len(collapsed), len(judged)),
        "collapsed_examples": collapsed[:5],
        "within_document_near_duplicate_share": _share(sum(within), len(rows)),
        "cross_document_near_duplicate_share": _share(sum(across), len(rows)),
    }


def diversity_outcome(candidates: pd.DataFrame, max_share: float = MAX_COLLAPSED_SHARE) -> CheckOutcome:
    """Fails when the query set collapsed: more than ``max_share`` of the documents (with two or more
    queries) are collapsed, or more than ``max_share`` of all queries repeat a query of another document.
    With one query per document only the second test can fail."""
    name = f"query_diversity(max_share={max_share})"
    if candidates.empty:
        return CheckOutcome(name, False, "no generated queries to judge", {"candidates": 0})
    stats = candidate_diversity(candidates.to_dict("records"))
    doc_share, cross_share = stats["collapsed_document_share"], stats["cross_document_near_duplicate_share"]
    passed = doc_share <= max_share and cross_share <= max_share
    text = (
        f"{stats['collapsed_documents']} of {stats['documents_with_2_or_more']} documents collapsed "
        f"({doc_share:.0%}), {cross_share:.0%} of {stats['candidates']} queries repeat another document's query; "
        f"limit {max_share:.0%}"
    )
    return CheckOutcome(name, passed, text, {**stats, "max_share": max_share})


def near_duplicate_free(queries: pd.DataFrame, threshold: float = NEAR_DUPLICATE_JACCARD) -> CheckOutcome:
    """Passes when no two queries (``query_text``, optionally ``qid``) are near-duplicates by the synthesis
    filter's rule (stemmed content-term Jaccard >= ``threshold``; an inverted index keeps it linear)."""
    name = f"no_near_duplicates(jaccard>={threshold})"
    texts = [str(t) for t in queries.get("query_text", pd.Series(dtype=object))]
    neighbours = _near_duplicate_neighbours(texts, threshold)
    pairs = sorted({(min(i, j), max(i, j)) for i, found in enumerate(neighbours) for j in found})
    examples = [[texts[i], texts[j]] for i, j in pairs[:5]]
    return CheckOutcome(
        name,
        not pairs,
        f"{len(pairs)} near-duplicate pairs among {len(texts)} queries",
        {"queries": len(texts), "near_duplicate_pairs": len(pairs), "examples": examples},
    )


def difficulty(ranks: Sequence[int | None]) -> dict[str, Any]:
    """How hard the queries are for BM25: share whose seed document ranks 1st, in the top 10, in the
    top 100, is not retrieved at all (no shared term), and the mean reciprocal rank."""
    n = len(ranks)
    found = [int(r) for r in ranks if r is not None and not pd.isna(r)]
    return {
        "queries": n,
        "seed_rank_1": _share(sum(r == 1 for r in found), n),
        "seed_top_10": _share(sum(r <= 10 for r in found), n),
        "seed_top_100": _share(sum(r <= 100 for r in found), n),
        "seed_not_retrieved": _share(n - len(found), n),
        "mrr": round(sum(1 / r for r in found) / n, 4) if n else 0.0,
    }


def difficulty_by_type(ranks: Sequence[int | None], types: Sequence[str | None]) -> dict[str, dict[str, Any]]:
    """``difficulty`` per query type."""
    grouped: dict[str, list[int | None]] = defaultdict(list)
    for rank, kind in zip(ranks, types, strict=True):
        grouped[str(kind or "unspecified")].append(rank)
    return {kind: difficulty(values) for kind, values in sorted(grouped.items())}


def seed_retrieval_outcome(seed_rows: pd.DataFrame, min_top_100: float = 0.5) -> CheckOutcome:
    """Passes when at least ``min_top_100`` of the queries rank their seed document in BM25's top 100
    (rows: the seed rows of ``candidate_pools``); fewer means the queries do not describe their documents."""
    name = f"seed_in_bm25_top_100(min_share={min_top_100})"
    ranks = [None if pd.isna(r) else int(r) for r in seed_rows["bm25_rank"]] if not seed_rows.empty else []
    stats = difficulty(ranks)
    passed = bool(ranks) and stats["seed_top_100"] >= min_top_100
    text = f"{stats['seed_top_100']:.0%} of {len(ranks)} queries rank their seed in the BM25 top 100"
    return CheckOutcome(name, passed, text, {**stats, "min_share": min_top_100})
