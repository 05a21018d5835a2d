"""The 10M-pair projections of docs/scale.md from the figures ``scale_out_bench.py --json`` measured, with every
assumption an option (and printed next to the figure it produces).

    python bench/scale_out_plan.py FIGURES.json [--pairs 10000000] [--workers 16] [--gpu-usd-per-hour 2.0] ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", type=Path)
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=16, help="2-core CPU workers, one shard each")
    parser.add_argument("--cpu-usd-per-hour", type=float, default=0.10, help="a 2-core VM (RELABEL_HOURLY_RATE_USD)")
    parser.add_argument("--gpu", default="A100 80GB")
    parser.add_argument("--gpu-tflops", type=float, default=312.0, help="dense bf16 peak")
    parser.add_argument("--mfu", type=float, default=0.3, help="share of the peak an encoder's inference reaches")
    parser.add_argument("--gpu-usd-per-hour", type=float, default=2.0)
    parser.add_argument("--gpu-host-processes", type=int, default=8, help="shard processes feeding the GPU")
    parser.add_argument("--teacher-share", type=float, default=0.05)
    parser.add_argument("--teacher-concurrency", type=int, default=32, help="RELABEL_LLM_MAX_CONCURRENCY")
    parser.add_argument("--teacher-latency-s", type=float, default=1.0, help="seconds per GPT-4o grading call")
    parser.add_argument(
        "--minilm-pairs-per-s", type=float, help="use this MiniLM speed instead of the measured one (another run's)"
    )
    args = parser.parse_args()
    figures = json.loads(args.figures.read_text())
    n = args.pairs
    minilm = figures["minilm"]
    per_pair = minilm["label_s"] / minilm["pairs"]  # MiniLM on this machine, model loaded
    if args.minilm_pairs_per_s:
        per_pair = 1 / args.minilm_pairs_per_s
    startup = minilm["wall_s"] - minilm["label_s"]  # process start, imports, model load
    two_core = n * per_pair + startup
    shard = (n / args.workers) * per_pair + startup
    flops = figures["minilm_flops_per_pair"]
    gpu_compute = n * flops / (args.gpu_tflops * 1e12 * args.mfu)
    tiny = max(figures["sweep"], key=lambda r: r["pairs"])
    tiny_doc_factor = 80 / 25  # MiniLM pairs' documents (60-100 words) vs the tiny student's (20-30)
    host_per_pair = tiny["cpu_s"] / tiny["pairs"] * tiny_doc_factor  # tokenization, reading, writing: one core
    gpu_host = n * host_per_pair / args.gpu_host_processes
    gpu_wall = max(gpu_compute, gpu_host) + startup
    teacher = figures["teacher"]
    teacher_pairs = int(n * args.teacher_share)
    teacher_usd = teacher_pairs * teacher["usd_per_pair"]
    teacher_wall = teacher_pairs * args.teacher_latency_s / args.teacher_concurrency
    rows = [
        (
            "(a) this 2-core machine, MiniLM student",
            hours(two_core),
            f"${two_core / 3600 * args.cpu_usd_per_hour:,.2f}",
            f"{per_pair * 1e3:.1f} ms/pair ({'given' if args.minilm_pairs_per_s else 'measured'}); "
            f"${args.cpu_usd_per_hour}/h assumed",
        ),
        (
            f"(b) {args.workers} CPU workers (2 cores each), {args.workers} shards",
            hours(shard),
            f"${args.workers * shard / 3600 * args.cpu_usd_per_hour:,.2f}",
            f"same per-pair time; {startup:.0f} s start per shard",
        ),
        (
            f"(c) one {args.gpu} (estimate)",
            hours(gpu_wall),
            f"${gpu_wall / 3600 * args.gpu_usd_per_hour:,.2f}",
            f"{flops / 1e9:.2f} GFLOP/pair at {args.mfu:.0%} of {args.gpu_tflops:.0f} TFLOP/s = {hours(gpu_compute)}; "
            f"host side {host_per_pair * 1e6:.0f} us/pair on one core over {args.gpu_host_processes} processes = "
            f"{hours(gpu_host)}; ${args.gpu_usd_per_hour}/h assumed",
        ),
        (
            f"(d) GPT-4o teacher on {args.teacher_share:.0%} ({teacher_pairs:,} pairs)",
            hours(teacher_wall),
            f"${teacher_usd:,.0f}",
            f"{teacher['tokens_in']} tokens in + 1 out at ${teacher['input_usd_per_token'] * 1e6:.2f} / "
            f"${teacher['output_usd_per_token'] * 1e6:.2f} per 1M (litellm price table); "
            f"{args.teacher_concurrency} calls in flight at {args.teacher_latency_s} s assumed",
        ),
    ]
    print(f"Projections for {n:,} pairs from {args.figures} (measured {figures['date']})\n")
    print("| setting | wall time | USD | from |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nAll pairs by GPT-4o instead: ${n * teacher['usd_per_pair']:,.0f}; the student on (a) + GPT-4o on "
        f"{args.teacher_share:.0%}: ${two_core / 3600 * args.cpu_usd_per_hour + teacher_usd:,.0f}."
    )


if __name__ == "__main__":
    main()
