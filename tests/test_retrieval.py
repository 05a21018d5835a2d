"""BM25 index and candidate pools."""

from pathlib import Path

import numpy as np
import pytest

from relabel.corpus.documents import scan_directory
from relabel.retrieval import (
    BM25Index,
    build_pools,
    metadata_text,
    near_duplicates,
    seed_ranks,
    split_passages,
    tokenize,
)

pytestmark = pytest.mark.unit


def _docs(tiny_corpus: Path) -> list[dict]:
    docs, _ = scan_directory(tiny_corpus)
    rows = [d.as_row() for d in docs]
    # an exact copy of the Windows VPN guide under another name: a near-duplicate of the seed
    rows.append({**rows[[r["doc_id"] for r in rows].index("it/vpn-windows.md")], "doc_id": "it/vpn-windows-copy.md"})
    return rows


def test_index_round_trip_and_ranking(tiny_corpus: Path, tmp_path: Path) -> None:
    index = BM25Index.build(_docs(tiny_corpus))
    index.save(tmp_path / "idx")
    loaded = BM25Index.load(tmp_path / "idx")
    hits = loaded.search(["hotel limit london expensify"], k=3)[0]
    assert hits[0][0] == "finance/expenses.json" and hits[0][1] > 0
    assert loaded.search(["hotel limit london expensify"], k=3) == index.search(["hotel limit london expensify"], k=3)


def test_pools_exclude_seed_duplicates_and_are_deterministic(tiny_corpus: Path) -> None:
    docs = _docs(tiny_corpus)
    index = BM25Index.build(docs)
    dupes = near_duplicates({d["doc_id"]: d["text"] for d in docs})
    assert dupes["it/vpn-windows.md"] == {"it/vpn-windows-copy.md"}
    queries = [{"qid": "q1", "doc_id": "it/vpn-windows.md", "query_text": "globalprotect vpn client okta"}]
    pools = build_pools(queries, index, dupes, bm25_negatives=2, random_negatives=1, seed=7)
    roles = [(p["doc_id"], p["role"]) for p in pools]
    assert roles[0] == ("it/vpn-windows.md", "seed")
    assert "it/vpn-windows-copy.md" not in [doc for doc, _ in roles]
    assert ("it/vpn-mac.txt", "bm25_negative") in roles
    assert sum(role == "random_negative" for _, role in roles) == 1
    assert len({doc for doc, _ in roles}) == len(roles)
    assert build_pools(queries, index, dupes, bm25_negatives=2, random_negatives=1, seed=7) == pools
    assert pools[0]["bm25_rank"] in (1, 2)  # the seed or its copy ranks first


def test_empty_corpus_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Index.build([])


def _long_doc() -> dict:
    filler = " ".join(f"routine{i % 97} shipment{i % 89}" for i in range(300))  # 600 words
    return {
        "doc_id": "ops/handbook.md",
        "title": "Warehouse operations handbook",
        "author": "Lee Ops",
        "path": "ops/handbook.md",
        "modified": "2024-11-02",
        "doc_type": "handbook",
        "text": f"{filler} To roll back zebra scanner firmware, hold the trigger for ten seconds.",
    }


def test_passages_overlap_and_cover_the_end() -> None:
    text = " ".join(f"w{i}" for i in range(500))
    passages = split_passages(text, words=200, stride=150)
    assert [p.split()[0] for p in passages] == ["w0", "w150", "w300"]
    assert passages[-1].split()[-1] == "w499" and all(len(p.split()) == 200 for p in passages)
    assert split_passages("short text", words=200, stride=150) == ["short text"]


def test_long_documents_score_as_their_best_passage(tiny_corpus: Path, tmp_path: Path) -> None:
    docs = [*_docs(tiny_corpus), _long_doc()]
    index = BM25Index.build(docs)
    assert index.n_passages == len(docs) - 1 + len(split_passages(_long_doc()["text"]))
    query = "zebra scanner firmware roll back"
    assert index.search([query], k=1)[0][0][0] == "ops/handbook.md"
    passage_scores = index.retriever.get_scores(tokenize([query])[0])
    doc_scores = next(index.doc_scores([query]))
    long_at = index.doc_ids.index("ops/handbook.md")
    assert doc_scores[long_at] == pytest.approx(float(passage_scores[index.starts[long_at] :].max()))
    index.save(tmp_path / "idx")
    loaded = BM25Index.load(tmp_path / "idx")
    assert loaded.n_passages == index.n_passages and list(loaded.starts) == list(index.starts)
    assert np.array_equal(next(loaded.doc_scores([query])), doc_scores)


def test_metadata_fields_are_searchable(tiny_corpus: Path) -> None:
    index = BM25Index.build(_docs(tiny_corpus))
    assert index.search(["dana ops march 2025"], k=1)[0][0][0] in ("it/vpn-windows.md", "it/vpn-windows-copy.md")
    assert index.search(["aisha policy"], k=1)[0][0][0] == "hr/leave.html"
    assert (
        metadata_text({"author": "A", "path": "x/y.md", "doc_type": "faq", "modified": "2025-13-01"}) == "A x y.md faq"
    )


def test_pool_ranks_are_exact_and_seed_ranks_cover_unretrieved_seeds(tiny_corpus: Path) -> None:
    docs = [*_docs(tiny_corpus), _long_doc()]
    index = BM25Index.build(docs)
    dupes = near_duplicates({d["doc_id"]: d["text"] for d in docs})
    queries = [
        {"qid": "q1", "doc_id": "ops/handbook.md", "query_text": "zebra scanner firmware"},
        {"qid": "q2", "doc_id": "eng/kafka.md", "query_text": "vpn client globalprotect"},
        {"qid": "q3", "doc_id": "hr/leave.html", "query_text": "qwertyuiop"},
    ]
    pools = build_pools(queries, index, dupes, bm25_negatives=3, random_negatives=2, seed=1)
    assert build_pools(queries, index, dupes, bm25_negatives=3, random_negatives=2, seed=1) == pools
    ranking = index.search(["vpn client globalprotect"], k=len(docs))[0]
    q2 = [p for p in pools if p["qid"] == "q2"]
    hard = [p for p in q2 if p["role"] == "bm25_negative"]
    assert [p["doc_id"] for p in hard] == [doc for doc, _ in ranking if doc != "eng/kafka.md"][:3]
    assert [p["bm25_rank"] for p in hard] == [[doc for doc, _ in ranking].index(p["doc_id"]) + 1 for p in hard]
    assert all(p["doc_id"] != "eng/kafka.md" for p in q2 if p["role"] != "seed")
    assert seed_ranks(queries, index) == [1, None, None]
    q3 = [p for p in pools if p["qid"] == "q3"]
    assert [p["role"] for p in q3] == ["seed", "random_negative", "random_negative"], "no BM25 hit, no hard negative"
    assert all(p["bm25_rank"] is None and p["bm25_score"] is None for p in q3)


def test_near_duplicates_for_selected_documents() -> None:
    texts = {"a": "one two three four five six", "b": "one two three four five six", "c": "seven eight nine ten"}
    assert near_duplicates(texts, among=["a"]) == {"a": {"b"}}
    assert near_duplicates(texts, max_df=0) == {"a": {"b"}, "b": {"a"}, "c": set()}, "identical texts always match"
