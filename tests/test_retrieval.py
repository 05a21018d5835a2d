"""BM25 index and candidate pools."""

from pathlib import Path

import pytest

from relabel.documents import scan_directory
from relabel.retrieval import BM25Index, build_pools, near_duplicates

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
