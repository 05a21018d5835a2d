"""Retrieval and query-synthesis figures (prints them; not a test).

    python bench/retrieval_bench.py [--docs 12] [--queries-per-doc 1] [--model relabel-local/qwen2.5-coder-0.5b]

1. bm25s on ../shared/benchmarks/trec-dl-2019 (9,139 judged MS MARCO passages, 43 queries): indexing
   docs/s, mmap reload time, top-100 retrieval queries/s.
2. Candidate pools on the demo corpus: index build, near-duplicate and pool build times, with the demo's
   reference queries (seed = their best-graded document) and their BM25 difficulty as a yardstick.
3. The query generator on a fixed sample of demo documents, for each queries-per-document setting:
   LLM calls/s, queries/s, reject reasons, diversity, length and type mix, and BM25 difficulty of the
   accepted queries against the whole demo corpus. Answers are not cached (in-memory DuckDB).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb  # noqa: E402

from relabel.corpus.documents import scan_directory  # noqa: E402
from relabel.evaluation.judgments import demo_corpus_dir, load_demo_judgments, read_queries  # noqa: E402
from relabel.llm import local as local_llm  # noqa: E402
from relabel.llm.client import LLMClient  # noqa: E402
from relabel.retrieval import BM25Index, build_pools, near_duplicates, seed_ranks  # noqa: E402
from relabel.synthesis.queries import synthesize_queries  # noqa: E402
from relabel.synthesis.query_stats import candidate_diversity, difficulty, difficulty_by_type, query_set_stats  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TREC_DL_2019 = REPO.parent / "shared" / "benchmarks" / "trec-dl-2019"


def _print(title: str, values: dict[str, Any]) -> None:
    print(f"\n## {title}")
    for key, value in values.items():
        print(f"  {key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def bm25_throughput(folder: Path) -> None:
    """Index, reload and top-100 retrieval on a TREC folder."""
    if not folder.exists():
        print(f"\n## bm25s on {folder.name}: skipped, {folder} not found")
        return
    lines = (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [{"doc_id": d["docid"], "title": "", "text": d["text"]} for d in map(json.loads, lines) if d]
    queries = list(read_queries(folder / "queries.tsv").values())
    started = time.perf_counter()
    index = BM25Index.build(docs)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        started = time.perf_counter()
        loaded = BM25Index.load(Path(tmp))
        load_s = time.perf_counter() - started
        rounds, started = 0, time.perf_counter()
        while rounds < 3 or time.perf_counter() - started < 2.0:
            loaded.search(queries, k=100)
            rounds += 1
        search_s = time.perf_counter() - started
    _print(
        f"bm25s on {folder.name}",
        {
            "documents": len(docs),
            "passages": index.n_passages,
            "index_s": round(build_s, 2),
            "index_docs_per_s": round(len(docs) / build_s),
            "mmap_reload_s": round(load_s, 3),
            "queries": len(queries),
            "top100_queries_per_s": round(rounds * len(queries) / search_s),
        },
    )


def demo_pools(documents: list[dict[str, Any]]) -> BM25Index:
    """Index and pool build times on the demo corpus, with the reference queries as seeds."""
    started = time.perf_counter()
    index = BM25Index.build(documents)
    build_s = time.perf_counter() - started
    judged = load_demo_judgments().sort_values(["qid", "grade", "doc_id"], ascending=[True, False, True])
    best = judged.drop_duplicates("qid")
    queries = [{"qid": r.qid, "doc_id": r.doc_id, "query_text": r.query_text} for r in best.itertuples()]
    started = time.perf_counter()
    dupes = near_duplicates({d["doc_id"]: d["text"] for d in documents}, among={q["doc_id"] for q in queries})
    dupes_s = time.perf_counter() - started
    started = time.perf_counter()
    pools = build_pools(queries, index, dupes, bm25_negatives=10, random_negatives=2, seed=13)
    pools_s = time.perf_counter() - started
    _print(
        "candidate pools on the demo corpus (reference queries, k=10 BM25 + 2 random negatives)",
        {
            "documents": len(documents),
            "passages": index.n_passages,
            "index_s": round(build_s, 3),
            "near_duplicates_s": round(dupes_s, 3),
            "queries": len(queries),
            "pool_rows": len(pools),
            "pool_build_s": round(pools_s, 3),
            "pool_queries_per_s": round(len(queries) / pools_s),
            "reference_query_difficulty": difficulty([p["bm25_rank"] for p in pools if p["role"] == "seed"]),
        },
    )
    return index


def sample(documents: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Every k-th document in doc-id order, so the sample spans the folders."""
    ordered = sorted(documents, key=lambda d: d["doc_id"])
    step = max(1, len(ordered) // n)
    return ordered[::step][:n]


def query_generation(model: str, documents: list[dict[str, Any]], index: BM25Index, per_doc: int) -> None:
    """Write queries for the documents with the model and print speed and quality."""
    client = LLMClient(model)
    started = time.perf_counter()
    accepted, rejects = synthesize_queries(
        duckdb.connect(), client, documents, queries_per_doc=per_doc, max_doc_chars=500
    )
    elapsed = time.perf_counter() - started
    generated = accepted + [r for r in rejects if r["query_text"]]
    ranks = seed_ranks(accepted, index)
    _print(
        f"query generation: {model}, {len(documents)} demo documents, {per_doc} per document ({per_doc + 1} asked)",
        {
            "seconds": round(elapsed, 1),
            "llm_calls_per_s": round(client.calls_made / elapsed, 3),
            "generated_queries_per_s": round(len(generated) / elapsed, 3),
            "accepted_queries_per_s": round(len(accepted) / elapsed, 3),
            "accepted": len(accepted),
            "documents_without_query": len(documents) - len({q["doc_id"] for q in accepted}),
            "reject_reasons": dict(Counter(r["reason"] for r in rejects).most_common()),
            "accepted_set": query_set_stats(accepted),
            "all_generated": candidate_diversity(generated),
            "difficulty": difficulty(ranks),
            "difficulty_by_type": difficulty_by_type(ranks, [q["query_type"] for q in accepted]),
            "examples": [f"{q['query_type']}: {q['query_text']}" for q in accepted[:8]],
            "reject_examples": [f"{r['reason']}: {r['query_text']}" for r in rejects[:6]],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=12, help="demo documents for the query generator")
    parser.add_argument("--queries-per-doc", default="1", help="comma-separated settings, e.g. 1,4")
    parser.add_argument("--model", default="relabel-local/qwen2.5-coder-0.5b")
    parser.add_argument("--skip-llm", action="store_true")
    args = parser.parse_args()
    total = time.perf_counter()
    bm25_throughput(TREC_DL_2019)
    documents = [d.as_row() for d in scan_directory(demo_corpus_dir())[0]]
    index = demo_pools(documents)
    if not args.skip_llm:
        if args.model.startswith(local_llm.PROVIDER + "/"):
            started = time.perf_counter()
            local_llm.local_server(args.model.split("/", 1)[1])
            print(f"\n(model load {time.perf_counter() - started:.1f} s, not counted below)")
        for per_doc in (int(n) for n in args.queries_per_doc.split(",")):
            query_generation(args.model, sample(documents, args.docs), index, per_doc)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
