"""Scale-out figures for docs/scale.md: time per pair and peak RSS of streaming ``relabel label`` over a sweep of
pair counts, the overhead of 4 hash shards against 1 on one machine, the real MiniLM student's pairs/s, the
GPT-4o teacher's price per pair from litellm's price table, and the 10M-pair projections built from them.

    python bench/scale_out_bench.py [--sizes 10000 100000 1000000] [--real-pairs 2000] [--shard-pairs 100000]

Each ``relabel label`` runs as its own process (``os.wait4`` gives its CPU time; its peak RSS is the VmHWM it
reads from /proc/self/status as it exits), the
tiny student with one torch thread (``--threads 1``), MiniLM with every core.
Pairs are synthetic and self-contained Parquet (qid, doc_id, query_text, doc_text): queries of 4-8 words with
10 candidates each, documents drawn from a pool of 50,000, words from the bundled demo corpus: 60-100 words
(~500 characters, the pipeline's ``max_doc_chars``) for MiniLM, 20-30 words for the tiny student (so that its
1M-pair run fits the 2-core budget; tokenization is most of its cost). Two students, both bi-encoders with
thresholds only (``epochs=0``: speed does not depend on what the weights learned):

- ``minilm``: the real MiniLM-L6 (22.7M parameters), the pipeline's default student;
- ``tiny``: one 32-wide transformer layer with MiniLM's tokenizer, so that 1M pairs fit in minutes on 2 cores;
  it runs the same code (Parquet reading, tokenization, batching, writing) with almost no model compute, so its
  time per pair is the pipeline's floor and its flatness shows that streaming keeps time and memory per pair
  constant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DOC_POOL = 50_000
DOCS_PER_QUERY = 10
ROW_GROUP = 100_000
CHUNK = 4096


def vocabulary() -> list[str]:
    """Words of the bundled demo corpus (lower-cased, alphabetic)."""
    from relabel.evaluation.judgments import demo_corpus_dir

    words: set[str] = set()
    for path in demo_corpus_dir().rglob("*"):
        if path.is_file():
            words.update(w.lower() for w in path.read_text(errors="ignore").split() if w.isalpha())
    return sorted(words)


def write_pairs(path: Path, pairs: int, doc_words: tuple[int, int] = (60, 100), seed: int = 0) -> None:
    """``pairs`` synthetic self-contained pairs (documents of ``doc_words`` words), written a row group at a time."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary())
    # the same pool at every size: a chunk of 4,096 pairs holds about as many distinct documents at 10k as at 1M
    doc_texts = [" ".join(rng.choice(words, rng.integers(doc_words[0], doc_words[1] + 1))) for _ in range(DOC_POOL)]
    schema = pa.schema([(n, pa.string()) for n in ("qid", "doc_id", "query_text", "doc_text")])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, pairs, ROW_GROUP):
            n = min(ROW_GROUP, pairs - start)
            rows = np.arange(start, start + n)
            qids = rows // DOCS_PER_QUERY
            texts = {q: " ".join(rng.choice(words, rng.integers(4, 9))) for q in np.unique(qids)}
            docs = rng.integers(0, DOC_POOL, n)
            writer.write_table(
                pa.table(
                    {
                        "qid": [f"q{q}" for q in qids],
                        "doc_id": [f"d{d}" for d in docs],
                        "query_text": [texts[q] for q in qids],
                        "doc_text": [doc_texts[d] for d in docs],
                    },
                    schema=schema,
                )
            )


def tiny_base(folder: Path) -> Path:
    """A one-layer, 32-wide BERT with MiniLM's tokenizer (random weights, seed 0)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from relabel.models import minilm_dir

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def student(base: Path, out: Path, pairs: Path) -> Path:
    """A bi-encoder checkpoint of ``base`` with thresholds fitted on 400 pairs (no training)."""
    from relabel.student import StudentConfig, train_student

    rows = pq.ParquetFile(pairs).read_row_group(0).slice(0, 400).to_pylist()
    rows = [
        {"qid": r["qid"], "query_text": r["query_text"], "title": "", "doc_text": r["doc_text"], "grade": i % 4}
        for i, r in enumerate(rows)
    ]
    train_student(
        rows, StudentConfig(base_model=str(base), recipe="bi-encoder", epochs=0, val_fraction=0, max_length=256), out
    )
    return out


# runs `relabel label` and records the process's own peak RSS (VmHWM of its memory map): the child's ru_maxrss
# would include this process's RSS at fork time
PEAK_RSS_WRAPPER = """import os, runpy, sys
sys.argv = ["relabel", *sys.argv[1:]]
try:
    runpy.run_module("relabel.cli", run_name="__main__")
finally:
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    open(os.environ["RELABEL_BENCH_PEAK_RSS"], "w").write(status)
"""


def label_run(model: Path, pairs: Path, out: Path, threads: int) -> dict[str, float]:
    """One ``relabel label`` process: wall and CPU seconds, peak RSS (MiB) and its own labeling seconds."""
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "label", "--model", str(model), "--pairs", str(pairs)]
    command += ["--out", str(out), "--chunk-size", str(CHUNK), "--threads", str(threads)]
    peak_file = out.with_suffix(".peak_rss_kib")
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RELABEL_BENCH_PEAK_RSS": str(peak_file)},
    )
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {output}")
    labeled = [line for line in output.splitlines() if line.startswith("labeled ")][-1]
    rows, seconds = int(labeled.split()[1]), float(labeled.split(" in ")[1].split()[0])
    return {
        "pairs": rows,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "label_s": seconds,
        "peak_rss_mib": round(int(peak_file.read_text()) / 1024, 1),
        "us_per_pair": round(1e6 * wall / rows, 1),
        "label_us_per_pair": round(1e6 * seconds / rows, 1),
    }


def split_shards(pairs: Path, folder: Path, shards: int) -> tuple[list[Path], float]:
    """The pairs split into ``shards`` Parquet files by ``shard_of(qid)``, streamed; returns files and seconds."""
    import pyarrow.compute as pc

    from relabel.shard_store import shard_of

    started = time.perf_counter()
    source = pq.ParquetFile(pairs)
    paths = [folder / f"shard-{k}.parquet" for k in range(shards)]
    writers = [pq.ParquetWriter(p, source.schema_arrow) for p in paths]
    for batch in source.iter_batches(batch_size=ROW_GROUP):
        qids = batch.column("qid").to_pylist()
        owner = {q: shard_of(q, shards) for q in set(qids)}
        keys = pa.array([owner[q] for q in qids])
        for k, writer in enumerate(writers):
            writer.write_batch(batch.filter(pc.equal(keys, k)))
    for writer in writers:
        writer.close()
    return paths, time.perf_counter() - started


def teacher_price(model: str = "gpt-4o") -> dict[str, float]:
    """USD per grading call of ``model`` from litellm's bundled price table, for a 500-character document with the
    default grading prompt: input tokens counted by litellm, one answer token (logprob mode; 4 without)."""
    import litellm

    from relabel.llm.prompts import load_prompt, render_pair
    from relabel.teacher.grading import DEFAULT_GRADE_PROMPT

    rng = np.random.default_rng(1)
    document = {"title": "VPN troubleshooting on macOS", "text": " ".join(rng.choice(np.array(vocabulary()), 200))}
    messages = render_pair(load_prompt(DEFAULT_GRADE_PROMPT), "vpn drops on macos after update", document, 500)
    tokens_in = litellm.token_counter(model=model, messages=messages)
    price = litellm.model_cost[model]
    per_call = tokens_in * price["input_cost_per_token"] + price["output_cost_per_token"]
    return {
        "model": model,
        "tokens_in": tokens_in,
        "input_usd_per_token": price["input_cost_per_token"],
        "output_usd_per_token": price["output_cost_per_token"],
        "usd_per_pair": per_call,
        "usd_per_pair_4_answer_tokens": per_call + 3 * price["output_cost_per_token"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--real-pairs", type=int, default=2_000)
    parser.add_argument("--shard-pairs", type=int, default=100_000)
    parser.add_argument(
        "--tiny-doc-words", type=int, nargs=2, default=[20, 30], help="document length of the tiny student's pairs"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--sweep-only", action="store_true", help="only the tiny student's sweep")
    args = parser.parse_args()
    from relabel.models import minilm_dir

    figures: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        files = {}
        for n in sorted({*args.sizes, args.shard_pairs}):
            files[n] = tmp / f"pairs-{n}.parquet"
            write_pairs(files[n], n, tuple(args.tiny_doc_words))
        tiny = student(tiny_base(tmp / "tiny-base"), tmp / "tiny", files[args.shard_pairs])
        sweep = []
        for n in args.sizes:
            row = {"model": "tiny", "threads": 1, **label_run(tiny, files[n], tmp / f"tiny-{n}.parquet", 1)}
            sweep.append(row)
            print(json.dumps(row), flush=True)
        figures["sweep"] = sweep
        if args.sweep_only:
            return write_figures(figures, args.json)
        real_pairs = tmp / "real-pairs.parquet"
        write_pairs(real_pairs, args.real_pairs)
        minilm = student(minilm_dir(), tmp / "minilm", real_pairs)
        real = {"model": "minilm", "threads": 0, **label_run(minilm, real_pairs, tmp / "minilm.parquet", 0)}
        print(json.dumps(real), flush=True)
        done = {row["pairs"]: row for row in sweep}
        one = done.get(args.shard_pairs) or label_run(tiny, files[args.shard_pairs], tmp / "one-shard.parquet", 1)
        paths, split_s = split_shards(files[args.shard_pairs], tmp, 4)
        parts = [label_run(tiny, p, tmp / f"labels-{p.name}", 1) for p in paths]
        sharded_wall = split_s + sum(p["wall_s"] for p in parts)
        sharding = {
            "model": "tiny",
            "pairs": args.shard_pairs,
            "one_shard_wall_s": one["wall_s"],
            "split_s": round(split_s, 2),
            "four_shards_wall_s_sum": round(sum(p["wall_s"] for p in parts), 2),
            "four_shards_label_s_sum": round(sum(p["label_s"] for p in parts), 2),
            "one_shard_label_s": one["label_s"],
            "overhead": round(sharded_wall / one["wall_s"] - 1, 3),
            "shard_pairs": [p["pairs"] for p in parts],
        }
        print(json.dumps(sharding), flush=True)
        flops = encoder_flops(minilm, real_pairs)
    figures.update(minilm=real, sharding=sharding, teacher=teacher_price(), minilm_flops_per_pair=flops)
    write_figures(figures, args.json)


def write_figures(figures: dict[str, object], path: Path | None) -> None:
    """Print the figures as JSON, and write them to ``path`` when given."""
    print(json.dumps(figures, indent=1))
    if path:
        path.write_text(json.dumps(figures, indent=1) + "\n")


def encoder_flops(model: Path, pairs: Path) -> float:
    """Forward FLOPs per pair of the bi-encoder on the first 4,096 pairs (a chunk: distinct texts embedded once)."""
    from distill_bench import encoder_flops_per_pair

    rows = pq.ParquetFile(pairs).read_row_group(0).slice(0, CHUNK).to_pylist()
    return encoder_flops_per_pair(
        model, "bi-encoder", [r["query_text"] for r in rows], [r["doc_text"] for r in rows], 256
    )


if __name__ == "__main__":
    main()
