"""Weight-space mixing of trained bi-encoder students, measured on trec-dl-2023-test-a against NIST.

    python bench/weight_mix_bench.py --checkpoints data/bench/checkpoints/loyo-TREC-DL-2021-44136fa3 \
        [--soup data/bench/checkpoints/loyo-TREC-DL-20*-44136fa3] [--shares 0 0.25 0.5 0.75 1]

Each row labels every test-a pair with the encoder weights ``share * students + (1 - share) * base``: the
students' mean (a uniform "model soup" when several are given) interpolated with the pretrained base they were
fine-tuned from (WiSE-FT). Share 0 is the untrained base, share 1 the students themselves. All rows use the
same thresholds rule, cut points at the recorded GPT-4o labeling's (willia-umbrela1) grade shares on test-a, so
rows differ only in their scores. Shares are to be chosen by the κ against that teacher (a label-free rule);
the NIST columns only report. The checkpoints come from ``bench/scale_bench.py --checkpoints``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import SHARED, labeler_metrics, load_rows, reference_frames  # noqa: E402

TEACHER = "willia-umbrela1"


def mixed_state(base: dict[str, Any], students: list[dict[str, Any]], share: float) -> dict[str, Any]:
    """``share`` of the students' mean weights plus ``1 - share`` of the base's; tensors that are not floating
    point (position ids) are the base's."""
    mixed = {}
    for name, tensor in base.items():
        if not tensor.is_floating_point():
            mixed[name] = tensor
            continue
        mean = sum(student[name] for student in students) / len(students)
        mixed[name] = share * mean + (1.0 - share) * tensor
    return mixed


def label_test_a(state: dict[str, Any], model: Any, tokenizer: Any, rows: list[dict]) -> tuple[list[float], float]:
    """Expected grades of the rows under the encoder weights ``state`` (the default cosine head), and pairs/s."""
    from relabel.student import pair_text
    from relabel.student.base import expected_grades
    from relabel.student.bi_encoder import BiEncoderLabeler, CosineGradeHead

    model.load_state_dict(state)
    labeler = BiEncoderLabeler(model, tokenizer, CosineGradeHead(), 128, [0.75, 1.5, 2.25])
    started = time.perf_counter()
    scores = expected_grades(labeler.probabilities([r["query_text"] for r in rows], [pair_text(r) for r in rows]))
    return list(scores), len(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", type=Path, required=True, help="bi-encoder student folders")
    parser.add_argument("--soup", nargs="*", type=Path, default=[], help="also rows for the mean of these students")
    parser.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding the benchmark folders")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from relabel.models import resolve_encoder
    from relabel.student.base import apply_thresholds, fit_thresholds, read_meta

    base_path = resolve_encoder(read_meta(args.checkpoints[0])["base_model"])
    model = AutoModel.from_pretrained(base_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    base = {k: v.clone() for k, v in model.state_dict().items()}

    def weights(folder: Path) -> dict[str, Any]:
        return AutoModel.from_pretrained(str(folder), dtype=torch.float32).state_dict()

    rows = load_rows(args.shared)["test_a"]
    reference = reference_frames(args.shared)["test-a"]
    groups = [(folder.name, [weights(folder)]) for folder in args.checkpoints]
    if args.soup:
        groups.append(
            (f"mean of {len(args.soup)} ({', '.join(f.name for f in args.soup)})", list(map(weights, args.soup)))
        )
    table = []
    for name, students in groups:
        for share in args.shares:
            scores, per_s = label_test_a(mixed_state(base, students, share), model, tokenizer, rows)
            frame = reference.merge(
                pd.DataFrame({"qid": [r["qid"] for r in rows], "doc_id": [r["doc_id"] for r in rows], "score": scores})
            )
            teacher = frame[TEACHER].to_numpy()
            frame["grade"] = apply_thresholds(
                frame["score"].to_numpy(), fit_thresholds(frame["score"].to_numpy(), teacher)
            )
            table.append(
                {
                    "students": name,
                    "share": share,
                    **labeler_metrics(frame, "grade", "score", TEACHER),
                    "labels/s": per_s,
                }
            )
            print(table[-1], flush=True)
    text = pd.DataFrame(table).to_markdown(index=False, floatfmt=".3f")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
