"""Teacher quality of the embedded local models on a fixed, stratified 300-pair sample of
../shared/benchmarks/trec-dl-2023-dev (75 pairs per human grade).

    python bench/teacher_bench.py [--pairs 300] [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
        [--modes logprobs,generate] [--layouts shipped,query-first]

Prints Cohen's kappa, quadratic-weighted kappa, binary kappa, nDCG@10 and pairwise accuracy of each
model in logprob mode (expected grade from the four grade-token probabilities) and generate mode (one
digit, strictly parsed), per prompt layout (the shipped ``grade_nist``, document first, and the same prompt
query first, the layout before 2026-11-29: a prompt change must not lower agreement), and labels/s from the
recorded call latencies. Answers are cached in data/bench/teacher_bench.duckdb, so a second run prints the same
table without calling the models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from kv_order_bench import query_first  # noqa: E402

from relabel.evaluation.judgments import load_trec_folder  # noqa: E402
from relabel.evaluation.metrics import agreement, ranking_agreement  # noqa: E402
from relabel.llm.client import LLMClient  # noqa: E402
from relabel.llm.prompts import load_prompt  # noqa: E402
from relabel.teacher.grading import DEFAULT_GRADE_PROMPT, label_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "benchmarks" / "trec-dl-2023-dev"


def stratified_sample(frame: pd.DataFrame, pairs: int, seed: int = 2023) -> pd.DataFrame:
    """The same ``pairs / 4`` pairs per grade on every run."""
    per_grade = pairs // 4
    return (
        frame.groupby("grade", group_keys=False)
        .sample(n=per_grade, random_state=seed)
        .sort_values(["qid", "doc_id"])
        .reset_index(drop=True)
    )


def evaluate(rows: list[dict], human: pd.DataFrame) -> dict[str, float]:
    """Agreement of ok rows with the human grades; failures are counted, not graded."""
    labels = pd.DataFrame(rows).merge(
        human[["qid", "doc_id", "grade"]].rename(columns={"grade": "human"}), on=["qid", "doc_id"]
    )
    ok = labels[labels["status"] == "ok"]
    grades = agreement(ok["human"].astype(int), ok["grade"].astype(int))
    ranking = ranking_agreement(ok.assign(score=ok["expected_grade"].astype(float))[["qid", "human", "score"]])
    latency = labels["latency_s"].dropna()
    return {
        "ok": len(ok),
        "unparsed_or_failed": int(len(labels) - len(ok)),
        "kappa": grades["cohen_kappa"],
        "qw_kappa": grades["quadratic_kappa"],
        "binary_kappa": grades["binary_kappa"],
        **ranking,
        "labels_per_s": len(latency) / latency.sum() if latency.sum() else float("nan"),
        "grade_shares": ok["grade"].astype(int).value_counts(normalize=True).sort_index().round(2).to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--modes", default="logprobs,generate")
    parser.add_argument("--max-doc-chars", type=int, default=1500, help="passage characters shown (the demo: 500)")
    parser.add_argument("--layouts", default="shipped", help="comma-separated: shipped, query-first")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"benchmark folder not found: {DEV}")
    sample = stratified_sample(load_trec_folder(DEV), args.pairs)
    pairs = [{**row, "pair_source": "benchmark"} for row in sample.to_dict("records")]
    cache = REPO / "data" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    shipped = load_prompt(DEFAULT_GRADE_PROMPT)
    templates = {"shipped": shipped, "query-first": query_first(shipped)}
    results = []
    with duckdb.connect(str(cache / "teacher_bench.duckdb")) as conn:
        for model in args.models.split(","):
            for mode in args.modes.split(","):
                for layout in args.layouts.split(","):
                    client = LLMClient(f"relabel-local/{model}")
                    rows = label_pairs(
                        conn,
                        client,
                        pairs,
                        use_logprobs=mode == "logprobs",
                        max_doc_chars=args.max_doc_chars,
                        template=templates[layout],
                    )
                    results.append({"model": model, "mode": mode, "layout": layout, **evaluate(rows, sample)})
                    print(results[-1], flush=True)
    table = pd.DataFrame(results)
    print(
        f"\n{len(sample)} pairs of trec-dl-2023-dev, {sample['qid'].nunique()} queries, 75 per grade, "
        f"passages cut to {args.max_doc_chars} characters\n"
    )
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
