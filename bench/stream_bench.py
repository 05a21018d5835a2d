"""Growth on a real document stream (prints its table, saves a plot; not a test).

    python bench/stream_bench.py [--baseline-docs 1000] [--target-docs 30000] [--big-batch 1000]
                                 [--probe-sizes 10 100] [--probe-at 1000 10000 20000 30000]

The passages of ``../shared/benchmarks/trec-dl-2019-2021-gpt4o`` (``docs.jsonl``, 31,173 real MS MARCO passages)
arrive as a stream through the inbox: a seeded shuffle, written as ``<docid>.txt`` files (title: the first
words of the passage). The baseline warehouse holds the first ``--baseline-docs`` passages (including one
passage GPT-4o graded highest for each of the 150 TREC queries), the 150 TREC DL queries as its queries
(qid = TREC qid, seed = that passage) and one student checkpoint trained once. Then batches of
``--big-batch`` new passages grow the corpus to ``--target-docs``; at every corpus size of ``--probe-at`` one
batch of each of ``--probe-sizes`` passages runs too. Every batch goes through the real inbox sensor and
``incremental_relabel_job`` in process.

The teacher is the recorded GPT-4o run (``runs/umbrela-gpt4o.txt``) where it covers a pair (a TREC query and
a passage it judged) and the tests' scripted LLM elsewhere (``RELABEL_TEACHER_RUNS_FALLBACK=llm``); the query
writer is the scripted LLM too (its time, ``inbox_queries``, is reported but excluded from the batch time, as
in ``incremental_bench.py``). Per batch: seconds per asset, new pairs, (existing query, new document) pairs
that entered a top-k, existing queries retrieved again, LLM calls, DuckDB file size; the plot of seconds per
batch against corpus size goes to ``--out`` (default ``data/bench/stream_bench.png``, git-ignored).
The benchmark data is read in place and never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from dagster_duckdb import DuckDBResource  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.incremental_bench import logged_llm_calls, train_bench_student, write_baseline_tables  # noqa: E402
from relabel.corpus.documents import scan_directory  # noqa: E402
from relabel.teacher.votes import read_recorded_labels  # noqa: E402
from relabel_assets.definitions import build_definitions  # noqa: E402
from resources.llm import LLMGateway  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.settings import PipelineSettings  # noqa: E402
from tests import scripted_llm  # noqa: E402

BENCH = REPO.parent / "shared" / "benchmarks" / "trec-dl-2019-2021-gpt4o"
RUN = "runs/umbrela-gpt4o.txt"
TITLE_WORDS = 8
ASSETS = [
    "inbox_documents",
    "inbox_bm25_index",
    "inbox_queries",
    "inbox_candidate_pairs",
    "inbox_teacher_labels",
    "relevance_labels",
]


def passage_file(folder: Path, docid: str, text: str) -> Path:
    """One passage as ``<docid>.txt`` with a ``Title:`` header (its first words), so the query writer has a title."""
    title = " ".join(text.split()[:TITLE_WORDS])
    path = folder / f"{docid}.txt"
    path.write_text(f"Title: {title}\nType: passage\n\n{text}\n", encoding="utf-8")
    return path


def load_stream(bench: Path, seed: int) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, str]]:
    """(docid, text) in stream order, the TREC queries, and each query's seed passage (highest GPT-4o grade)."""
    docs = [json.loads(line) for line in (bench / "docs.jsonl").read_text(encoding="utf-8").splitlines() if line]
    stream = [(str(d["docid"]), str(d["text"])) for d in docs if str(d["text"]).strip()]
    random.Random(seed).shuffle(stream)
    queries = dict(line.split("\t", 1) for line in (bench / "queries.tsv").read_text().splitlines() if line)
    best: dict[str, tuple[int, str]] = {}
    for (qid, docid), grade in sorted(read_recorded_labels(bench / RUN).items()):
        if qid in queries and (qid not in best or grade > best[qid][0]):
            best[qid] = (grade, docid)
    return stream, {q: t.strip() for q, t in queries.items()}, {q: d for q, (_, d) in best.items()}


def template_queries(passages: list[tuple[str, str]], taken: list[str]) -> list[dict[str, Any]]:
    """One query per baseline passage without an LLM (its first words and one longer word further on, as a
    user would recall it), near-duplicates of ``taken`` or of each other dropped by the synthesis rule."""
    from relabel.synthesis.queries import query_id
    from relabel.synthesis.query_stats import NearDuplicateIndex

    index = NearDuplicateIndex()
    for text in taken:
        index.add(text, text)
    rows = []
    for docid, text in passages:
        words = text.split()
        longer = [w.strip(".,:;()").lower() for w in words[TITLE_WORDS:] if len(w) > 6]
        query = " ".join(words[:3] + longer[:1]).lower()
        if index.find(query) is None:
            index.add(query, docid)
            rows.append(
                {
                    "qid": query_id(f"{docid}.txt", query),
                    "doc_id": f"{docid}.txt",
                    "query_type": "template",
                    "query_text": query,
                    "model": "bench-template",
                    "prompt_version": "none",
                }
            )
    return rows


def baseline_warehouse(
    root: Path,
    passages: list[tuple[str, str]],
    queries: dict[str, str],
    seeds: dict[str, str],
    checkpoint: Path,
    with_templates: bool = False,
) -> None:
    """seed_corpus (the baseline passages), synthetic_queries (the TREC queries) and one student checkpoint."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for docid, text in passages:
        passage_file(corpus, docid, text)
    documents = [d.as_row() for d in scan_directory(corpus)[0]]
    query_rows = [
        {
            "qid": qid,
            "doc_id": f"{seeds[qid]}.txt",
            "query_type": "trec",
            "query_text": text,
            "model": "trec-dl",
            "prompt_version": "none",
        }
        for qid, text in sorted(queries.items())
        if qid in seeds
    ]
    if with_templates:
        query_rows += template_queries(passages, [q["query_text"] for q in query_rows])
    write_baseline_tables(root, documents, pd.DataFrame(query_rows), checkpoint)


def run_batch(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> tuple[dict[str, Any], str]:
    """Sensor tick + the incremental job for its batch; figures of the batch and the new cursor."""
    database = str(defs.resources["duckdb"].database)
    sensor = defs.resolve_sensor_def("inbox_sensor")
    started = time.perf_counter()
    result = sensor(
        dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={k: defs.resources[k] for k in ("settings", "duckdb")}
        )
    )
    sensor_s = time.perf_counter() - started
    key = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [key])
    calls_before = logged_llm_calls(database)
    started = time.perf_counter()
    run = defs.resolve_job_def("incremental_relabel_job").execute_in_process(partition_key=key, instance=instance)
    wall = time.perf_counter() - started
    if not run.success:
        raise RuntimeError(f"batch {key} failed")
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in run.get_asset_materialization_events()}
    failed = [e.check_name for e in run.get_asset_check_evaluations() if not e.passed]
    with duckdb.connect(database, read_only=True) as conn:
        docs = conn.execute("select count(*) from document_versions where retired_at is null and not is_tombstone")
        n_docs = docs.fetchall()[0][0]
        n_queries = conn.execute("select count(*) from label_queries where retired_at is null").fetchall()[0][0]
        teacher = conn.execute(
            "select labeler_id, count(*) from inbox_teacher_labels where batch_id = ? and status = 'ok' group by 1",
            [key],
        ).fetchall()
    assets = {a: float(meta[a]["elapsed_s"].value) for a in ASSETS}
    return {
        "batch": key,
        "corpus_docs": int(n_docs),
        "current_queries": int(n_queries),
        "sensor_s": sensor_s,
        "run_wall_s": wall,
        **{f"{a}_s": v for a, v in assets.items()},
        "batch_s_excl_queries": sum(v for a, v in assets.items() if a != "inbox_queries"),
        "bm25_and_retrieval_s": assets["inbox_bm25_index"] + assets["inbox_candidate_pairs"],
        "new_queries": int(meta["inbox_queries"]["queries_added"].value),
        "query_rejects": int(meta["inbox_queries"]["rejected"].value),
        "new_pairs": int(meta["inbox_candidate_pairs"]["pairs_added"].value),
        "entered_top_k": int(meta["inbox_candidate_pairs"]["entered_top_k"].value),
        "existing_queries": int(meta["inbox_candidate_pairs"]["existing_queries"].value),
        "queries_retrieved_again": int(meta["inbox_candidate_pairs"]["existing_queries_retrieved"].value),
        "queries_searched_in_full": int(meta["inbox_candidate_pairs"]["existing_queries_searched_in_full"].value),
        "teacher_recorded": sum(n for labeler, n in teacher if labeler.startswith("recorded:")),
        "teacher_llm": sum(n for labeler, n in teacher if not labeler.startswith("recorded:")),
        "llm_calls": logged_llm_calls(database) - calls_before,
        "duckdb_mb": Path(database).stat().st_size / 2**20,
        "failed_checks": ",".join(failed),
    }, result.cursor


def plot(frame: pd.DataFrame, out: Path) -> None:
    """Seconds per batch (query writing excluded) and BM25 update + re-retrieval against corpus size."""
    figure = Figure(figsize=(9, 4.2))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for size, group in frame.groupby("batch_docs"):
        left.plot(group["corpus_docs"], group["batch_s_excl_queries"], "o-", label=f"batch of {size}")
        right.plot(group["corpus_docs"], group["bm25_and_retrieval_s"], "o-", label=f"batch of {size}")
    left.set_title("seconds per batch (query writing excluded)")
    right.set_title("BM25 update + re-retrieval seconds")
    for axis in (left, right):
        axis.set_xlabel("documents in the corpus after the batch")
        axis.set_ylabel("seconds")
        axis.grid(alpha=0.3)
        axis.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, bbox_inches="tight")


def slope(frame: pd.DataFrame, column: str) -> str:
    """Least-squares exponent of ``column`` against corpus size (log-log), the observed asymptotics."""
    rows = frame[(frame[column] > 0) & (frame["corpus_docs"] > 0)]
    if len(rows) < 2 or rows["corpus_docs"].nunique() < 2:
        return "n/a"
    exponent = np.polyfit(np.log(rows["corpus_docs"]), np.log(rows[column]), 1)[0]
    return f"{exponent:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=BENCH)
    parser.add_argument("--baseline-docs", type=int, default=1000)
    parser.add_argument("--target-docs", type=int, default=30000)
    parser.add_argument("--big-batch", type=int, default=1000, help="0: no growth beyond the baseline and probes")
    parser.add_argument("--probe-sizes", type=int, nargs="*", default=[10, 100])
    parser.add_argument("--probe-at", type=int, nargs="*", default=[1000, 10000, 20000, 30000])
    parser.add_argument("--teacher-sample-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "stream_bench.png")
    parser.add_argument(
        "--template-queries",
        action="store_true",
        help="give every baseline passage one template query too (as if written earlier)",
    )
    parser.add_argument("--student", type=Path, help="a bench student checkpoint to reuse (trained once if absent)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument(
        "--plot-only", type=Path, nargs="+", help="no run: plot and tabulate these CSVs of earlier runs together"
    )
    args = parser.parse_args()
    if args.plot_only:
        frame = pd.concat([pd.read_csv(path) for path in args.plot_only], ignore_index=True)
        frame = frame.sort_values(["batch_docs", "corpus_docs"])
        plot(frame, args.out)
        print_table(frame)
        big = frame[frame.batch_docs == frame.batch_docs.max()]
        for size, group in frame.groupby("batch_docs"):
            print(
                f"batch of {size}: exponent of time vs corpus size {slope(group, 'batch_s_excl_queries')}, "
                f"BM25+re-retrieval {slope(group, 'bm25_and_retrieval_s')}"
            )
        print(f"\nplot: {args.out} ({len(big)} points of the largest batch size)")
        return
    if not (args.bench / "docs.jsonl").exists():
        sys.exit(f"benchmark not found at {args.bench}: this benchmark needs ../shared/benchmarks (research licence)")
    scripted_llm.register()
    work = Path(tempfile.mkdtemp(prefix="relabel-stream-bench-"))
    print(f"working in {work}", flush=True)
    stream, queries, seeds = load_stream(args.bench, args.seed)
    seed_docs = set(seeds.values())
    first = [p for p in stream if p[0] in seed_docs]
    rest = [p for p in stream if p[0] not in seed_docs]
    baseline = first + rest[: max(0, args.baseline_docs - len(first))]
    arriving = rest[max(0, args.baseline_docs - len(first)) :]
    started = time.perf_counter()
    student_docs = [{"doc_id": d, "title": " ".join(t.split()[:TITLE_WORDS]), "text": t} for d, t in baseline[:64]]
    student_queries = pd.DataFrame(
        [{"qid": f"s{i}", "doc_id": d["doc_id"], "query_text": d["title"]} for i, d in enumerate(student_docs)]
    )
    if args.student and args.student.exists():
        checkpoint = args.student
    else:
        checkpoint = train_bench_student(args.student or work / "student", student_docs, student_queries)
    baseline_warehouse(work, baseline, queries, seeds, checkpoint, args.template_queries)
    print(
        f"baseline: {len(baseline)} passages, {len(seeds)} TREC queries, student ready "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    resources = {
        "duckdb": DuckDBResource(database=str(work / "data" / "relabel.duckdb")),
        "llm": LLMGateway(model="scripted/overlap", use_logprobs=False),
        "model_store": ModelStore(root=str(work / "data" / "artifacts")),
        "settings": PipelineSettings(
            data_dir=str(work / "data"),
            corpus_dir=str(work / "corpus"),
            inbox_dir=str(work / "inbox"),
            teacher_runs=[str(args.bench / RUN)],
            teacher_runs_fallback="llm",
            teacher_sample_rate=args.teacher_sample_rate,
            retrain_min_teacher_labels=10**9,
        ),
    }
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    inbox = work / "inbox"
    inbox.mkdir()
    corpus, cursor, at, figures = len(baseline), None, 0, []
    probes = sorted(set(args.probe_at))
    bench_started = time.perf_counter()
    # a first batch of one passage imports the baseline into the incremental tables (not in the figures)
    passage_file(inbox, *arriving[0])
    at = 1
    warmup, cursor = run_batch(defs, instance, cursor)
    print(f"warm-up batch (imports the baseline): {warmup['run_wall_s']:.1f} s", flush=True)
    while at < len(arriving):
        due = [p for p in probes if corpus >= p]
        sizes = [s for s in args.probe_sizes] if due else []
        probes = [p for p in probes if p not in due]
        growing = corpus < args.target_docs and args.big_batch > 0
        if not growing and not sizes:
            break
        for size in [*sizes, *([args.big_batch] if growing else [])]:
            for docid, text in arriving[at : at + size]:
                passage_file(inbox, docid, text)
            at += size
            row, cursor = run_batch(defs, instance, cursor)
            row["batch_docs"] = size
            corpus = row["corpus_docs"]
            figures.append(row)
            print(
                f"{time.perf_counter() - bench_started:7.0f} s | batch of {size:5d} -> {corpus:6d} docs | "
                f"{row['batch_s_excl_queries']:6.2f} s excl. queries (bm25+retrieval "
                f"{row['bm25_and_retrieval_s']:.2f}, queries {row['inbox_queries_s']:.2f}) | "
                f"{row['new_pairs']} pairs, {row['entered_top_k']} entered, {row['queries_retrieved_again']} "
                f"re-retrieved, {row['llm_calls']} LLM calls, {row['duckdb_mb']:.0f} MB "
                f"{'| FAILED CHECKS ' + row['failed_checks'] if row['failed_checks'] else ''}",
                flush=True,
            )
    frame = pd.DataFrame(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    plot(frame, args.out)
    print_table(frame)
    print(f"\nplot: {args.out}\ntable: {args.out.with_suffix('.csv')}")
    print(
        "observed exponent of time vs corpus size (log-log fit, big batches): batch "
        f"{slope(frame[frame.batch_docs == args.big_batch], 'batch_s_excl_queries')}, BM25+re-retrieval "
        f"{slope(frame[frame.batch_docs == args.big_batch], 'bm25_and_retrieval_s')}"
    )
    with duckdb.connect(str(work / "data" / "relabel.duckdb"), read_only=True) as conn:
        bad = conn.execute(
            "select count(*) from relevance_labels r left join label_queries q using (qid) left join "
            "document_versions d on d.doc_id = r.doc_id and d.content_hash = r.content_hash "
            "where r.retired_at is null and (q.retired_at is not null or d.retired_at is not null)"
        ).fetchall()[0][0]
        texts = conn.execute("select query_text from label_queries where retired_at is null").df()
    from relabel.synthesis.query_stats import near_duplicate_free

    dupes = near_duplicate_free(texts)
    print(
        f"current labels on retired queries or versions: {bad}; near-duplicate pairs among {len(texts)} "
        f"current queries: {dupes.details['near_duplicate_pairs']}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def print_table(frame: pd.DataFrame) -> None:
    columns = [
        "batch_docs",
        "corpus_docs",
        "current_queries",
        "batch_s_excl_queries",
        "inbox_documents_s",
        "inbox_bm25_index_s",
        "inbox_queries_s",
        "inbox_candidate_pairs_s",
        "inbox_teacher_labels_s",
        "relevance_labels_s",
        "new_pairs",
        "entered_top_k",
        "queries_retrieved_again",
        "queries_searched_in_full",
        "teacher_recorded",
        "teacher_llm",
        "llm_calls",
        "duckdb_mb",
    ]
    columns = [c for c in columns if c in frame.columns]  # CSVs of earlier runs may lack a column
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---:|" * len(columns))
    for row in frame.to_dict("records"):
        print("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
