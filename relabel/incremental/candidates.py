"""The new (query, document version) pairs of one inbox batch: candidate pools for its new queries, and every
(existing query, new document) pair that enters the query's BM25 top-k, found without searching every query
again (``retrieval.reretrieve``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from relabel.incremental.rules import PairKey, unlabeled_pairs
from relabel.retrieval import (
    BM25Index,
    near_duplicate_candidates,
    passage_texts,
    query_pools,
    reretrieve,
    tokenize,
    top_k_of,
)

PAIR_COLUMNS = ["qid", "doc_id", "content_hash", "role", "bm25_rank", "bm25_score"]


@dataclass
class BatchCandidates:
    """The batch's unlabeled pairs (``PAIR_COLUMNS``), the top-k to store per query searched, and counts."""

    pairs: list[dict]
    top_k: dict[str, list[str]]
    stats: dict[str, int] = field(default_factory=dict)


def batch_candidates(
    index: BM25Index,
    current: pd.DataFrame,
    new_queries: pd.DataFrame,
    existing: pd.DataFrame,
    new_docs: Mapping[str, str],
    labeled: Sequence[PairKey],
    stored_top_k: Mapping[str, Sequence[str]],
    *,
    top_k: int,
    bm25_negatives: int,
    random_negatives: int,
    seed: int,
) -> BatchCandidates:
    """Pools (seed, BM25 hard and random negatives; the seeds' near-copies excluded) for ``new_queries``, plus
    the pairs of ``existing`` queries that ``new_docs`` (doc id -> content hash) enter in the top ``top_k``;
    pairs in ``labeled`` are left out. ``current`` holds the current document versions (doc_id, content_hash,
    text, ...)."""
    hashes = dict(zip(current["doc_id"], current["content_hash"], strict=True))
    texts = dict(zip(current["doc_id"], current["text"], strict=True))
    queries = new_queries.to_dict("records")
    # near-copies of the new queries' seeds are looked for among the documents BM25 ranks near each seed
    seeds = {q["doc_id"] for q in queries}
    pools = query_pools(
        queries,
        index,
        near_duplicate_candidates(index, texts, seeds),
        bm25_negatives=bm25_negatives,
        random_negatives=random_negatives,
        seed=seed,
    )
    for row in pools:
        row["content_hash"] = hashes[row["doc_id"]]
    # every current query keeps its top-k: the new queries' now, the existing ones' when they are searched again
    found_top_k = top_k_of(index, list(zip(new_queries["qid"], new_queries["query_text"], strict=True)), top_k)
    entering: list[dict] = []
    stats = {"existing_queries_retrieved": 0, "ruled_out": 0, "searched": 0}
    if new_docs and len(existing):
        # the new versions' passage tokens, as the index has them (tokenizing them beats loading every token)
        new_rows = current[current["doc_id"].isin(list(new_docs))].to_dict("records")
        found = reretrieve(
            index,
            list(zip(existing["qid"], existing["query_text"], strict=True)),
            new_docs,
            [tokenize(passage_texts(doc)) for doc in new_rows],
            stored_top_k,
            top_k,
        )
        entering = found.entering
        found_top_k.update(found.top_k)
        stats = {"existing_queries_retrieved": found.scored, "ruled_out": found.ruled_out, "searched": found.searched}
    # a query without a stored top-k (imported with the baseline, or stored with another k) is searched once
    first_time = [
        (q, t)
        for q, t in zip(existing["qid"], existing["query_text"], strict=True)
        if q not in stored_top_k and q not in found_top_k
    ]
    found_top_k.update(top_k_of(index, first_time, top_k))
    stats.update(pool_pairs=len(pools), entered_top_k=len(entering), first_time=len(first_time))
    return BatchCandidates(unlabeled_pairs([*pools, *entering], labeled), found_top_k, stats)
