"""Student labeling speed on TREC DL passages, next to the fp32 compute bound and the embedded local teacher,
all measured in one run (../shared/benchmarks/trec-dl-2023-test-a, 2,691 pairs).

    python bench/student_speed_bench.py [--model DIR] [--recipe cross-encoder] [--teacher-speed-pairs 12]

Without ``--model`` a throwaway student is trained for one epoch on 160 recorded-teacher pairs: speed does
not depend on what the weights learned. Run it on a quiet machine; other jobs on the cores lower every
figure it prints.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from distill_bench import (
    DEFAULT_TEACHERS,
    TEST_A,
    encoder_flops_per_pair,
    local_teacher_speed,
    matmul_gflops,
)

from relabel.evaluation.judgments import read_docs_jsonl, read_label_file, read_queries
from relabel.models import minilm_dir
from relabel.student import StudentConfig, load_student, pair_text, read_meta, train_student
from relabel.student.cross_encoder import set_inference_threads
from relabel.teacher.votes import recorded_teacher, training_rows


def load_test_a_pairs() -> tuple[dict[str, str], pd.DataFrame, dict[str, dict], list[str], list[str]]:
    """test-a's queries, NIST grades and passages, and the student's query and document text of every judged pair."""
    queries = read_queries(TEST_A / "queries.tsv")
    human = read_label_file(TEST_A / "qrels.txt")
    docs = read_docs_jsonl(TEST_A / "docs.jsonl", set(human["doc_id"]))
    query_texts = [queries[q] for q in human["qid"]]
    doc_texts = [pair_text({"title": docs[d]["title"], "doc_text": docs[d]["text"]}) for d in human["doc_id"]]
    return queries, human, docs, query_texts, doc_texts


def train_throwaway_student(folder: Path, queries: dict[str, str], docs: dict[str, dict], recipe: str) -> None:
    """One epoch on 160 recorded GPT-4o labels of test-a: speed does not depend on what the weights learned."""
    teacher = recorded_teacher([TEST_A / "runs" / f"{DEFAULT_TEACHERS[0]}.txt"], set(queries))
    rows = training_rows(queries, docs, teacher)[::16][:160]
    config = StudentConfig(base_model=str(minilm_dir()), recipe=recipe, epochs=1, val_fraction=0)
    train_student(rows, config, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a student checkpoint folder (default: train a throwaway one)")
    parser.add_argument("--recipe", default="bi-encoder", choices=["cross-encoder", "bi-encoder"])
    parser.add_argument("--teacher-speed-pairs", type=int, default=12)
    parser.add_argument("--local-teacher", default="qwen2.5-coder-1.5b")
    args = parser.parse_args()
    set_inference_threads()
    queries, human, docs, query_texts, doc_texts = load_test_a_pairs()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model
        if model_dir is None:
            model_dir = Path(scratch)
            train_throwaway_student(model_dir, queries, docs, args.recipe)
        recipe = read_meta(model_dir)["recipe"]
        labeler = load_student(model_dir)
        labeler.predict(query_texts[:64], doc_texts[:64])  # warm-up
        started = time.perf_counter()
        labeler.predict(query_texts, doc_texts)
        seconds = time.perf_counter() - started
        flops = encoder_flops_per_pair(model_dir, recipe, query_texts, doc_texts, read_meta(model_dir)["max_length"])
    peak = matmul_gflops()
    rate = len(query_texts) / seconds
    print(f"student ({recipe}): {len(query_texts)} trec-dl-2023-test-a pairs in {seconds:.1f} s = {rate:.1f} pairs/s")
    print(
        f"fp32 compute bound: {peak:.0f} GFLOP/s measured / {flops / 1e9:.3f} GFLOP per pair = "
        f"{peak * 1e9 / flops:.0f} pairs/s (the student runs at {rate * flops / 1e9 / peak:.0%} of it)"
    )
    if args.teacher_speed_pairs:
        sample = human.sample(n=args.teacher_speed_pairs + 1, random_state=0)
        pairs = [
            {
                "pair_source": "benchmark",
                "qid": q,
                "query_text": queries[q],
                "doc_id": d,
                "title": docs[d]["title"],
                "text": docs[d]["text"],
            }
            for q, d in zip(sample["qid"], sample["doc_id"], strict=True)
        ]
        teacher_rate = local_teacher_speed(pairs, args.local_teacher)
        print(
            f"embedded local teacher ({args.local_teacher}, logprobs): {teacher_rate:.2f} labels/s; "
            f"the student is {rate / teacher_rate:.0f}x faster"
        )


if __name__ == "__main__":
    main()
