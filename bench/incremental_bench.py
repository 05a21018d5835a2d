"""Incremental relabeling figures (prints them; not a test).

    python bench/incremental_bench.py [--scales 1 4 16] [--batch-docs 10] [--query-model scripted/overlap]

For each corpus size (the demo corpus copied ``scale`` times, every copy with its own path and one
synthetic query per document) a baseline warehouse is written directly (seed_corpus, synthetic_queries and
one student checkpoint trained once), then three batches of ``--batch-docs`` new documents are dropped
into the inbox, detected by the real inbox sensor and run through ``incremental_relabel_job`` in process:

- latency: from the sensor's evaluation of a dropped batch to its labels in DuckDB (the daemon's tick,
  15 s by default, comes on top); the first batch also imports the baseline and builds the first index;
- cost of one steady-state batch (the mean of batches 2 and 3): seconds per asset, new pairs, student
  labels, LLM calls, existing queries retrieved again;
- BM25 update: a full rebuild (tokenize every passage) against the incremental update (stored passage
  tokens of the previous index, only new versions tokenized), median of 3, both on the same documents.

The default LLM is the tests' scripted provider (deterministic, near-zero time), so teacher calls and query
writing cost nothing here; ``--query-model relabel-local/qwen2.5-coder-0.5b`` measures the embedded query
writer in the loop (the teacher stays scripted: teacher calls are excluded from the latency target).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from dagster_duckdb import DuckDBResource  # noqa: E402

from relabel import retrieval  # noqa: E402
from relabel.corpus.documents import scan_directory  # noqa: E402
from relabel.evaluation.judgments import demo_corpus_dir  # noqa: E402
from relabel.models import minilm_dir  # noqa: E402
from relabel.student import StudentConfig, train_student  # noqa: E402
from relabel.synthesis.queries import query_id  # noqa: E402
from relabel.warehouse import replace_table  # noqa: E402
from relabel_assets.definitions import build_definitions  # noqa: E402
from resources.llm import LLMGateway  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.settings import PipelineSettings  # noqa: E402
from tests import scripted_llm  # noqa: E402


def scaled_corpus(target: Path, scale: int) -> Path:
    """The demo corpus ``scale`` times: copy k > 0 lives under ``copy<k>/`` (its own paths and hashes)."""
    source = demo_corpus_dir()
    for k in range(scale):
        shutil.copytree(source, target / (f"copy{k}" if k else "."), dirs_exist_ok=True)
    return target


def template_queries(documents: list[dict[str, Any]]) -> pd.DataFrame:
    """One query per document: its title plus one longer body word picked by a seeded draw (no LLM)."""
    rows = []
    for doc in documents:
        words = [w.strip(".,:;()").lower() for w in str(doc["text"]).split() if len(w) > 5]
        text = f"{doc['title']} {random.Random(doc['doc_id']).choice(words) if words else ''}".strip()
        rows.append(
            {
                "qid": query_id(doc["doc_id"], text),
                "doc_id": doc["doc_id"],
                "query_type": "keyword",
                "query_text": text,
                "model": "bench-template",
                "prompt_version": "none",
            }
        )
    return pd.DataFrame(rows)


def train_bench_student(out: Path, documents: list[dict[str, Any]], queries: pd.DataFrame) -> Path:
    """One small checkpoint (1 epoch on seed pairs and shifted negatives with graded targets), trained once."""
    docs = {d["doc_id"]: d for d in documents}
    records = queries.to_dict("records")[:48]
    rows = []
    for i, q in enumerate(records):
        for shift, grade in ((0, 3), (7, 0)):
            doc = docs[records[(i + shift) % len(records)]["doc_id"]]
            rows.append(
                {
                    "qid": q["qid"],
                    "query_text": q["query_text"],
                    "title": doc["title"],
                    "doc_text": doc["text"],
                    "grade": grade,
                    "expected_grade": float(grade),
                }
            )
    train_student(rows, StudentConfig(base_model=str(minilm_dir()), epochs=1, max_length=128), out)
    return out


def baseline_warehouse(root: Path, scale: int, checkpoint: Path) -> tuple[list[dict[str, Any]], int]:
    """A warehouse under ``root`` holding the baseline tables for the scaled corpus; (documents, queries)."""
    corpus = scaled_corpus(root / "corpus", scale)
    documents = [d.as_row() for d in scan_directory(corpus)[0]]
    queries = template_queries(documents)
    write_baseline_tables(root, documents, queries, checkpoint)
    return documents, len(queries)


def write_baseline_tables(root: Path, documents: list[dict], queries: pd.DataFrame, checkpoint: Path) -> None:
    """``root/data/relabel.duckdb`` with the baseline's corpus, queries and a registered student checkpoint."""
    db = root / "data" / "relabel.duckdb"
    db.parent.mkdir(parents=True)
    with duckdb.connect(str(db)) as conn:
        replace_table(conn, "seed_corpus", pd.DataFrame(documents))
        replace_table(conn, "synthetic_queries", queries)
        registered = {"checkpoint_id": "bench", "path": str(checkpoint), "sha256": "bench"}
        replace_table(
            conn,
            "student_checkpoint",
            pd.DataFrame([{**registered, "created_at": pd.Timestamp.now() - pd.Timedelta(days=1)}]),
        )


def new_documents(inbox: Path, batch: int, n: int) -> None:
    """``n`` new Markdown documents in the inbox, written from demo documents with new titles and a new line."""
    sources = sorted(p for p in demo_corpus_dir().rglob("*.md"))
    for i in range(n):
        source = sources[(batch * n + i) % len(sources)]
        body = source.read_text().split("---", 2)[-1]
        (inbox / f"batch{batch}-{i}.md").write_text(
            f"---\ntitle: Update {batch}.{i} to {source.stem.replace('-', ' ')}\nauthor: Bench\n"
            f"modified: 2026-11-2{batch}\ntype: update\n---\n"
            f"This update {batch}.{i} supersedes parts of the earlier page.\n{body}"
        )


def logged_llm_calls(database: str) -> int:
    """LLM attempts logged in ``llm_calls`` (query writer and teacher; cache hits are not calls)."""
    with duckdb.connect(database) as conn:
        exists = conn.execute("select count(*) from information_schema.tables where table_name = 'llm_calls'")
        if not exists.fetchall()[0][0]:
            return 0
        return int(conn.execute("select count(*) from llm_calls").fetchall()[0][0])


def run_batch(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> tuple[dict[str, Any], str]:
    """Sensor tick + the incremental job for its batch; returns figures and the new cursor."""
    started = time.perf_counter()
    sensor = defs.resolve_sensor_def("inbox_sensor")
    resources = {k: defs.resources[k] for k in ("settings", "duckdb")}
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    key = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [key])
    calls_before = logged_llm_calls(str(defs.resources["duckdb"].database))
    run = defs.resolve_job_def("incremental_relabel_job").execute_in_process(partition_key=key, instance=instance)
    assert run.success
    seconds = time.perf_counter() - started
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in run.get_asset_materialization_events()}

    def value(asset: str, name: str) -> float:
        return meta[asset][name].value

    return {
        "latency_s": seconds,
        "assets_s": {a: value(a, "elapsed_s") for a in meta},
        "new_pairs": value("inbox_candidate_pairs", "pairs_added"),
        "entered_top_k": value("inbox_candidate_pairs", "entered_top_k"),
        "existing_queries": value("inbox_candidate_pairs", "existing_queries"),
        "queries_retrieved_again": value("inbox_candidate_pairs", "existing_queries_retrieved"),
        "student_labels": value("relevance_labels", "student_labels"),
        "teacher_labels": value("inbox_teacher_labels", "labels_added"),
        "llm_calls": logged_llm_calls(str(defs.resources["duckdb"].database)) - calls_before,
        "bm25_build_s": value("inbox_bm25_index", "build_seconds"),
        "bm25_mode": value("inbox_bm25_index", "update_mode"),
    }, result.cursor


def bm25_timings(documents: list[dict], batch: int, repeats: int = 3) -> dict[str, float]:
    """Rebuild against incremental update (tokens of all but the last ``batch`` documents cached, stored and
    loaded as the asset does), median seconds over ``repeats``."""
    old, new = documents[:-batch], documents
    _, tokens, _ = retrieval.build_bm25(old)
    folder = Path(tempfile.mkdtemp())
    retrieval.save_tokens(folder, tokens)
    rebuild, incremental = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        retrieval.build_bm25(new)
        rebuild.append(time.perf_counter() - started)
        started = time.perf_counter()
        retrieval.build_bm25(new, retrieval.load_tokens(folder))
        incremental.append(time.perf_counter() - started)
    shutil.rmtree(folder)
    return {"rebuild_s": statistics.median(rebuild), "incremental_s": statistics.median(incremental)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch-docs", type=int, default=10)
    parser.add_argument("--query-model", default="scripted/overlap")
    args = parser.parse_args()
    scripted_llm.register()
    work = Path(tempfile.mkdtemp(prefix="relabel-incremental-bench-"))
    print(f"working in {work}")
    started = time.perf_counter()
    first_docs = [d.as_row() for d in scan_directory(demo_corpus_dir())[0]]
    checkpoint = train_bench_student(work / "student", first_docs, template_queries(first_docs))
    print(f"student checkpoint trained once in {time.perf_counter() - started:.1f} s\n")
    figures = {}
    for scale in args.scales:
        root = work / f"x{scale}"
        documents, n_queries = baseline_warehouse(root, scale, checkpoint)
        resources = {
            "duckdb": DuckDBResource(database=str(root / "data" / "relabel.duckdb")),
            "llm": LLMGateway(model="scripted/overlap", query_model=args.query_model, use_logprobs=False),
            "model_store": ModelStore(root=str(root / "data" / "artifacts")),
            "settings": PipelineSettings(data_dir=str(root / "data"), inbox_dir=str(root / "inbox")),
        }
        defs = build_definitions(resources)
        instance = dg.DagsterInstance.ephemeral()
        (root / "inbox").mkdir()
        batches, cursor = [], None
        for batch in range(3):
            new_documents(root / "inbox", batch, args.batch_docs)
            figures_batch, cursor = run_batch(defs, instance, cursor)
            batches.append(figures_batch)
        figures[scale] = {
            "docs": len(documents),
            "queries": n_queries,
            "batches": batches,
            "bm25": bm25_timings(documents, args.batch_docs),
        }
        steady = batches[1:]
        print(
            f"x{scale}: {len(documents)} docs, {n_queries} queries | first batch {batches[0]['latency_s']:.1f} s "
            f"(imports the baseline) | steady batch {statistics.mean(b['latency_s'] for b in steady):.2f} s, "
            f"{statistics.mean(b['new_pairs'] for b in steady):.0f} new pairs, "
            f"{statistics.mean(b['llm_calls'] for b in steady):.0f} LLM calls"
        )
    print_tables(figures, args)


def print_tables(figures: dict[int, dict], args: argparse.Namespace) -> None:
    print(f"\n### Batch of {args.batch_docs} new documents (query model {args.query_model}; teacher scripted)\n")
    print(
        "| corpus | docs | queries | first batch s | steady batch s | new pairs | entered top-k | queries "
        "retrieved again | student labels | teacher labels | LLM calls |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale, f in figures.items():
        steady = f["batches"][1:]

        def mean(key: str, rows: list[dict] = steady) -> float:
            return statistics.mean(float(b[key]) for b in rows)

        print(
            f"| {scale}x | {f['docs']} | {f['queries']} | {f['batches'][0]['latency_s']:.2f} | {mean('latency_s'):.2f} "
            f"| {mean('new_pairs'):.0f} | {mean('entered_top_k'):.0f} | {mean('queries_retrieved_again'):.0f} "
            f"| {mean('student_labels'):.0f} | {mean('teacher_labels'):.0f} | {mean('llm_calls'):.0f} |"
        )
    print("\n### Seconds per asset in a steady batch (mean of batches 2 and 3)\n")
    assets = list(next(iter(figures.values()))["batches"][1]["assets_s"])
    print("| corpus | " + " | ".join(assets) + " |")
    print("|---|" + "---:|" * len(assets))
    for scale, f in figures.items():
        cells = [f"{statistics.mean(b['assets_s'][a] for b in f['batches'][1:]):.3f}" for a in assets]
        print(f"| {scale}x | " + " | ".join(cells) + " |")
    print("\n### BM25 update: full rebuild vs incremental (median of 3)\n")
    print("| corpus | docs | rebuild s | incremental s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for scale, f in figures.items():
        b = f["bm25"]
        print(
            f"| {scale}x | {f['docs']} | {b['rebuild_s']:.3f} | {b['incremental_s']:.3f} | "
            f"{b['rebuild_s'] / b['incremental_s']:.1f}x |"
        )


if __name__ == "__main__":
    main()
