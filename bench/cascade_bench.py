"""The cost dial measured: the student labels every pair, the teacher re-grades the routed share.

    python bench/cascade_bench.py [--predictions data/bench/scale_predictions.jsonl] [--seeds 5]

Reads the students' recorded predictions from ``bench/scale_bench.py`` (transfer: the default student ``{}`` on
trec-dl-2023-test-a, teacher = the recorded GPT-4o labeling willia-umbrela1; leave-one-year-out when present:
each held-out TREC DL year with GPT-4o's grades of it as the teacher, routed per year, pooled) and, at teacher
shares of 0, 5, 10, 20, 30, 50 and 100%, routes with ``relabel.teacher.routing``: uncertainty by entropy (when the
predictions carry p0..p3) and by threshold margin, and random routing (mean of ``--seeds`` seeds). Each cascade
is scored against NIST with the metrics of ``bench/scale_bench.py`` (kappa, quadratic kappa, pairwise
accuracy, nDCG@10), and priced: teacher calls at GPT-4o's litellm price for the grading prompt's estimated
tokens, the student at machine-seconds x ``RELABEL_HOURLY_RATE_USD``.

The uncertainty variant is chosen without NIST: by the exact agreement of the student's labels with the
teacher's on the pairs the cascade leaves to the student, averaged over the shares 5-50%.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from relabel.teacher.routing import (  # noqa: E402
    REASON_RANDOM,
    REASON_RANDOM_SLICE,
    DisagreementModel,
    cascade_frame,
    fit_disagreement,
    student_features,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"
SHARES = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50, 1.0)
TEACHER_MODEL = "gpt-4o"
TOKENS_OUT = 1  # the grading prompt asks for one digit
RANDOM_SHARE = 0.1  # the slice of the teacher budget that stays random under uncertainty routing
TEACHERS = {"transfer": ("willia-umbrela1", "willia-umbrela1_score"), "loyo": ("teacher_gpt4o", "teacher_gpt4o_score")}


def scale_bench() -> ModuleType:
    """``bench/scale_bench.py`` as a module (its reference frames and metrics are reused, not copied)."""
    spec = importlib.util.spec_from_file_location("scale_bench", Path(__file__).with_name("scale_bench.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_records(path: Path, protocol: str, config: dict) -> list[dict[str, Any]]:
    """The recorded predictions of one protocol and configuration (the last record per split wins)."""
    records: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record["protocol"] == protocol and record["config"] == config:
                records[record["split"]] = record
    return [records[split] for split in sorted(records)]


def student_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """qid, doc_id, split, student score (expected grade) and grade, p0..p3 (NaN when not recorded), and each
    split's thresholds (margin routing needs them)."""
    frames = []
    for record in records:
        pairs = record["pairs"]
        width = max(len(p) for p in pairs)
        columns = ["qid", "doc_id", "student_score", "student_grade", "p0", "p1", "p2", "p3"][:width]
        frame = pd.DataFrame([p + [np.nan] * (width - len(p)) for p in pairs], columns=columns)
        for column in ("p0", "p1", "p2", "p3"):
            if column not in frame:
                frame[column] = np.nan
        frames.append(
            frame.assign(
                split=record["split"],
                thresholds=[record["thresholds"]] * len(frame),
                labels_per_s=record.get("labels_per_s", float("nan")),
            )
        )
    return pd.concat(frames, ignore_index=True)


def route_frame(
    frame: pd.DataFrame,
    teacher: str,
    teacher_score: str,
    share: float,
    policy: str,
    variant: str,
    seed: int,
    random_share: float,
    models: dict[str, DisagreementModel] | None = None,
) -> tuple[pd.DataFrame, int, int]:
    """The cascade's labels (``grade``, ``score``, ``labeler_kind``, ``routing_reason``) when each split routes
    ``share`` of its pairs (``relabel.teacher.routing.cascade_frame``); also the teacher pairs and the random slice,
    summed over splits."""
    parts, teacher_pairs, random_slice = [], 0, 0
    for split, part in frame.groupby("split", sort=True):
        student = part.rename(columns={"student_grade": "grade", "student_score": "expected_grade"})[
            ["qid", "doc_id", "grade", "expected_grade", "p0", "p1", "p2", "p3"]
        ].assign(pair_source=split)
        graded = part[["qid", "doc_id"]].assign(
            pair_source=split, grade=part[teacher].astype(int), expected_grade=part[teacher_score].astype(float)
        )
        rows = cascade_frame(
            student,
            graded,
            share,
            policy,
            variant,
            random_share,
            seed,
            part["thresholds"].iloc[0],
            model=(models or {}).get(str(split)),
        )
        rows = rows[["qid", "doc_id", "grade", "expected_grade", "labeler_kind", "routing_reason"]]
        parts.append(part.merge(rows.rename(columns={"expected_grade": "score"}), on=["qid", "doc_id"]))
        teacher_pairs += int((rows["labeler_kind"] == "teacher").sum())
        random_slice += int(rows["routing_reason"].isin([REASON_RANDOM, REASON_RANDOM_SLICE]).sum())
    return pd.concat(parts, ignore_index=True), teacher_pairs, random_slice


def fit_models(
    fit_frame: pd.DataFrame, teacher: str, splits: list[str], cross_fit: bool, use_probabilities: bool = True
) -> dict[str, Any]:
    """Disagreement models (``relabel.teacher.routing.fit_disagreement``) from the student-vs-teacher disagreements of
    ``fit_frame``: one per split of ``splits``, fitted on the other splits when ``cross_fit`` (leave one year
    out), else on all of ``fit_frame``; p0..p3 are features only when both sides have them. No NIST grade is
    read."""
    use_probabilities = use_probabilities and not fit_frame[["p0", "p1", "p2", "p3"]].isna().any().any()

    def fit(part: pd.DataFrame) -> DisagreementModel:
        features = np.vstack(
            [
                student_features(
                    g["student_score"].to_numpy(dtype=float),
                    g["thresholds"].iloc[0],
                    g[["p0", "p1", "p2", "p3"]].to_numpy(dtype=float) if use_probabilities else None,
                )
                for _, g in part.groupby("split")
            ]
        )
        ordered = pd.concat([g for _, g in part.groupby("split")])
        return fit_disagreement(features, (ordered["student_grade"] != ordered[teacher]).to_numpy())

    if cross_fit:
        return {split: fit(fit_frame[fit_frame["split"] != split]) for split in splits}
    model = fit(fit_frame)
    return dict.fromkeys(splits, model)


def teacher_usd_per_pair(shared: Path, folder: str, keys: pd.DataFrame, sample: int = 2000) -> float:
    """Mean GPT-4o price of grading one pair with the ``grade_nist`` prompt (whole passage shown), tokens
    estimated as UTF-8 bytes / 4, over a seeded sample of the pairs."""
    from relabel.evaluation.cost import api_cost_usd
    from relabel.evaluation.judgments import read_docs_jsonl, read_queries
    from relabel.llm.prompts import load_prompt, render_pair

    picked = keys.sample(min(sample, len(keys)), random_state=0)
    queries = read_queries(shared / folder / "queries.tsv")
    docs = read_docs_jsonl(shared / folder / "docs.jsonl", set(picked["doc_id"]))
    prompt = load_prompt("grade_nist")
    tokens = [
        sum(len(m["content"].encode()) for m in render_pair(prompt, queries[q], docs[d], 10**9)) / 4
        for q, d in zip(picked["qid"], picked["doc_id"], strict=True)
        if d in docs
    ]
    price = api_cost_usd(TEACHER_MODEL, round(float(np.mean(tokens))), TOKENS_OUT)
    if price is None:
        raise SystemExit(f"litellm has no price for {TEACHER_MODEL}")
    return price


def cascade_table(
    frame: pd.DataFrame,
    teacher: str,
    teacher_score: str,
    labeler_metrics: Any,
    usd_per_teacher_pair: float,
    seeds: int = 5,
    shares: tuple[float, ...] = SHARES,
    random_share: float = RANDOM_SHARE,
    hourly_rate_usd: float = 0.10,
    models: dict[str, DisagreementModel] | None = None,
) -> pd.DataFrame:
    """One row per (policy, share): metrics vs NIST, agreement with the teacher, teacher pairs, random slice
    and cost. Random routing is the mean over ``seeds`` seeds (``kappa_std`` their spread). With a disagreement
    model for every split (``models``), the learned ``disagreement`` variant is measured too."""
    has_probabilities = not frame[["p0", "p1", "p2", "p3"]].isna().any().any()
    policies = [("uncertainty", v, f"uncertainty ({v})") for v in (["entropy"] if has_probabilities else [])]
    policies += [("uncertainty", "margin", "uncertainty (margin)")]
    if models and set(frame["split"]) <= set(models):
        policies += [("uncertainty", "disagreement", "uncertainty (disagreement)")]
    policies += [("random", "entropy", f"random ({seeds} seeds)")]
    student_usd = float((1.0 / frame["labels_per_s"]).fillna(0).sum()) * hourly_rate_usd / 3600
    rows = []
    for policy, variant, name in policies:
        for share in shares:
            runs = []
            for seed in range(seeds if policy == "random" else 1):
                labeled, teacher_pairs, random_slice = route_frame(
                    frame, teacher, teacher_score, share, policy, variant, seed, random_share, models
                )
                rest = labeled[labeled["labeler_kind"] == "student"]
                runs.append(
                    {
                        **labeler_metrics(labeled, "grade", "score", teacher),
                        "agree_rest": float((rest["student_grade"] == rest[teacher]).mean())
                        if len(rest)
                        else float("nan"),
                        "teacher_pairs": teacher_pairs,
                        "random_slice": random_slice,
                    }
                )
            mean = pd.DataFrame(runs).mean(numeric_only=True).to_dict()
            usd = mean["teacher_pairs"] * usd_per_teacher_pair + student_usd
            rows.append(
                {
                    "policy": name,
                    "share": share,
                    "pairs": len(frame),
                    **mean,
                    "kappa_std": float(np.std([r["kappa"] for r in runs])),
                    "usd": usd,
                    "usd_per_1k": 1000 * usd / len(frame),
                }
            )
    return pd.DataFrame(rows)


def choose_variant(table: pd.DataFrame) -> str:
    """The uncertainty variant whose left-to-the-student pairs agree best with the TEACHER (exact agreement,
    mean over shares strictly between 0 and 100%); NIST is not read."""
    inner = table[(table["share"] > 0) & (table["share"] < 1) & table["policy"].str.startswith("uncertainty")]
    return str(inner.groupby("policy")["agree_rest"].mean().idxmax())


def targets(table: pd.DataFrame, chosen: str) -> list[str]:
    """The issue's targets, stated from the table: the share of the kappa gap closed at 20%, and where the
    chosen uncertainty variant beats random routing."""

    def at(policy: str, share: float) -> pd.Series:
        return table[(table["policy"] == policy) & np.isclose(table["share"], share)].iloc[0]

    random_name = next(p for p in table["policy"].unique() if p.startswith("random"))
    student, teacher = at(chosen, 0.0)["kappa"], at(chosen, 1.0)["kappa"]
    cascade = at(chosen, 0.2)["kappa"]
    lines = []
    if teacher > student:
        closed = (cascade - student) / (teacher - student)
        lines.append(
            f"at 20%: kappa {cascade:.3f} closes {closed:.0%} of the gap student {student:.3f} -> teacher "
            f"{teacher:.3f} (target >= 50%: {'met' if closed >= 0.5 else 'NOT met'})"
        )
    else:
        lines.append(
            f"student kappa {student:.3f} >= teacher {teacher:.3f}; at 20% the cascade has {cascade:.3f} "
            f"(target >= {student:.3f}: {'met' if cascade >= student else 'NOT met'})"
        )
    inner = sorted(s for s in table["share"].unique() if 0 < s < 1)
    for metric in ("kappa", "qw_kappa", "pairwise"):
        wins = [f"{100 * s:.0f}%" for s in inner if at(chosen, s)[metric] > at(random_name, s)[metric]]
        lines.append(
            f"{metric}: {chosen} beats {random_name} at {len(wins)}/{len(inner)} inner shares "
            f"({', '.join(wins) or 'none'})"
        )
    return lines


def synthetic_records(reference: pd.DataFrame, teacher: str, seed: int = 0) -> list[dict[str, Any]]:
    """Stand-in predictions for development: a student whose expected grade is the teacher's grade plus noise,
    with a softmax distribution around it, and thresholds at the half grades."""
    rng = np.random.default_rng(seed)
    expected = np.clip(reference[teacher].to_numpy(dtype=float) + rng.normal(0, 0.9, len(reference)), 0, 3)
    logits = -((np.arange(4)[None, :] - expected[:, None]) ** 2) / rng.uniform(0.2, 2.0, (len(reference), 1))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    score = p @ np.arange(4)
    grade = np.searchsorted([0.5, 1.5, 2.5], score)
    pairs = [
        [q, d, float(s), int(g), *map(float, row)]
        for q, d, s, g, row in zip(reference["qid"], reference["doc_id"], score, grade, p, strict=True)
    ]
    return [
        {
            "protocol": "synthetic",
            "split": "test-a",
            "config": {},
            "thresholds": [0.5, 1.5, 2.5],
            "labels_per_s": 1000.0,
            "pairs": pairs,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--predictions", type=Path, default=REPO / "data" / "bench" / "scale_predictions.jsonl")
    parser.add_argument("--config", default="{}", help="which student configuration of the predictions (JSON)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of random routing (their mean is reported)")
    parser.add_argument(
        "--random-share",
        type=float,
        default=RANDOM_SHARE,
        help="slice of the teacher budget kept random under uncertainty routing",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="a synthetic student on test-a instead of --predictions (development only)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "cascade_bench.md")
    parser.add_argument("--png", type=Path, default=REPO / "data" / "bench" / "cascade_curve.png")
    args = parser.parse_args()
    if not (args.shared / "trec-dl-2023-test-a").is_dir():
        raise SystemExit(f"benchmark folder not found: {args.shared / 'trec-dl-2023-test-a'}")
    scale = scale_bench()
    references = scale.reference_frames(args.shared)
    hourly = float(os.environ.get("RELABEL_HOURLY_RATE_USD", "0.10"))
    sections, curves = [], []
    frames: dict[str, pd.DataFrame] = {}
    record_sets: dict[str, list[dict]] = {}
    for protocol in ("transfer", "loyo"):
        teacher = TEACHERS[protocol][0]
        if args.synthetic:
            if protocol != "transfer":
                continue
            records = synthetic_records(references["test-a"], teacher)
        elif args.predictions.exists():
            records = read_records(args.predictions, protocol, json.loads(args.config))
        else:
            raise SystemExit(f"no predictions at {args.predictions} (run bench/scale_bench.py, or --synthetic)")
        if not records:
            print(f"{protocol}: no predictions for config {args.config}; skipped")
            continue
        if protocol == "transfer":
            reference = references["test-a"].assign(split="test-a")
        else:
            reference = pd.concat(references[r["split"]].assign(split=r["split"]) for r in records)
        frames[protocol] = (
            student_frame(records).merge(reference, on=["split", "qid", "doc_id"]).dropna(subset=[teacher])
        )
        record_sets[protocol] = records
    for protocol, frame in frames.items():
        teacher, teacher_score = TEACHERS[protocol]
        records = record_sets[protocol]
        folder = "trec-dl-2023-test-a" if protocol == "transfer" else scale.SCALE
        splits = sorted(frame["split"].unique())
        # disagreement-prone routing learns from disagreements seen elsewhere: the held-out years' students
        # vs GPT-4o (the other years, in leave-one-year-out; all three for test-a)
        has_probabilities = not frame[["p0", "p1", "p2", "p3"]].isna().any().any()
        models = (
            fit_models(frames["loyo"], "teacher_gpt4o", splits, protocol == "loyo", has_probabilities)
            if "loyo" in frames and frames["loyo"]["split"].nunique() > 1
            else None
        )
        usd_per_pair = teacher_usd_per_pair(args.shared, folder, frame[["qid", "doc_id"]])
        table = cascade_table(
            frame,
            teacher,
            teacher_score,
            scale.labeler_metrics,
            usd_per_pair,
            args.seeds,
            random_share=args.random_share,
            hourly_rate_usd=hourly,
            models=models,
        )
        chosen = choose_variant(table)
        names = ", ".join(r["split"] for r in records)
        title = (
            f"{protocol}{' (SYNTHETIC student)' if args.synthetic else ''}: {len(frame)} pairs ({names}), "
            f"teacher {teacher}, GPT-4o ~{1000 * usd_per_pair:.2f} USD per 1k teacher pairs"
        )
        columns = [
            "policy",
            "share",
            "teacher_pairs",
            "random_slice",
            "kappa",
            "kappa_std",
            "qw_kappa",
            "pairwise",
            "ndcg@10",
            "kappa_vs_teacher",
            "agree_rest",
            "usd",
            "usd_per_1k",
        ]
        notes = [
            f"chosen uncertainty variant (by agreement with the teacher on the pairs left to the student, "
            f"no NIST): {chosen}",
            *targets(table, chosen),
        ]
        sections.append(
            f"### {title}\n\n{table[columns].to_markdown(index=False, floatfmt='.3f')}\n\n"
            + "\n".join(f"- {n}" for n in notes)
        )
        curves.append((protocol, table))
    text = "\n\n".join(sections)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    from relabel.evaluation.plots import cascade_curve_plot

    for protocol, table in curves:
        png = args.png if protocol == "transfer" else args.png.with_name(f"{args.png.stem}_{protocol}.png")
        png.write_bytes(cascade_curve_plot(table, title=f"Cost dial ({protocol}): cascade vs NIST by teacher share"))
        print(f"plot: {png}")


if __name__ == "__main__":
    main()
