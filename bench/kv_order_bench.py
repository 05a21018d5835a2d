"""Does the order of the teacher's calls let the server reuse its prefix (KV) cache? The demo's judged pairs, in
a shuffled order ("given": what an unordered SQL join hands over) and sorted by their messages ("prefix": a
query's documents back to back, so the rubric and the query are cached), graded by the embedded teacher.

    python bench/kv_order_bench.py [--model relabel-local/qwen2.5-coder-1.5b] [--pairs 48]

Prints, per order: seconds, labels/s, prompt tokens, prompt tokens served from the cache (``cached_tokens``,
reported by llama.cpp and by OpenAI for GPT-4o alike), tokens processed, and whether the grades match.
Every run starts from an empty answer cache (in-memory DuckDB), so every pair is a real call.
"""

from __future__ import annotations

import argparse
import time

import duckdb

from relabel.evaluation.judgments import load_demo_judgments
from relabel.llm.client import LLMClient
from relabel.llm.runner import CALL_ORDERS, CallPolicy
from relabel.teacher.grading import label_pairs
from resources.llm import DEFAULT_LLM_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_LLM_MODEL)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    judged = load_demo_judgments().sample(frac=1.0, random_state=args.seed).head(args.pairs)
    pairs = [{**row, "pair_source": "benchmark"} for row in judged.drop(columns="grade").to_dict("records")]
    client = LLMClient(args.model)
    label_pairs(duckdb.connect(), client, pairs[:1], use_logprobs=True)  # loads the model outside the timing
    results, grades = [], {}
    for order in CALL_ORDERS[::-1]:  # "given" first: the model's cache then holds one unrelated prompt
        conn = duckdb.connect()
        started = time.perf_counter()
        rows = label_pairs(conn, client, pairs, use_logprobs=True, policy=CallPolicy(order=order))
        seconds = time.perf_counter() - started
        grades[order] = [
            (r["qid"], r["doc_id"], r["grade"]) for r in sorted(rows, key=lambda r: (r["qid"], r["doc_id"]))
        ]
        tokens_in, cached = conn.execute("select sum(tokens_in), sum(cached_tokens) from llm_calls").fetchall()[0]
        results.append(
            {
                "order": order,
                "pairs": len(rows),
                "queries": len({r["qid"] for r in rows}),
                "seconds": round(seconds, 1),
                "labels_per_s": round(len(rows) / seconds, 3),
                "prompt_tokens": int(tokens_in),
                "cached_tokens": int(cached or 0),
                "processed_tokens": int(tokens_in - (cached or 0)),
            }
        )
    print(f"model {args.model}, {len(pairs)} demo pairs\n")
    print("| " + " | ".join(results[0]) + " |")
    print("|" + "---|" * len(results[0]))
    for row in results:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    given, prefix = results
    same = sum(a == b for a, b in zip(grades["given"], grades["prefix"], strict=True))
    print(
        f"\nprefix vs given: {given['seconds'] / prefix['seconds']:.2f}x faster, "
        f"{1 - prefix['processed_tokens'] / given['processed_tokens']:.0%} fewer prompt tokens processed; "
        f"same grade on {same}/{len(pairs)} pairs"
    )


if __name__ == "__main__":
    main()
