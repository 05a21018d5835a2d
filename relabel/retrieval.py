"""BM25 over the seed corpus (bm25s + PyStemmer) and candidate pools with hard and random negatives.

Every document is indexed as one or more passages (``PASSAGE_WORDS`` words, overlapping by
``PASSAGE_WORDS - PASSAGE_STRIDE``), each carrying the title (twice, a cheap boost) and the metadata
(author, path words, document type, modified date with its month name); a document's score is its best
passage's score (maxP), so a long document is neither favoured for its length nor lost in it."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from relabel.synthesis.query_stats import normalize

DOC_IDS_FILE = "doc_ids.json"
PASSAGES_FILE = "passages.json"
PASSAGE_WORDS = 200
PASSAGE_STRIDE = 150
MONTHS = "january february march april may june july august september october november december".split()


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """bm25s tokens: lower-cased words of two or more characters, English stopwords removed, Snowball stems."""
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


def _field(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def metadata_text(doc: Mapping[str, Any]) -> str:
    """The metadata words indexed with every passage: author, path, document type, modified date and
    its month name and year (so "march 2025" finds a document modified on 2025-03-14)."""
    modified = _field(doc, "modified")
    words = [_field(doc, "author"), _field(doc, "path").replace("/", " "), _field(doc, "doc_type")]
    if len(modified) >= 7 and modified[:4].isdigit() and modified[5:7].isdigit() and 1 <= int(modified[5:7]) <= 12:
        words += [modified, MONTHS[int(modified[5:7]) - 1], modified[:4]]
    return " ".join(w for w in words if w)


def split_passages(text: str, words: int = PASSAGE_WORDS, stride: int = PASSAGE_STRIDE) -> list[str]:
    """Overlapping windows of ``words`` words every ``stride`` words; the last window ends with the text."""
    tokens = text.split()
    if len(tokens) <= words:
        return [text]
    starts = list(range(0, len(tokens) - words + 1, stride))
    if starts[-1] + words < len(tokens):
        starts.append(len(tokens) - words)
    return [" ".join(tokens[start : start + words]) for start in starts]


def passage_texts(doc: Mapping[str, Any], words: int = PASSAGE_WORDS, stride: int = PASSAGE_STRIDE) -> list[str]:
    """The indexed texts of one document: title twice, metadata, then one body passage each."""
    title = _field(doc, "title")
    head = f"{title} {title} {metadata_text(doc)}"
    return [f"{head} {passage}" for passage in split_passages(_field(doc, "text"), words, stride)]


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first, ties broken by position (deterministic)."""
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        candidates = np.arange(n)
    else:
        cut = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= cut)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


@dataclass
class BM25Index:
    """A bm25s retriever over passages, the doc ids in index order and each document's first passage."""

    retriever: bm25s.BM25
    doc_ids: list[str]
    starts: np.ndarray
    passage_words: int = PASSAGE_WORDS
    passage_stride: int = PASSAGE_STRIDE

    @classmethod
    def build(
        cls, documents: Sequence[Mapping[str, Any]], *, passage_words: int = PASSAGE_WORDS, stride: int = PASSAGE_STRIDE
    ) -> BM25Index:
        """Index the documents' passages (stemmed, English stopwords removed)."""
        if not documents:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        texts: list[str] = []
        starts: list[int] = []
        for doc in documents:
            starts.append(len(texts))
            texts.extend(passage_texts(doc, passage_words, stride))
        retriever = bm25s.BM25()
        retriever.index(tokenize(texts), show_progress=False)
        return cls(retriever, [str(d["doc_id"]) for d in documents], np.asarray(starts), passage_words, stride)

    @property
    def n_passages(self) -> int:
        """Number of indexed passages."""
        return int(self.retriever.scores["num_docs"])

    def save(self, directory: Path) -> None:
        """Persist the index, its doc ids and the passage layout under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(directory))
        (directory / DOC_IDS_FILE).write_text(json.dumps(self.doc_ids))
        layout = {"starts": self.starts.tolist(), "passage_words": self.passage_words, "stride": self.passage_stride}
        (directory / PASSAGES_FILE).write_text(json.dumps(layout))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Reload a saved index, memory-mapped (an index saved without a passage layout has one per doc)."""
        retriever = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
        doc_ids = json.loads((directory / DOC_IDS_FILE).read_text())
        layout_file = directory / PASSAGES_FILE
        if not layout_file.exists():
            return cls(retriever, doc_ids, np.arange(len(doc_ids)))
        layout = json.loads(layout_file.read_text())
        return cls(retriever, doc_ids, np.asarray(layout["starts"]), layout["passage_words"], layout["stride"])

    def doc_scores(self, queries: Sequence[str]) -> Iterator[np.ndarray]:
        """For each query, every document's score (its best passage's BM25 score), in index order."""
        if not queries:
            return
        for tokens in tokenize(queries):
            if not tokens:
                yield np.zeros(len(self.doc_ids), dtype=np.float32)
                continue
            passage_scores = np.asarray(self.retriever.get_scores(tokens))
            yield np.maximum.reduceat(passage_scores, self.starts)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-k (doc_id, score) per query; documents with score 0 are left out."""
        results = []
        for scores in self.doc_scores(queries):
            top = top_indices(scores, k)
            results.append([(self.doc_ids[i], float(scores[i])) for i in top if scores[i] > 0])
        return results


def rank_of(scores: np.ndarray, position: int) -> int | None:
    """1-based rank of one document under ``top_indices``' order, or ``None`` when its score is 0."""
    score = scores[position]
    if score <= 0:
        return None
    return int((scores > score).sum() + (scores[:position] == score).sum() + 1)


def seed_ranks(queries: Sequence[Mapping[str, Any]], index: BM25Index) -> list[int | None]:
    """The rank of each query's seed document (``doc_id``) for its ``query_text``; ``None`` when BM25
    does not retrieve it (no shared term) or it is not in the index."""
    position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    ranks: list[int | None] = []
    for query, scores in zip(queries, index.doc_scores([str(q["query_text"]) for q in queries]), strict=True):
        seed = position.get(str(query["doc_id"]))
        ranks.append(None if seed is None else rank_of(scores, seed))
    return ranks


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicates(
    texts: Mapping[str, str], threshold: float = 0.8, *, among: Iterable[str] | None = None, max_df: int = 100
) -> dict[str, set[str]]:
    """For each doc id (or each of ``among``), the other doc ids whose 5-word-shingle Jaccard similarity is
    at least ``threshold``. Candidates come from an inverted index over shingles; a shingle found in more
    than ``max_df`` documents (boilerplate) proposes none, but identical texts are always duplicates."""
    shingles = {doc_id: _shingles(text) for doc_id, text in texts.items()}
    postings: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for doc_id, doc_shingles in shingles.items():
        for shingle in doc_shingles:
            postings[shingle].append(doc_id)
    by_text: dict[str, list[str]] = defaultdict(list)
    for doc_id, text in texts.items():
        by_text[normalize(text)].append(doc_id)
    wanted = sorted(shingles) if among is None else sorted(set(among) & set(shingles))
    dupes: dict[str, set[str]] = {}
    for a in wanted:
        shared: Counter[str] = Counter()
        for shingle in shingles[a]:
            docs = postings[shingle]
            if len(docs) <= max_df:
                shared.update(docs)
        found = {b for b in by_text[normalize(texts[a])] if b != a}
        for b, common in shared.items():
            union = len(shingles[a]) + len(shingles[b]) - common
            if b != a and union and common / union >= threshold:
                found.add(b)
        dupes[a] = found
    return dupes


def near_duplicate_candidates(
    index: BM25Index, texts: Mapping[str, str], among: Iterable[str], m: int = 100
) -> dict[str, str]:
    """The texts ``near_duplicates`` needs to find the near-copies of ``among`` without shingling the whole
    corpus: those documents and the ``m`` documents BM25 ranks highest for each one's text (a near-copy shares
    nearly every word, so it ranks at the top; ``m`` matches the boilerplate cut-off ``max_df``)."""
    wanted = sorted(set(among) & set(texts))
    keep = set(wanted)
    for hits in index.search([texts[d] for d in wanted], m) if wanted else []:
        keep.update(doc_id for doc_id, _ in hits)
    return {doc_id: texts[doc_id] for doc_id in keep if doc_id in texts}


def build_pools(
    queries: Sequence[Mapping[str, Any]],
    index: BM25Index,
    duplicates: Mapping[str, set[str]],
    *,
    bm25_negatives: int,
    random_negatives: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Per query: its seed document, the top BM25 hard negatives (seed and its near-duplicates excluded,
    score > 0) and random negatives from the rest; every row keeps the document's exact BM25 rank and
    score for the query (``None`` when BM25 does not retrieve it). Deterministic for a given ``seed``."""
    position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    rows: list[dict[str, Any]] = []

    def row(qid: str, doc_id: str, role: str, scores: np.ndarray) -> dict[str, Any]:
        at = position.get(doc_id)
        rank = None if at is None else rank_of(scores, at)
        score = None if rank is None or at is None else float(scores[at])
        return {"qid": qid, "doc_id": doc_id, "role": role, "bm25_rank": rank, "bm25_score": score}

    for query, scores in zip(queries, index.doc_scores([str(q["query_text"]) for q in queries]), strict=True):
        qid, seed_doc = str(query["qid"]), str(query["doc_id"])
        excluded = {seed_doc} | set(duplicates.get(seed_doc, set()))
        rows.append(row(qid, seed_doc, "seed", scores))
        top = top_indices(scores, bm25_negatives + len(excluded))
        hard = [index.doc_ids[i] for i in top if scores[i] > 0 and index.doc_ids[i] not in excluded][:bm25_negatives]
        rows.extend(row(qid, doc_id, "bm25_negative", scores) for doc_id in hard)
        rest = sorted(set(index.doc_ids) - excluded - set(hard))
        rng = random.Random(f"{seed}:{qid}")
        rows.extend(
            row(qid, doc_id, "random_negative", scores) for doc_id in rng.sample(rest, min(random_negatives, len(rest)))
        )
    return rows


def query_pools(
    queries: Sequence[Mapping[str, Any]],
    index: BM25Index,
    texts: Mapping[str, str],
    *,
    bm25_negatives: int,
    random_negatives: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``build_pools`` for ``queries``, their seeds' near-copies (among ``texts``) excluded."""
    if not queries:
        return []
    duplicates = near_duplicates(texts, among={q["doc_id"] for q in queries})
    return build_pools(
        queries, index, duplicates, bm25_negatives=bm25_negatives, random_negatives=random_negatives, seed=seed
    )


# ---------------------------------------------------------------- incremental updates: token reuse, re-retrieval


def entering_pairs(
    results: Sequence[Sequence[tuple[str, float]]],
    qids: Sequence[str],
    new_docs: Mapping[str, str],
) -> list[dict[str, Any]]:
    """(existing query, new document version) pairs whose document is in the query's top-k ``results``
    (one ranked ``(doc_id, score)`` list per query); ``new_docs`` maps doc id -> content hash."""
    rows: list[dict[str, Any]] = []
    for qid, hits in zip(qids, results, strict=True):
        for rank, (doc_id, score) in enumerate(hits, start=1):
            if doc_id in new_docs:
                rows.append(
                    {
                        "qid": qid,
                        "doc_id": doc_id,
                        "content_hash": new_docs[doc_id],
                        "role": "entered_top_k",
                        "bm25_rank": rank,
                        "bm25_score": score,
                    }
                )
    return rows


TOKENS_FILE = "passage_tokens.json"


def version_key(doc: Mapping[str, Any]) -> str:
    """Key of a document version in the token cache (its doc id changes the indexed path words)."""
    return f"{doc['doc_id']}@{doc['content_hash']}"


def build_bm25(
    documents: Sequence[Mapping[str, Any]], cached_tokens: Mapping[str, list[list[str]]] | None = None
) -> tuple[BM25Index, dict[str, list[list[str]]], int]:
    """A BM25 index over ``documents`` (same passages and tokens as ``BM25Index.build``). With
    ``cached_tokens`` (version key -> passage tokens of a previous index) only versions not in the cache are
    tokenized: the incremental update. Returns the index, the tokens per version and how many passages
    were tokenized now."""
    if not documents:
        raise ValueError("cannot build a BM25 index over an empty corpus")
    cached = cached_tokens or {}
    pending = [doc for doc in documents if version_key(doc) not in cached]
    texts = [passage_texts(doc) for doc in pending]
    flat = tokenize([t for doc_texts in texts for t in doc_texts]) if pending else []
    tokens: dict[str, list[list[str]]] = {}
    at = 0
    for doc, doc_texts in zip(pending, texts, strict=True):
        tokens[version_key(doc)] = [list(t) for t in flat[at : at + len(doc_texts)]]
        at += len(doc_texts)
    corpus: list[list[str]] = []
    starts: list[int] = []
    for doc in documents:
        key = version_key(doc)
        doc_tokens = tokens.get(key) or cached[key]
        tokens[key] = doc_tokens
        starts.append(len(corpus))
        corpus.extend(doc_tokens)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    index = BM25Index(retriever, [str(d["doc_id"]) for d in documents], np.asarray(starts))
    return index, tokens, sum(len(t) for t in texts)


def save_tokens(directory: Path, tokens: Mapping[str, list[list[str]]]) -> None:
    """Store the passage tokens next to an index, for the next incremental update."""
    (directory / TOKENS_FILE).write_text(json.dumps(tokens, sort_keys=True))


def load_tokens(directory: Path | None) -> dict[str, list[list[str]]]:
    """The passage tokens stored with an index (empty when there is none)."""
    if directory is None or not (directory / TOKENS_FILE).exists():
        return {}
    return json.loads((directory / TOKENS_FILE).read_text())


def terms_overlap(queries: Sequence[str], docs_tokens: Iterable[list[list[str]]]) -> list[bool]:
    """For each query, whether it shares a stemmed term with the new documents' passages: only those
    queries can rank a new document above score 0, so only they are retrieved again."""
    vocabulary = {token for doc in docs_tokens for passage in doc for token in passage}
    return [bool(vocabulary.intersection(tokens)) for tokens in tokenize(queries)] if queries else []


@dataclass
class Reretrieval:
    """What re-retrieving existing queries found: entering pairs, each retrieved query's new top-k (doc ids) to
    store, and how many queries were scored, ruled out by the bound, or searched in full."""

    entering: list[dict[str, Any]]
    top_k: dict[str, list[str]]
    scored: int
    ruled_out: int
    searched: int


def reretrieve(
    index: BM25Index,
    queries: Sequence[tuple[str, str]],
    new_docs: Mapping[str, str],
    new_tokens: Iterable[list[list[str]]],
    stored: Mapping[str, Sequence[str]],
    k: int,
) -> Reretrieval:
    """(existing query, new document) pairs whose document enters the query's top ``k`` in ``index``, exactly as
    a full search would find them, at a cost that does not grow with the corpus for most queries.

    ``queries``: (qid, text) of the existing queries; only those sharing a stemmed term with a new document
    (``new_tokens``: the new versions' passage tokens, as indexed) are scored (one sparse sum over the query's
    postings). ``stored`` holds each query's top-k doc ids from its last search: their scores in the new index
    are a lower bound on the query's k-th best score among the documents that were there before, so when every
    new document scores strictly below it none can enter and the full search (maxP over every document, top-k)
    is skipped. A query without a stored top-k (or whose stored documents are gone) is searched in full.
    Returns the entering pairs and the new top-k of every query searched in full."""
    position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    ends = np.append(index.starts[1:], index.n_passages)
    new_positions = [position[d] for d in new_docs if d in position]
    vocabulary = {token for doc in new_tokens for passage in doc for token in passage}
    out = Reretrieval([], {}, 0, 0, 0)
    if not new_positions:
        return out
    texts = [text for _, text in queries]
    for (qid, _), tokens in zip(queries, tokenize(texts) if texts else [], strict=True):
        if not tokens or vocabulary.isdisjoint(tokens):
            continue
        out.scored += 1
        passages = np.asarray(index.retriever.get_scores(tokens))

        def score(i: int, passages: np.ndarray = passages) -> float:
            return float(passages[index.starts[i] : ends[i]].max())

        best_new = max(score(i) for i in new_positions)
        if best_new <= 0:
            out.ruled_out += 1
            continue
        known = [position[d] for d in stored.get(qid, ()) if d in position and d not in new_docs]
        if len(known) >= k and best_new < sorted(score(i) for i in known)[-k]:
            out.ruled_out += 1
            continue
        out.searched += 1
        scores = np.maximum.reduceat(passages, index.starts)
        top = [int(i) for i in top_indices(scores, k) if scores[i] > 0]
        out.top_k[qid] = [index.doc_ids[i] for i in top]
        out.entering += entering_pairs([[(index.doc_ids[i], float(scores[i])) for i in top]], [qid], new_docs)
    return out


def top_k_of(index: BM25Index, queries: Sequence[tuple[str, str]], k: int) -> dict[str, list[str]]:
    """Each query's top-k doc ids (score > 0) in ``index`` by a full search."""
    if not queries:
        return {}
    results = index.search([text for _, text in queries], k)
    return {qid: [doc_id for doc_id, _ in hits] for (qid, _), hits in zip(queries, results, strict=True)}
