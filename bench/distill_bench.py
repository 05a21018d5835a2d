"""Distillation benchmark on ../shared/benchmarks/trec-dl-2023-test-a (13 queries, 2,691 NIST-judged pairs).

    python bench/distill_bench.py [--teacher willia-umbrela1 ...] [--folds 4] [--recipe bi-encoder]
                                  [--objective soft] [--epochs 2] [--teacher-speed-pairs 12]

Cross-validation grouped by query: for each fold the student trains only on the recorded teacher's labels
of the other folds' queries (never on human labels), then labels the held-out queries. Human labels only
choose the default teacher (the recorded labelings with the best kappa); they never train the student or
tune its thresholds. Prints, on the same held-out pairs, student vs human and teacher vs human (Cohen's
kappa, quadratic-weighted kappa, binary kappa, nDCG@10, pairwise accuracy), student vs teacher, and
labels/s of the student, of the embedded local teacher (qwen2.5-coder-1.5b, measured in the same run) and
the fp32 compute bound of the student on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from student_sweep import DEFAULT_TEACHERS, TEST_A, query_folds  # noqa: E402

from relabel.evaluation.judgments import read_docs_jsonl, read_label_file, read_queries  # noqa: E402
from relabel.evaluation.metrics import agreement, ranking_agreement  # noqa: E402
from relabel.models import minilm_dir  # noqa: E402
from relabel.student import StudentConfig, load_student, pair_text, train_student  # noqa: E402
from relabel.student.cross_encoder import set_inference_threads  # noqa: E402
from relabel.teacher.votes import (
    recorded_teacher,  # noqa: E402
    training_rows,  # noqa: E402
)

REPO = Path(__file__).resolve().parents[1]


def labeler_metrics(frame: pd.DataFrame, grade: str, score: str) -> dict[str, float]:
    """Agreement with the human grades of ``frame`` for one labeler's grade and score columns."""
    grades = agreement(frame["human"], frame[grade])
    ranking = ranking_agreement(frame.assign(score=frame[score])[["qid", "human", "score"]])
    return {
        "kappa": grades["cohen_kappa"],
        "qw_kappa": grades["quadratic_kappa"],
        "binary_kappa": grades["binary_kappa"],
        "ndcg@10": ranking["ndcg@10"],
        "pairwise": ranking["pairwise_accuracy"],
    }


def matmul_gflops(size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """Measured matmul throughput of this CPU in ``dtype`` (GFLOP/s)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def encoder_flops_per_pair(model_dir: Path, recipe: str, queries: list[str], docs: list[str], max_length: int) -> float:
    """Forward FLOPs per pair (2 x non-embedding weights x tokens, plus attention): a cross-encoder reads each
    (query, document) pair; a bi-encoder reads each distinct query and document once."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if recipe == "cross-encoder":
        encoded = tokenizer(queries, docs, truncation="only_second", max_length=max_length)
        lengths = [len(ids) for ids in encoded["input_ids"]]
    else:
        texts = sorted(set(queries)) + sorted(set(docs))
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    hidden, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    weights = layers * (4 * hidden * hidden + 2 * hidden * inner)
    return sum(2 * n * (weights + layers * 2 * n * hidden) for n in lengths) / len(queries)


def local_teacher_speed(pairs: list[dict], model: str) -> float:
    """Labels/s of the embedded local teacher on ``pairs`` (logprob mode, no answer cache; warm model)."""
    from relabel.llm.client import LLMClient
    from relabel.teacher.grading import label_pairs

    client = LLMClient(f"relabel-local/{model}")
    with duckdb.connect(":memory:") as conn:
        label_pairs(conn, client, pairs[:1], use_logprobs=True, max_doc_chars=1500)  # loads the model
        rows = label_pairs(conn, client, pairs[1:], use_logprobs=True, max_doc_chars=1500)
    latency = sum(r["latency_s"] or 0.0 for r in rows)
    return len(rows) / latency if latency else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, default=TEST_A)
    parser.add_argument("--teacher", nargs="+", default=DEFAULT_TEACHERS, help="recorded run names in runs/")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--only-folds", default="", help="comma-separated fold numbers to run (default: all)")
    parser.add_argument("--recipe", default="bi-encoder", choices=["cross-encoder", "bi-encoder", "slm"])
    parser.add_argument("--objective", default="soft", choices=["soft", "regression"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--lora-r", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--teacher-speed-pairs", type=int, default=12)
    parser.add_argument("--local-teacher", default="qwen2.5-coder-1.5b")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "distill_bench.json")
    args = parser.parse_args()
    if not args.benchmark.exists():
        raise SystemExit(f"benchmark folder not found: {args.benchmark}")
    set_inference_threads()
    queries = read_queries(args.benchmark / "queries.tsv")
    human = read_label_file(args.benchmark / "qrels.txt").rename(columns={"grade": "human"})
    docs = read_docs_jsonl(args.benchmark / "docs.jsonl", set(human["doc_id"]))
    teacher = recorded_teacher([args.benchmark / "runs" / f"{name}.txt" for name in args.teacher], set(queries))
    teacher_frame = pd.DataFrame(teacher)[["qid", "doc_id", "status", "grade", "expected_grade"]]
    teacher_frame = teacher_frame[teacher_frame["status"] == "ok"].rename(
        columns={"grade": "teacher_grade", "expected_grade": "teacher_score"}
    )
    frame = human.merge(teacher_frame.drop(columns="status"), on=["qid", "doc_id"])
    base = "" if args.recipe == "slm" else str(minilm_dir())
    config = StudentConfig(
        base_model=base,
        recipe=args.recipe,
        objective=args.objective,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lora_r=args.lora_r,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
    )
    folds = query_folds(list(frame["qid"].unique()), args.folds)
    chosen = [int(f) for f in args.only_folds.split(",")] if args.only_folds else range(args.folds)
    held_out, label_seconds, train_seconds, histories = [], 0.0, 0.0, []
    for number in chosen:
        test_qids = set(folds[number])
        train_rows = training_rows(queries, docs, [r for r in teacher if r["qid"] not in test_qids])
        with tempfile.TemporaryDirectory() as scratch:
            meta = train_student(train_rows, config, Path(scratch))
            labeler = load_student(Path(scratch))
            part = frame[frame["qid"].isin(test_qids)].reset_index(drop=True)
            started = time.perf_counter()
            scores, grades = labeler.predict(
                [queries[q] for q in part["qid"]],
                [pair_text({"title": docs[d]["title"], "doc_text": docs[d]["text"]}) for d in part["doc_id"]],
            )
            label_seconds += time.perf_counter() - started
            if args.recipe != "slm" and number == chosen[0]:
                flops = encoder_flops_per_pair(
                    Path(scratch),
                    args.recipe,
                    [queries[q] for q in part["qid"]],
                    [pair_text({"title": docs[d]["title"], "doc_text": docs[d]["text"]}) for d in part["doc_id"]],
                    config.max_length,
                )
        train_seconds += meta["train_seconds"]
        histories.append({"fold": number, "history": meta["history"], "thresholds": meta["thresholds"]})
        held_out.append(part.assign(student_grade=grades, student_score=scores))
        fold_result = held_out[-1]
        student = labeler_metrics(fold_result, "student_grade", "student_score")
        teacher_fold = labeler_metrics(fold_result, "teacher_grade", "teacher_score")
        print(
            f"fold {number}: {len(train_rows)} training pairs, {len(part)} held-out pairs, "
            f"train {meta['train_seconds']:.0f} s, history {meta['history']}; held-out kappa student "
            f"{student['kappa']:.3f} / teacher {teacher_fold['kappa']:.3f}, pairwise {student['pairwise']:.3f} / "
            f"{teacher_fold['pairwise']:.3f}",
            flush=True,
        )
    result = pd.concat(held_out, ignore_index=True)
    table = pd.DataFrame(
        [
            {
                "labeler": f"student ({args.recipe}/{args.objective})",
                **labeler_metrics(result, "student_grade", "student_score"),
            },
            {
                "labeler": f"teacher ({'+'.join(args.teacher)})",
                **labeler_metrics(result, "teacher_grade", "teacher_score"),
            },
        ]
    )
    vs_teacher = agreement(result["teacher_grade"], result["student_grade"])
    student_rate = len(result) / label_seconds
    teacher_rate = float("nan")
    if args.teacher_speed_pairs:
        sample = result.sample(n=min(args.teacher_speed_pairs + 1, len(result)), random_state=0)
        pairs = [
            {
                "pair_source": "benchmark",
                "qid": r["qid"],
                "query_text": queries[r["qid"]],
                "doc_id": r["doc_id"],
                "title": docs[r["doc_id"]]["title"],
                "text": docs[r["doc_id"]]["text"],
            }
            for r in sample.to_dict("records")
        ]
        teacher_rate = local_teacher_speed(pairs, args.local_teacher)
    peak = matmul_gflops()
    print(
        f"\ntrec-dl-2023-test-a, {len(chosen)} of {args.folds} query folds, {len(result)} held-out pairs over "
        f"{result['qid'].nunique()} queries\n"
    )
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(f"\nstudent vs teacher: kappa {vs_teacher['cohen_kappa']:.3f}, qw kappa {vs_teacher['quadratic_kappa']:.3f}")
    print(
        f"student: {student_rate:.1f} labels/s ({len(result)} pairs in {label_seconds:.1f} s), "
        f"training {train_seconds:.0f} s in all"
    )
    if args.recipe != "slm":
        print(
            f"fp32 compute bound: {peak:.0f} GFLOP/s / {flops / 1e9:.2f} GFLOP per pair = "
            f"{peak * 1e9 / flops:.0f} pairs/s (student at {student_rate * flops / 1e9 / peak:.0%} of it)"
        )
    if args.teacher_speed_pairs:
        print(
            f"embedded local teacher ({args.local_teacher}): {teacher_rate:.2f} labels/s -> student is "
            f"{student_rate / teacher_rate:.0f}x faster"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(args.out.with_suffix(".pairs.csv"), index=False)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "table": table.to_dict("records"),
                "student_vs_teacher": vs_teacher,
                "student_labels_per_s": student_rate,
                "teacher_labels_per_s": teacher_rate,
                "folds": histories,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
