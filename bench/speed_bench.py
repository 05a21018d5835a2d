"""Speed in one run: the demo's wall time per asset, the embedded teacher before and after the document-first
prompt layout on the demo's own pairs, and the student's inference paths next to the measured compute bounds.

    python bench/speed_bench.py [--json speed.json] [--skip demo,teacher,student]

1. ``relabel run`` on the bundled demo corpus in a scratch data directory, from nothing (models already
   installed): wall time, and seconds and rows per asset as the run prints them.
2. The pairs that run graded (its ``pairs_to_grade``), graded again by the embedded teacher from an empty answer
   cache with the query-first layout (before) and the shipped document-first one, calls in prefix order:
   labels/s, the share of prompt tokens served from the prefix (KV) cache, tokens processed, same grades.
3. A throwaway bi-encoder student (one epoch on 160 recorded GPT-4o labels) labels all 2,691 trec-dl-2023-test-a
   pairs in fp32, in bf16 autocast and with torch dynamic int8 weights: pairs/s, the share of grades equal to
   fp32's and the change of kappa against NIST (the equivalence bar: at least 99% and at most 0.005), next to
   measured fp32 and bf16 matmul throughput and the fp32 bound in pairs/s. On a CPU without native bf16 (no
   AVX-512 BF16 or AMX) bf16 is emulated at a fraction of fp32's speed; it is then timed on the first 256 pairs.
Run it on a quiet machine: other jobs on the cores lower every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from distill_bench import encoder_flops_per_pair, matmul_gflops
from kv_order_bench import compare_layouts, demo_pairs
from precision_probe import quantized
from student_speed_bench import load_test_a_pairs, train_throwaway_student

from relabel.evaluation.metrics import agreement
from relabel.student import load_student, read_meta
from relabel.student.base import cpu_has_native_bf16
from relabel.student.cross_encoder import set_inference_threads
from relabel_assets.console import parse_asset_line
from resources.llm import DEFAULT_LLM_MODEL

EMULATED_BF16_PAIRS = 256


def demo_run(data_dir: Path) -> tuple[float, pd.DataFrame]:
    """Wall seconds of ``relabel run`` from an empty data directory, and its per-asset lines."""
    env = {**os.environ, "RELABEL_DATA_DIR": str(data_dir), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "relabel.cli", "run"], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"relabel run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    assets = [row for line in done.stdout.splitlines() if (row := parse_asset_line(line))]
    return wall, pd.DataFrame(assets).astype({"seconds": float})


def teacher_layouts(warehouse: Path, model: str) -> pd.DataFrame:
    """The demo's pairs graded with the query-first and the document-first layout, prefix order."""
    return compare_layouts(model, demo_pairs(str(warehouse)).to_dict("records"))


def student_paths(scratch: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """pairs/s of a throwaway bi-encoder on test-a per inference path, with its equivalence to fp32."""
    set_inference_threads()
    queries, human, docs, query_texts, doc_texts = load_test_a_pairs()
    train_throwaway_student(scratch, queries, docs, "bi-encoder")
    fp32_model = load_student(scratch).model
    paths = {"fp32": ("fp32", fp32_model), "bf16 autocast": ("bf16", fp32_model)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, still present in torch 2.13
        from torch.ao.quantization import per_channel_dynamic_qconfig
    int8 = quantized(lambda: copy.deepcopy(fp32_model), {torch.nn.Linear: per_channel_dynamic_qconfig})
    paths["int8 dynamic per channel (torch)"] = ("fp32", int8)
    results, reference = [], None
    for name, (precision, model) in paths.items():
        # bf16 emulated in software runs at a fraction of fp32: time it on a slice, compare grades on that slice
        emulated = precision == "bf16" and not cpu_has_native_bf16()
        n = EMULATED_BF16_PAIRS if emulated else len(query_texts)
        labeler = load_student(scratch)
        labeler.model, labeler.precision = model, precision
        labeler.predict(query_texts[:64], doc_texts[:64])  # warm-up
        started = time.perf_counter()
        _, grades = labeler.predict(query_texts[:n], doc_texts[:n])
        seconds = time.perf_counter() - started
        reference = grades if reference is None else reference
        kappa = agreement(human["grade"].astype(int), pd.Series(grades))["cohen_kappa"] if n == len(human) else None
        results.append(
            {
                "path": name + (" (emulated)" if emulated else ""),
                "pairs": n,
                "pairs/s": round(n / seconds, 1),
                "grades = fp32": round(float((grades == reference[:n]).mean()), 4),
                "kappa vs NIST": kappa,
            }
        )
        print(results[-1], flush=True)
    table = pd.DataFrame(results)
    table["vs fp32"] = (table["pairs/s"] / table["pairs/s"].iloc[0]).round(2)
    table["delta kappa"] = (table["kappa vs NIST"].astype(float) - table["kappa vs NIST"].iloc[0]).round(4)
    flops = encoder_flops_per_pair(scratch, "bi-encoder", query_texts, doc_texts, read_meta(scratch)["max_length"])
    bounds = {"fp32 GFLOP/s": matmul_gflops(), "bf16 GFLOP/s": matmul_gflops(dtype=torch.bfloat16)}
    bounds["GFLOP per pair"] = flops / 1e9
    bounds["fp32 bound pairs/s"] = bounds["fp32 GFLOP/s"] * 1e9 / flops
    return table, {k: round(v, 3) for k, v in bounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_LLM_MODEL, help="the teacher graded in part 2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: demo, teacher, student")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory() as scratch:
        if "demo" not in skip or "teacher" not in skip:
            wall, assets = demo_run(Path(scratch) / "demo")
            report["demo_wall_s"] = round(wall, 1)
            report["demo_assets"] = assets.to_dict("records")
            print(f"\n`relabel run` on the demo corpus: {wall:.0f} s wall\n\n{assets.to_markdown(index=False)}\n")
        if "teacher" not in skip:
            teacher = teacher_layouts(Path(scratch) / "demo" / "relabel.duckdb", args.model)
            report["teacher"] = teacher.to_dict("records")
            before, after = teacher.iloc[0], teacher.iloc[1]
            print(f"\n{teacher.to_markdown(index=False)}\n")
            print(
                f"document first vs query first: {before['seconds'] / after['seconds']:.2f}x the labels/s, "
                f"{1 - after['processed_tokens'] / before['processed_tokens']:.0%} fewer prompt tokens processed, "
                f"same grade on {after['same_grade_as_first_arm']}/{after['pairs']} pairs\n"
            )
        if "student" not in skip:
            student, bounds = student_paths(Path(scratch) / "student")
            report["student"], report["bounds"] = student.to_dict("records"), bounds
            print(f"\n{student.to_markdown(index=False)}\n\ncompute bounds: {bounds}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
