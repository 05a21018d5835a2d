"""Distillation at scale: students trained on GPT-4o's grades of TREC DL 2019-2021 (150 queries, 31,474 pairs,
``../shared/benchmarks/trec-dl-2019-2021-gpt4o``), each judged against NIST next to its teacher.

    python bench/scale_bench.py [--protocols transfer loyo] [--configs '[{"epochs": 2}, ...]']

Protocols:
- ``transfer``: train on all 150 queries (validation queries split off inside them), label every pair of
  trec-dl-2023-test-a; teachers there are the recorded GPT-4o labelings willia-umbrela1 and the vote of the
  three best (willia-umbrela1, h2oloo-zeroshot1, h2oloo-fewself).
- ``loyo``: leave one year out: train on two TREC DL years, label the third (teacher: GPT-4o's grades of the
  held-out year), for each year, then the three held-out years pooled.

Every configuration (StudentConfig fields over the defaults) is trained through ``train_student`` on the
GPT-4o grades only. The untrained base (``{"epochs": 0}``: the pretrained weights with thresholds fitted to the
teacher's grade shares) is always run too. The recipe is chosen without human labels: ``--loyo-configs
chosen`` runs leave-one-year-out for the base and for the transfer configuration with the best agreement with
the teacher on its held-out validation queries. NIST grades are read only to print the tables.

The work splits in two so that training can run on a GPU box without the benchmark folder:
``--save-rows FILE`` packs texts and teacher grades (no NIST grade) into a gzipped JSON file; ``--rows FILE
--train-only`` trains and appends predictions to ``--predictions``; ``--report-only`` prints the tables from
recorded predictions. Delete a rows file after use: the benchmark text is research-licensed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"
SCALE = "trec-dl-2019-2021-gpt4o"
TEST_A = "trec-dl-2023-test-a"
GPT4O_RUN = "umbrela-gpt4o"
TEST_A_TEACHERS = {
    "willia-umbrela1": ["willia-umbrela1"],
    "vote of 3 (willia-umbrela1, h2oloo-zeroshot1, h2oloo-fewself)": [
        "willia-umbrela1",
        "h2oloo-zeroshot1",
        "h2oloo-fewself",
    ],
}
BASE = {"epochs": 0}
DEFAULT_CONFIGS = [{}]


def pair_rows(queries: dict[str, str], docs: dict[str, dict], keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Unlabeled rows (qid, query_text, doc_id, title, doc_text) for the given pairs."""
    return [
        {"qid": q, "query_text": queries[q], "doc_id": d, "title": docs[d]["title"], "doc_text": docs[d]["text"]}
        for q, d in keys
    ]


def load_rows(shared: Path) -> dict[str, list[dict[str, Any]]]:
    """Training rows (GPT-4o grades of every DL 2019-2021 pair, with the query's year) and the test-a pairs to
    label. No NIST grade is in either."""
    from relabel.evaluation.judgments import read_docs_jsonl, read_label_file, read_queries
    from relabel.teacher.votes import recorded_teacher, training_rows

    folder = shared / SCALE
    queries = read_queries(folder / "queries.tsv")
    years = dict(line.split("\t") for line in (folder / "query_year.tsv").read_text().split("\n") if line.strip())
    labels = recorded_teacher([folder / "runs" / f"{GPT4O_RUN}.txt"], set(queries))
    docs = read_docs_jsonl(folder / "docs.jsonl", {r["doc_id"] for r in labels})
    train = [{**r, "year": years[r["qid"]]} for r in training_rows(queries, docs, labels)]
    test_folder = shared / TEST_A
    test_queries = read_queries(test_folder / "queries.tsv")
    keys = list(read_label_file(test_folder / "qrels.txt")[["qid", "doc_id"]].itertuples(index=False, name=None))
    test_docs = read_docs_jsonl(test_folder / "docs.jsonl", {d for _, d in keys})
    return {"train": train, "test_a": pair_rows(test_queries, test_docs, keys)}


def grade_frame(path: Path, name: str) -> pd.DataFrame:
    """A qrels-format file as qid, doc_id, ``name`` (grade)."""
    from relabel.evaluation.judgments import read_label_file

    return read_label_file(path).rename(columns={"grade": name})


def reference_frames(shared: Path) -> dict[str, pd.DataFrame]:
    """Per evaluation split (test-a, each year): qid, doc_id, NIST grade (``human``) and the teachers' grades
    and scores, for the report only."""
    from relabel.teacher.votes import recorded_teacher

    folder = shared / SCALE
    scale = grade_frame(folder / "qrels.txt", "human").merge(
        grade_frame(folder / "runs" / f"{GPT4O_RUN}.txt", "teacher_gpt4o")
    )
    scale["teacher_gpt4o_score"] = scale["teacher_gpt4o"].astype(float)
    years = pd.read_csv(folder / "query_year.tsv", sep="\t", names=["qid", "year"], dtype=str)
    scale = scale.merge(years, on="qid")
    test = grade_frame(shared / TEST_A / "qrels.txt", "human")
    for name, runs in TEST_A_TEACHERS.items():
        votes = pd.DataFrame(recorded_teacher([shared / TEST_A / "runs" / f"{run}.txt" for run in runs]))
        votes = votes[votes["status"] == "ok"][["qid", "doc_id", "grade", "expected_grade"]]
        test = test.merge(votes.rename(columns={"grade": name, "expected_grade": f"{name}_score"}), how="left")
    frames = {"test-a": test}
    frames.update({year: part.reset_index(drop=True) for year, part in scale.groupby("year")})
    return frames


def first_queries(data: dict[str, list[dict]], limit: int, all_test_a: bool = False) -> dict[str, list[dict]]:
    """The rows of the first ``limit`` queries (sorted ids) of each training year and of test-a (every test-a
    query with ``all_test_a``)."""
    keep: set[str] = {r["qid"] for r in data["test_a"]} if all_test_a else set()
    for group in [*({r["year"] for r in data["train"]}), *([] if all_test_a else ["test-a"])]:
        part = data["test_a"] if group == "test-a" else [r for r in data["train"] if r["year"] == group]
        keep.update(sorted({r["qid"] for r in part})[:limit])
    return {name: [r for r in rows if r["qid"] in keep] for name, rows in data.items()}


def train_and_label(
    rows: list[dict], eval_rows: list[dict], overrides: dict, base_model: str, keep_in: Path | None = None
) -> dict[str, Any]:
    """Train one configuration on ``rows``, label ``eval_rows``; the record the report reads (per pair: qid,
    doc_id, expected grade, grade, p0-p3). The checkpoint is kept in ``keep_in`` when given."""
    from relabel.student import StudentConfig, load_student, pair_text, train_student

    config = StudentConfig(**{"base_model": base_model, **overrides})
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep_in or Path(scratch)
        meta = train_student(rows, config, folder)
        labeler = load_student(folder)
        started = time.perf_counter()
        scores, grades, probabilities = labeler.predict_with_probabilities(
            [r["query_text"] for r in eval_rows], [pair_text(r) for r in eval_rows]
        )
        seconds = time.perf_counter() - started
    return {
        "train_seconds": meta["train_seconds"],
        "labels_per_s": len(eval_rows) / seconds,
        "val_kappa_vs_teacher": meta["best_val_kappa_vs_teacher"],
        "best_epoch": meta["best_epoch"],
        "history": meta["history"],
        "thresholds": meta["thresholds"],
        "pairs": [
            [r["qid"], r["doc_id"], float(s), int(g), *(round(float(x), 5) for x in p)]
            for r, s, g, p in zip(eval_rows, scores, grades, probabilities, strict=True)
        ],
    }


def run_protocols(
    data: dict[str, list[dict]],
    configs: list[dict],
    protocols: list[str],
    loyo_configs: str,
    base_model: str,
    predictions: Path,
    years: list[str] | None = None,
    checkpoints: Path | None = None,
) -> None:
    """Train every configuration under each protocol; append one JSON line per (protocol, split, config).
    A (protocol, split, config) already in ``predictions`` is not trained again, so an interrupted run resumes."""
    from relabel.student import torch_device

    print(
        f"{len(data['train'])} training pairs, {len(data['test_a'])} test-a pairs, device {torch_device()}", flush=True
    )
    configs = [*[c for c in configs if c != BASE], BASE]

    recorded = [json.loads(line) for line in predictions.read_text().splitlines()] if predictions.exists() else []

    def record(protocol: str, split: str, overrides: dict, train: list[dict], evaluate: list[dict]) -> dict:
        for done in recorded:
            if (done["protocol"], done["split"], done["config"]) == (protocol, split, overrides):
                print(f"{protocol} {split} {json.dumps(overrides)}: already in {predictions}, not retrained")
                return done
        keep_in = None
        if checkpoints:
            keep_in = (
                checkpoints / f"{protocol}-{split}-{hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:8]}"
            )
        result = {
            "protocol": protocol,
            "split": split,
            "config": overrides,
            **train_and_label(train, evaluate, overrides, base_model, keep_in),
        }
        with predictions.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(
            f"{protocol} {split} {json.dumps(overrides)}: trained in {result['train_seconds']:.0f} s "
            f"(kept epoch {result['best_epoch']}, validation kappa vs teacher {result['val_kappa_vs_teacher']}), "
            f"{result['labels_per_s']:.0f} labels/s",
            flush=True,
        )
        return result

    chosen = configs
    if "transfer" in protocols:
        results = [record("transfer", "test-a", c, data["train"], data["test_a"]) for c in configs]
        trained = [r for r in results if r["config"] != BASE] or results
        best = max(trained, key=lambda r: r["val_kappa_vs_teacher"] or 0.0)["config"]
        print(f"chosen by validation kappa with the teacher (no human label): {json.dumps(best)}", flush=True)
        if loyo_configs == "chosen":
            chosen = [BASE, best] if best != BASE else [BASE]
    if "loyo" in protocols:
        for year in held_out_years(data["train"], years):
            train = [r for r in data["train"] if r["year"] != year]
            held_out = [r for r in data["train"] if r["year"] == year]
            for overrides in chosen:
                record("loyo", year, overrides, train, held_out)


def held_out_years(rows: list[dict], asked: list[str] | None) -> list[str]:
    """The years to leave out in turn: all of them, or those asked for, written in full (``TREC-DL-2019``) or
    as the number (``2019``). An unknown year is an error, not an empty split."""
    known = sorted({r["year"] for r in rows})
    if not asked:
        return known
    by_name = {**{y: y for y in known}, **{y.rsplit("-", 1)[-1]: y for y in known}}
    unknown = [y for y in asked if y not in by_name]
    if unknown:
        raise SystemExit(f"unknown year(s) {', '.join(unknown)}: the data holds {', '.join(known)}")
    return sorted({by_name[y] for y in asked})


def labeler_metrics(frame: pd.DataFrame, grade: str, score: str, teacher: str | None = None) -> dict[str, float]:
    """Agreement with NIST of one labeler's grade and score columns, and its kappa with ``teacher``."""
    from relabel.evaluation.metrics import agreement, ranking_agreement

    vs_human = agreement(frame["human"], frame[grade])
    ranking = ranking_agreement(frame.assign(score=frame[score])[["qid", "human", "score"]])
    out = {
        "kappa": vs_human["cohen_kappa"],
        "qw_kappa": vs_human["quadratic_kappa"],
        "binary_kappa": vs_human["binary_kappa"],
        "ndcg@10": ranking["ndcg@10"],
        "pairwise": ranking["pairwise_accuracy"],
    }
    if teacher:
        out["kappa_vs_teacher"] = agreement(frame[teacher], frame[grade])["cohen_kappa"]
    return out


def config_name(overrides: dict) -> str:
    """A table label for a configuration."""
    if overrides == BASE:
        return "untrained base (thresholds fitted to the teacher's shares)"
    if overrides.get("epochs") == 0:
        return f"untrained base {json.dumps({k: v for k, v in overrides.items() if k != 'epochs'})}"
    return "student " + (json.dumps(overrides) if overrides else "(default recipe)")


def report(records: list[dict], references: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """One table per protocol (leave-one-year-out: per year and pooled) from recorded predictions."""
    tables: dict[str, pd.DataFrame] = {}

    def student_rows(frame_of: dict[str, pd.DataFrame], records_of: dict[str, list[dict]], teacher: str) -> list:
        rows = []
        for name, group in records_of.items():
            predictions = pd.DataFrame(
                [p[:4] for r in group for p in r["pairs"]], columns=["qid", "doc_id", "score", "grade"]
            )
            frame = pd.concat(frame_of[r["split"]] for r in group).merge(predictions, on=["qid", "doc_id"])
            val = [r["val_kappa_vs_teacher"] for r in group if r["val_kappa_vs_teacher"] is not None]
            rows.append(
                {
                    "labeler": name,
                    "pairs": len(frame),
                    **labeler_metrics(frame, "grade", "score", teacher),
                    "val_kappa_vs_teacher": sum(val) / len(val) if val else float("nan"),
                    "train_s": sum(r["train_seconds"] for r in group),
                    "labels_per_s": sum(r["labels_per_s"] for r in group) / len(group),
                }
            )
        return rows

    def labeled(frame: pd.DataFrame, group: list[dict]) -> pd.DataFrame:
        """The rows of ``frame`` whose pairs the students labeled, so every row of a table scores the same pairs."""
        keys = pd.DataFrame([p[:2] for r in group for p in r["pairs"]], columns=["qid", "doc_id"]).drop_duplicates()
        return frame.merge(keys, on=["qid", "doc_id"])

    transfer = [r for r in records if r["protocol"] == "transfer"]
    if transfer:
        test = labeled(references["test-a"], transfer)
        by_config = {config_name(r["config"]): [r] for r in transfer}
        rows = student_rows({"test-a": test}, by_config, "willia-umbrela1")
        for name in TEST_A_TEACHERS:
            rows.append(
                {
                    "labeler": f"teacher: {name}",
                    "pairs": len(test),
                    **labeler_metrics(test, name, f"{name}_score", "willia-umbrela1"),
                }
            )
        tables["transfer: train on DL 2019-2021 (GPT-4o), label trec-dl-2023-test-a"] = pd.DataFrame(rows)
    loyo = [r for r in records if r["protocol"] == "loyo"]
    years_of: dict[str, set[str]] = {}
    for r in loyo:
        years_of.setdefault(config_name(r["config"]), set()).add(r["split"])
    # pooled over the years every configuration has labeled, so that all rows score the same pairs
    common = sorted(set.intersection(*years_of.values())) if years_of else []
    for split in [*sorted({r["split"] for r in loyo}), "pooled"]:
        chosen = [r for r in loyo if r["split"] == split or (split == "pooled" and r["split"] in common)]
        if not chosen or (split == "pooled" and len(common) < 2):
            continue
        if split == "pooled":
            split = f"pooled ({', '.join(common)})"
        by_config: dict[str, list[dict]] = {}
        for r in chosen:
            by_config.setdefault(config_name(r["config"]), []).append(r)
        rows = student_rows(references, by_config, "teacher_gpt4o")
        years = sorted({r["split"] for r in chosen})
        teacher = labeled(pd.concat(references[y] for y in years), chosen)
        rows.append(
            {
                "labeler": "teacher: GPT-4o (UMBRELA)",
                "pairs": len(teacher),
                **labeler_metrics(teacher, "teacher_gpt4o", "teacher_gpt4o_score", "teacher_gpt4o"),
            }
        )
        tables[f"leave one year out: held-out {split}"] = pd.DataFrame(rows)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding the benchmark folders")
    parser.add_argument("--protocols", nargs="+", default=["transfer", "loyo"], choices=["transfer", "loyo"])
    parser.add_argument(
        "--configs",
        default=json.dumps(DEFAULT_CONFIGS),
        help="JSON list of StudentConfig fields over the defaults; the base ({'epochs': 0}) is added",
    )
    parser.add_argument(
        "--loyo-configs",
        default="chosen",
        choices=["chosen", "all"],
        help="leave-one-year-out for the base and the transfer choice, or for every configuration",
    )
    parser.add_argument("--years", nargs="+", help="leave out only these years (default: each year in turn)")
    parser.add_argument("--base-model", default="", help="encoder folder (default: the packaged MiniLM-L6)")
    parser.add_argument("--rows", type=Path, help="rows packed by --save-rows instead of the benchmark folders")
    parser.add_argument("--save-rows", type=Path, help="pack training and test-a rows (no NIST grade) and stop")
    parser.add_argument(
        "--max-queries",
        type=int,
        default=0,
        help="keep the first N queries of each year and of test-a (a quick smoke run)",
    )
    parser.add_argument("--all-test-a", action="store_true", help="with --max-queries: label every test-a pair")
    parser.add_argument("--train-only", action="store_true", help="append predictions, print no table")
    parser.add_argument("--report-only", action="store_true", help="tables from --predictions, no training")
    parser.add_argument("--predictions", type=Path, default=REPO / "data" / "bench" / "scale_predictions.jsonl")
    parser.add_argument("--checkpoints", type=Path, help="keep each trained checkpoint in a folder under this one")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "scale_bench.md")
    args = parser.parse_args()
    if not args.rows and not (args.shared / SCALE).is_dir():
        raise SystemExit(f"benchmark folder not found: {args.shared / SCALE} (or pass --rows)")
    if args.save_rows:
        args.save_rows.write_bytes(gzip.compress(json.dumps(load_rows(args.shared)).encode()))
        return
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        data = json.loads(gzip.decompress(args.rows.read_bytes())) if args.rows else load_rows(args.shared)
        if args.max_queries:
            data = first_queries(data, args.max_queries, args.all_test_a)
        if not args.base_model:
            from relabel.models import minilm_dir

            args.base_model = str(minilm_dir())
        configs = json.loads(args.configs)
        run_protocols(
            data,
            configs,
            args.protocols,
            args.loyo_configs,
            args.base_model,
            args.predictions,
            args.years,
            args.checkpoints,
        )
    if args.train_only:
        return
    records = [json.loads(line) for line in args.predictions.read_text().splitlines() if line.strip()]
    tables = report(records, reference_frames(args.shared))
    text = "\n\n".join(
        f"### {title}\n\n{table.to_markdown(index=False, floatfmt='.3f')}" for title, table in tables.items()
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
