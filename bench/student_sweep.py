"""Student recipe sweep on trec-dl-2023-test-a, query-grouped cross-validation (the folds of distill_bench).

    python bench/student_sweep.py [--configs '[{"recipe": "bi-encoder", "epochs": 0}, ...]'] [--folds 4]

Each configuration (StudentConfig fields over the defaults below) is trained per fold on the recorded
teacher's labels of the other folds' queries, through the same ``train_student`` as ``relabel distill``, and
labels the held-out queries. The table pools the held-out pairs and gives, per configuration and threshold
source, agreement with the teacher (kappa: the label-free criterion to choose a recipe by) next to agreement
with NIST (kappa, quadratic-weighted kappa, binary kappa, nDCG@10, pairwise accuracy). Threshold sources:
``validation`` (the checkpoint's own, fitted on its validation queries) and ``training`` (refitted on the
student's scores of all its training pairs). It runs on a GPU when torch sees one; ``--save-rows`` /
``--rows`` move the prepared pairs to a machine without the benchmark folder (delete them afterwards: the
benchmark text is research-licensed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from relabel.evaluation.metrics import agreement, ranking_agreement  # noqa: E402
from relabel.student import load_student, train_student  # noqa: E402
from relabel.student.base import StudentConfig, apply_thresholds, fit_thresholds, pair_text, torch_device  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEST_A = REPO.parent / "shared" / "benchmarks" / "trec-dl-2023-test-a"
DEFAULT_TEACHERS = ["willia-umbrela1", "h2oloo-zeroshot1", "h2oloo-fewself"]
DEFAULT_CONFIGS = [
    {"recipe": "bi-encoder", "epochs": 0},
    {"recipe": "bi-encoder", "epochs": 4, "patience": 4, "learning_rate": 1e-5},
    {"recipe": "bi-encoder", "epochs": 4, "patience": 4, "learning_rate": 3e-6},
    {"recipe": "bi-encoder", "epochs": 4, "patience": 4, "learning_rate": 3e-5},
    {"recipe": "cross-encoder", "epochs": 4, "patience": 4, "learning_rate": 3e-5},
    {"recipe": "cross-encoder", "epochs": 4, "patience": 4, "learning_rate": 1e-5},
]


def query_folds(qids: list[str], folds: int) -> list[list[str]]:
    """Deterministic query folds: every ``folds``-th query of the sorted list (distill_bench uses them too)."""
    ordered = sorted(qids)
    return [ordered[i::folds] for i in range(folds)]


def benchmark_rows(benchmark: Path, teachers: list[str]) -> list[dict]:
    """Teacher-labeled training rows of every judged pair, each with its NIST grade as ``human``."""
    from relabel.evaluation.judgments import read_docs_jsonl, read_label_file, read_queries
    from relabel.teacher.votes import recorded_teacher, training_rows

    queries = read_queries(benchmark / "queries.tsv")
    human = read_label_file(benchmark / "qrels.txt")
    human_grade = {(q, d): int(g) for q, d, g in zip(human["qid"], human["doc_id"], human["grade"], strict=True)}
    docs = read_docs_jsonl(benchmark / "docs.jsonl", set(human["doc_id"]))
    teacher = recorded_teacher([benchmark / "runs" / f"{name}.txt" for name in teachers], set(queries))
    rows = training_rows(queries, docs, teacher)
    return [
        {**r, "human": human_grade[(r["qid"], r["doc_id"])]} for r in rows if (r["qid"], r["doc_id"]) in human_grade
    ]


def pooled_metrics(frame: pd.DataFrame, grade: str) -> dict[str, float]:
    """Agreement of one grade column with the teacher and with NIST over the pooled held-out pairs."""
    vs_human = agreement(frame["human"], frame[grade])
    ranking = ranking_agreement(frame.assign(score=frame["score"])[["qid", "human", "score"]])
    return {
        "kappa_vs_teacher": agreement(frame["teacher_grade"], frame[grade])["cohen_kappa"],
        "kappa": vs_human["cohen_kappa"],
        "qw_kappa": vs_human["quadratic_kappa"],
        "binary_kappa": vs_human["binary_kappa"],
        "ndcg@10": ranking["ndcg@10"],
        "pairwise": ranking["pairwise_accuracy"],
    }


def run_config(rows: list[dict], overrides: dict, folds: list[list[str]], base_model: str) -> tuple[pd.DataFrame, list]:
    """Held-out predictions of one configuration over all folds, with both threshold sources."""
    config = StudentConfig(**{"base_model": base_model, **overrides})
    parts, histories = [], []
    for number, fold in enumerate(folds):
        held_out = set(fold)
        train = [r for r in rows if r["qid"] not in held_out]
        test = [r for r in rows if r["qid"] in held_out]
        with tempfile.TemporaryDirectory() as scratch:
            meta = train_student(train, config, Path(scratch))
            labeler = load_student(Path(scratch))
            scores, grades = labeler.predict([r["query_text"] for r in test], [pair_text(r) for r in test])
            train_scores, _ = labeler.predict([r["query_text"] for r in train], [pair_text(r) for r in train])
        refit = fit_thresholds(train_scores, np.array([r["grade"] for r in train]))
        histories.append({"fold": number, "history": meta["history"], "train_seconds": meta["train_seconds"]})
        print(f"  fold {number}: {len(train)} training pairs, trained in {meta['train_seconds']:.0f} s", flush=True)
        parts.append(
            pd.DataFrame(
                {
                    "qid": [r["qid"] for r in test],
                    "doc_id": [r["doc_id"] for r in test],
                    "human": [r["human"] for r in test],
                    "teacher_grade": [r["grade"] for r in test],
                    "score": scores,
                    "validation": grades,
                    "training": apply_thresholds(scores, refit),
                }
            )
        )
    return pd.concat(parts, ignore_index=True), histories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, default=TEST_A)
    parser.add_argument("--teacher", nargs="+", default=DEFAULT_TEACHERS)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--configs", default=json.dumps(DEFAULT_CONFIGS), help="JSON list of StudentConfig fields")
    parser.add_argument("--base-model", default="", help="encoder folder (default: the packaged MiniLM-L6)")
    parser.add_argument("--rows", type=Path, help="prepared rows (JSON) instead of the benchmark folder")
    parser.add_argument("--save-rows", type=Path, help="write the prepared rows here and stop")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "student_sweep.json")
    args = parser.parse_args()
    if args.rows:
        rows = json.loads(args.rows.read_text())
    elif args.benchmark.exists():
        rows = benchmark_rows(args.benchmark, args.teacher)
    else:
        raise SystemExit(f"benchmark folder not found: {args.benchmark}")
    if args.save_rows:
        args.save_rows.write_text(json.dumps(rows))
        return
    if not args.base_model:
        from relabel.models import minilm_dir

        args.base_model = str(minilm_dir())
    folds = query_folds(sorted({r["qid"] for r in rows}), args.folds)
    print(f"{len(rows)} pairs, {len(folds)} query folds, device {torch_device()}", flush=True)
    results, details = [], []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for overrides in json.loads(args.configs):
        started = time.perf_counter()
        frame, histories = run_config(rows, overrides, folds, args.base_model)
        seconds = time.perf_counter() - started
        for source in ("validation", "training"):
            results.append({"config": json.dumps(overrides), "thresholds": source, **pooled_metrics(frame, source)})
        details.append({"config": overrides, "seconds": seconds, "folds": histories})
        print(pd.DataFrame(results[-2:]).to_markdown(index=False, floatfmt=".3f"), f"\n{seconds:.0f} s", flush=True)
        args.out.write_text(json.dumps({"results": results, "details": details}, indent=2, default=str))
    teacher = pd.DataFrame(rows).assign(score=lambda f: f["expected_grade"], teacher_grade=lambda f: f["grade"])
    print("\nteacher vs NIST on the same pairs:", {k: round(v, 3) for k, v in pooled_metrics(teacher, "grade").items()})
    print(
        pd.DataFrame(results).sort_values("kappa_vs_teacher", ascending=False).to_markdown(index=False, floatfmt=".3f")
    )


if __name__ == "__main__":
    main()
