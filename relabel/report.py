"""The agreement report: every labeler against the human judgments, and the student against the teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from relabel.metrics import agreement, ranking_agreement

METRIC_COLUMNS = [
    "n_pairs",
    "cohen_kappa",
    "quadratic_kappa",
    "binary_kappa",
    "exact_accuracy",
    "krippendorff_alpha",
    "ndcg@10",
    "pairwise_accuracy",
]


def compare(reference: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """Metrics of ``labels`` (qid, doc_id, grade, expected_grade) against ``reference`` (qid, doc_id, grade)
    on the pairs both have; the labeler's expected grade is its ranking score."""
    merged = reference.merge(labels, on=["qid", "doc_id"], suffixes=("_ref", "_lab"))
    scores = merged["expected_grade"].fillna(merged["grade_lab"]).astype(float)
    result = agreement(merged["grade_ref"].astype(int), merged["grade_lab"].astype(int))
    ranking = ranking_agreement(
        pd.DataFrame({"qid": merged["qid"], "human": merged["grade_ref"].astype(int), "score": scores})
    )
    return {**result, **ranking}


def agreement_table(human: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (labeler, reference). ``labels`` holds every labeler's rows with columns pair_source,
    qid, doc_id, labeler_id, role ('teacher' or 'student'), status, grade, expected_grade, latency_s."""
    ok = labels[labels["status"] == "ok"]
    rows = []
    for (role, labeler_id), group in ok.groupby(["role", "labeler_id"], sort=True):
        bench = group[group["pair_source"] == "benchmark"]
        all_rows = labels[labels["labeler_id"] == labeler_id]
        latency = all_rows["latency_s"].dropna()
        speed = {
            "labels_per_s": float(len(latency) / latency.sum()) if latency.sum() > 0 else float("nan"),
            "failed_or_unparsed": int((all_rows["status"] != "ok").sum()),
        }
        rows.append({"labeler_id": labeler_id, "role": role, "reference": "human", **compare(human, bench), **speed})
    teachers = ok[ok["role"] == "teacher"]
    for labeler_id, group in ok[ok["role"] == "student"].groupby("labeler_id"):
        for teacher_id, teacher in teachers.groupby("labeler_id"):
            rows.append(
                {
                    "labeler_id": labeler_id,
                    "role": "student",
                    "reference": teacher_id,
                    **compare(teacher[["qid", "doc_id", "grade"]], group),
                }
            )
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, title: str = "Agreement report") -> str:
    """The table as Markdown, three decimals."""
    shown = table.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3f}")
    if "n_pairs" in table:
        shown["n_pairs"] = table["n_pairs"].astype(int)
    return f"# {title}\n\n" + shown.to_markdown(index=False) + "\n"


def write_report(table: pd.DataFrame, directory: Path, notes: str = "") -> dict[str, Path]:
    """Markdown and JSON copies of the report under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    md_path, json_path = directory / "agreement_report.md", directory / "agreement_report.json"
    md_path.write_text(to_markdown(table) + ("\n" + notes if notes else ""))
    records = table.replace({np.nan: None}).to_dict("records")
    json_path.write_text(json.dumps(records, indent=2, default=str))
    return {"markdown": md_path, "json": json_path}
