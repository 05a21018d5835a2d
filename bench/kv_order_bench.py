"""How much of the teacher's prompt does the server's prefix (KV) cache save, by prompt layout and call order?

The demo's pairs are graded by the embedded teacher with the shipped ``grade_nist`` prompt (document first,
then the query: a document's pairs share the rubric and the document) and with the same prompt rearranged
query first (the layout before 2026-11-29: a query's pairs share the rubric and the query), each in
"prefix" order (calls sorted by their messages, what the pipeline sends) and optionally in "given" order
(shuffled: what an unordered SQL join hands over).

    python bench/kv_order_bench.py [--warehouse data/warehouse.duckdb] [--pairs N] [--orders prefix,given]

With ``--warehouse`` the pairs are those a finished ``relabel run`` graded (its ``pairs_to_grade`` table: pool
pairs and judged pairs); without it, the demo corpus's 192 reference judgments. Prints, per arm: seconds,
labels/s, prompt tokens, tokens served from the cache (``cached_tokens``, reported by llama.cpp and by
OpenAI alike), tokens processed, and how many grades match the first arm's. Every arm starts from an empty
answer cache (in-memory DuckDB), so every pair is a real call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import duckdb
import pandas as pd

from relabel.evaluation.judgments import load_demo_judgments
from relabel.llm.client import LLMClient
from relabel.llm.prompts import PromptTemplate, load_prompt
from relabel.llm.runner import CallPolicy
from relabel.teacher.grading import DEFAULT_GRADE_PROMPT, label_pairs
from resources.llm import DEFAULT_LLM_MODEL

QUERY_LINE = "Query: $query\n"


def query_first(prompt: PromptTemplate) -> PromptTemplate:
    """The shipped grading prompt with the query moved in front of the document (the earlier layout)."""
    if QUERY_LINE not in prompt.user or not prompt.user.startswith("<document>"):
        raise ValueError(f"prompt {prompt.prompt_id} changed: update the ablation in bench/kv_order_bench.py")
    user = QUERY_LINE + "\n" + prompt.user.replace(QUERY_LINE, "")
    return PromptTemplate(f"{prompt.prompt_id}-query-first", "ablation", prompt.system, user)


def demo_pairs(warehouse: str | None) -> pd.DataFrame:
    """The pairs a finished demo run graded, or the demo corpus's reference judgments."""
    if warehouse is None:
        return load_demo_judgments().drop(columns="grade").assign(pair_source="benchmark")
    with duckdb.connect(warehouse, read_only=True) as conn:
        return conn.execute("select * from pairs_to_grade").df()


def grade_arm(client: LLMClient, pairs: list[dict], template: PromptTemplate, order: str) -> tuple[dict, dict]:
    """Grade every pair from an empty answer cache; returns the arm's figures and its grades by pair."""
    conn = duckdb.connect()
    started = time.perf_counter()
    rows = label_pairs(conn, client, pairs, use_logprobs=True, policy=CallPolicy(order=order), template=template)
    seconds = time.perf_counter() - started
    tokens_in, cached = conn.execute("select sum(tokens_in), sum(cached_tokens) from llm_calls").fetchall()[0]
    figures = {
        "pairs": len(rows),
        "seconds": round(seconds, 1),
        "labels_per_s": round(len(rows) / seconds, 3),
        "prompt_tokens": int(tokens_in),
        "cached_tokens": int(cached or 0),
        "cached_share": round((cached or 0) / tokens_in, 3),
        "processed_tokens": int(tokens_in - (cached or 0)),
    }
    return figures, {(r["qid"], r["doc_id"], r["pair_source"]): r["grade"] for r in rows}


def compare_layouts(model: str, pairs: list[dict], orders: Sequence[str] = ("prefix",)) -> pd.DataFrame:
    """Grade ``pairs`` with the query-first and the shipped layout in each of ``orders``, one arm after the other
    from an empty answer cache; one row of figures per arm."""
    shipped = load_prompt(DEFAULT_GRADE_PROMPT)
    layouts = {"query first (before)": query_first(shipped), "document first (shipped)": shipped}
    client = LLMClient(model)
    label_pairs(duckdb.connect(), client, pairs[:1], use_logprobs=True)  # loads the model outside the timing
    results, reference = [], None
    for order in orders:
        for layout, template in layouts.items():
            figures, grades = grade_arm(client, pairs, template, order)
            reference = reference or grades
            same = sum(grades[key] == reference[key] for key in reference)
            results.append({"layout": layout, "order": order, **figures, "same_grade_as_first_arm": same})
            print(results[-1], flush=True)
    return pd.DataFrame(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_LLM_MODEL)
    parser.add_argument("--warehouse", help="DuckDB file of a finished `relabel run` (its pairs_to_grade)")
    parser.add_argument("--pairs", type=int, help="grade only this many of the shuffled pairs")
    parser.add_argument("--orders", default="prefix", help="comma-separated: prefix, given")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = demo_pairs(args.warehouse).sample(frac=1.0, random_state=args.seed)  # "given" = a shuffled order
    if args.pairs:
        frame = frame.head(args.pairs)
    table = compare_layouts(args.model, frame.to_dict("records"), args.orders.split(","))
    print(
        f"\nmodel {args.model}; {len(frame)} pairs, {frame['qid'].nunique()} queries, "
        f"{frame['doc_id'].nunique()} documents\n"
    )
    print(table.to_markdown(index=False))
    for order, arms in table.groupby("order", sort=False):
        before, after = arms.iloc[0], arms.iloc[1]
        print(
            f"\n{order} order: document first is {before['seconds'] / after['seconds']:.2f}x faster than query "
            f"first, {1 - after['processed_tokens'] / before['processed_tokens']:.0%} fewer prompt tokens processed"
        )


if __name__ == "__main__":
    main()
