"""Inference precision probe for the encoder students: passages/s of MiniLM-L6 embeddings in fp32, torch
dynamic int8 (whole model, per-tensor and per-channel; Q/K/V only) and bf16 autocast, measured in one run on
trec-dl-2023-test-a passages, and how far each path's embeddings drift from fp32 (cosine per passage).

    python bench/precision_probe.py [--passages 384] [--max-length 128] [--batch-size 64]

The passages are read from ``../shared/benchmarks`` in place. A path is only worth shipping when its drift
leaves the grades unchanged: the bi-encoder's cosine head changes grade every ~0.15 of cosine."""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TEST_A = REPO.parent / "shared" / "benchmarks" / "trec-dl-2023-test-a"


def quantized(build: Callable[[], torch.nn.Module], spec: dict) -> torch.nn.Module:
    """``build()`` with the Linear layers named in ``spec`` quantized to dynamic int8."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, still present in torch 2.13
        return quantize_dynamic(build(), spec, dtype=torch.qint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=384)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not TEST_A.is_dir():
        raise SystemExit(f"benchmark folder not found: {TEST_A}")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig
    from transformers import AutoModel, AutoTokenizer

    from relabel.evaluation.judgments import read_docs_jsonl, read_label_file
    from relabel.models import minilm_dir
    from relabel.student.bi_encoder import embed

    doc_ids = list(dict.fromkeys(read_label_file(TEST_A / "qrels.txt")["doc_id"]))[: args.passages]
    docs = read_docs_jsonl(TEST_A / "docs.jsonl", set(doc_ids))
    texts = [f"{docs[d]['title']} {docs[d]['text']}" for d in doc_ids if d in docs]
    folder = str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def build() -> torch.nn.Module:
        return AutoModel.from_pretrained(folder, dtype=torch.float32).eval()

    fp32 = build()
    linear = [name for name, module in fp32.named_modules() if isinstance(module, torch.nn.Linear)]
    paths: dict[str, tuple[torch.nn.Module, bool]] = {
        "fp32": (fp32, False),
        "int8 per-tensor": (quantized(build, {torch.nn.Linear: default_dynamic_qconfig}), False),
        "int8 per-channel": (quantized(build, {torch.nn.Linear: per_channel_dynamic_qconfig}), False),
        "int8 Q/K/V only": (
            quantized(build, {n: per_channel_dynamic_qconfig for n in linear if n.endswith(("query", "key", "value"))}),
            False,
        ),
        "bf16 autocast": (fp32, True),
    }

    def run(model: torch.nn.Module, bf16: bool) -> tuple[float, torch.Tensor]:
        started = time.perf_counter()
        chunks = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(texts), args.batch_size):
                chunk = texts[start : start + args.batch_size]
                chunks.append(embed(model, tokenizer, chunk, args.max_length).float())
        return len(texts) / (time.perf_counter() - started), torch.cat(chunks)

    reference = run(fp32, False)[1]
    threads = torch.get_num_threads()
    print(f"{len(texts)} passages, {args.max_length} tokens, batches of {args.batch_size}, {threads} threads")
    print("| path | passages/s | vs fp32 | cosine to fp32: median | min |")
    print("|---|---:|---:|---:|---:|")
    speeds = {name: run(model, bf16) for name, (model, bf16) in paths.items()}
    for name, (speed, vectors) in speeds.items():
        cosine = (vectors * reference).sum(-1)
        print(
            f"| {name} | {speed:.1f} | {speed / speeds['fp32'][0]:.2f}x | {cosine.median():.4f} | {cosine.min():.4f} |"
        )


if __name__ == "__main__":
    main()
