"""The agreement report: every labeler (teachers, the student, imported label files) against the human
judgments, the student against the teacher, with query-bootstrap 95% intervals, confusion matrices, grade
distributions, a per-query table, second-implementation cross-checks, cost and speed, and (where retrieval
runs exist) Kendall's tau between system orderings. Rendered as Markdown, HTML (plots embedded) and JSON.
The Dagster asset and ``relabel agree`` both build it with :func:`build_report`."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relabel.evaluation.metrics import (
    DEFAULT_RESAMPLES,
    GRADE_LABELS,
    METRICS,
    agreement,
    grade_confusion,
    ndcg_cross_check,
    per_query_table,
    query_bootstrap,
    ranking_from_queries,
    system_ranking_tau,
)

METRIC_COLUMNS = ["n_pairs", *METRICS]
METRIC_TITLES = {
    "cohen_kappa": "kappa",
    "quadratic_kappa": "QWK",
    "binary_kappa": "binary kappa",
    "exact_accuracy": "accuracy",
    "krippendorff_alpha": "alpha (ordinal)",
    "ndcg@10": "nDCG@10",
    "pairwise_accuracy": "pairwise acc.",
}
REPORT_NAME = "agreement_report"
CASCADE_TEXT = (
    "The student labels every judged pair; the teacher's grade replaces it on a share of them, routed by the "
    "student's uncertainty (a random slice of the teacher's pairs stays random) or at random (mean over seeds). "
    "Agreement with the human judgments by teacher share; random_slice is how many teacher pairs were random."
)


@dataclass
class AgreementReport:
    """Everything the report shows; ``table`` is the one-row-per-(labeler, reference) table."""

    table: pd.DataFrame
    confusion: dict[tuple[str, str], list[list[int]]] = field(default_factory=dict)
    distributions: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_query: pd.DataFrame = field(default_factory=pd.DataFrame)
    cross_check: pd.DataFrame = field(default_factory=pd.DataFrame)
    systems: pd.DataFrame = field(default_factory=pd.DataFrame)
    cost: pd.DataFrame | None = None
    # the cost dial: the cascade's agreement with the humans by teacher share (relabel.teacher.routing.cascade_curve)
    cascade: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def align(reference: pd.DataFrame, labels: pd.DataFrame, keys: tuple[str, ...] = ("qid", "doc_id")) -> pd.DataFrame:
    """The pairs both judged: qid, doc_id, human (reference grade), grade (labeler grade) and score (the
    labeler's expected grade, else its grade), used as its ranking score."""
    lab = labels[[*keys, "grade"]].reset_index(drop=True)
    grade = pd.to_numeric(lab["grade"]).astype(float)
    if "expected_grade" in labels:
        expected = pd.to_numeric(labels["expected_grade"].reset_index(drop=True), errors="coerce")
        lab["score"] = expected.fillna(grade).astype(float)
    else:
        lab["score"] = grade
    merged = reference[[*keys, "grade"]].merge(lab, on=list(keys), suffixes=("_ref", "_lab"))
    return pd.DataFrame(
        {
            "qid": merged["qid"].astype(str),
            "doc_id": merged["doc_id"].astype(str),
            "human": merged["grade_ref"].astype(int),
            "grade": merged["grade_lab"].astype(int),
            "score": merged["score"],
        }
    )


def compare(
    reference: pd.DataFrame,
    labels: pd.DataFrame,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    k: int = 10,
    keys: tuple[str, ...] = ("qid", "doc_id"),
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Metrics of ``labels`` (qid, doc_id, grade, expected_grade) against ``reference`` (qid, doc_id, grade)
    on the pairs both have, with coverage and query-bootstrap intervals; also the aligned pairs and the
    per-query table."""
    frame = align(reference, labels, keys)
    per_query = per_query_table(frame, k)
    row: dict[str, float] = {
        "n_pairs": float(len(frame)),
        "n_queries": float(len(per_query)),
        "n_reference": float(len(reference)),
        "n_labeled": float(len(labels)),
        "coverage": len(frame) / len(reference) if len(reference) else float("nan"),
    }
    row.update({k_: v for k_, v in agreement(frame["human"], frame["grade"]).items() if k_ != "n_pairs"})
    row.update(ranking_from_queries(per_query, k))
    for name, (low, high) in query_bootstrap(frame, per_query, n_resamples, seed, k).items():
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    return row, frame, per_query


def _distribution(labeler_id: str, grades: pd.Series) -> dict[str, Any]:
    counts = grades.astype(int).value_counts()
    total = int(counts.sum())
    row: dict[str, Any] = {"labeler_id": labeler_id, "n": total}
    for grade in GRADE_LABELS:
        row[f"grade_{grade}"] = int(counts.get(grade, 0))
    for grade in GRADE_LABELS:
        row[f"share_{grade}"] = counts.get(grade, 0) / total if total else float("nan")
    return row


def build_report(
    human: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    k: int = 10,
    runs: Mapping[str, pd.DataFrame] | None = None,
    cost: pd.DataFrame | None = None,
    cross_check: bool = True,
) -> AgreementReport:
    """The full report. ``human``: qid, doc_id, grade. ``labels``: every labeler's rows with columns
    labeler_id, role ('teacher', 'student', 'imported', ...), qid, doc_id, grade, and optionally pair_source
    (only 'benchmark' rows are compared with the humans), status (only 'ok' rows count), expected_grade
    (ranking score) and latency_s. ``runs``: retrieval runs (system -> qid, doc_id, score) for system tau."""
    labels = labels.copy()
    for column, default in (("status", "ok"), ("pair_source", "benchmark"), ("expected_grade", np.nan)):
        if column not in labels:
            labels[column] = default
    if "latency_s" not in labels:
        labels["latency_s"] = np.nan
    reference = human[["qid", "doc_id", "grade"]].astype({"qid": str, "doc_id": str, "grade": int})
    ok = labels[labels["status"] == "ok"].astype({"qid": str, "doc_id": str})
    report = AgreementReport(table=pd.DataFrame(), cost=cost)
    report.settings = {"n_resamples": n_resamples, "seed": seed, "k": k, "confidence": 0.95, "resampled": "queries"}
    rows: list[dict[str, Any]] = []
    per_query: list[pd.DataFrame] = []
    distributions = [_distribution("human", reference["grade"])]
    checks: list[dict[str, Any]] = []
    systems: list[pd.DataFrame] = []

    def record(labeler_id: str, role: str, ref_id: str, row: dict, frame: pd.DataFrame, pq: pd.DataFrame) -> None:
        rows.append({"labeler_id": labeler_id, "role": role, "reference": ref_id, **row})
        report.confusion[(labeler_id, ref_id)] = grade_confusion(frame["human"], frame["grade"])
        per_query.append(pq.assign(labeler_id=labeler_id, reference=ref_id))

    for (role, labeler_id), group in ok.groupby(["role", "labeler_id"], sort=True):
        bench = group[group["pair_source"] == "benchmark"]
        all_rows = labels[labels["labeler_id"] == labeler_id]
        latency = all_rows["latency_s"].dropna()
        row, frame, pq = compare(reference, bench, n_resamples, seed, k)
        row["labels_per_s"] = float(len(latency) / latency.sum()) if latency.sum() > 0 else float("nan")
        row["failed_or_unparsed"] = int((all_rows["status"] != "ok").sum())
        if runs:
            summary, system_table = system_ranking_tau(reference, bench, runs, k)
            row["system_kendall_tau"] = summary["kendall_tau"]
            row["system_kendall_p"] = summary["kendall_p_value"]
            systems.append(system_table.assign(labeler_id=labeler_id))
        record(str(labeler_id), str(role), "human", row, frame, pq)
        distributions.append(_distribution(str(labeler_id), frame["grade"]))
        if cross_check and len(frame):
            checks.append(
                {
                    "labeler_id": labeler_id,
                    f"ndcg@{k}": row[f"ndcg@{k}"],
                    **ndcg_cross_check(frame, k, seed),
                    "pairwise_accuracy": row["pairwise_accuracy"],
                }
            )
    teachers = ok[ok["role"] == "teacher"]
    for labeler_id, group in ok[ok["role"] == "student"].groupby("labeler_id", sort=True):
        for teacher_id, teacher in teachers.groupby("labeler_id", sort=True):
            keys = ("pair_source", "qid", "doc_id")
            row, frame, pq = compare(teacher[[*keys, "grade"]], group, n_resamples, seed, k, keys)
            record(str(labeler_id), "student", str(teacher_id), row, frame, pq)
    report.table = pd.DataFrame(rows)
    report.per_query = pd.concat(per_query, ignore_index=True) if per_query else pd.DataFrame()
    if len(report.per_query):
        front = ["labeler_id", "reference"]
        report.per_query = report.per_query[front + [c for c in report.per_query.columns if c not in front]]
    report.distributions = pd.DataFrame(distributions)
    report.cross_check = pd.DataFrame(checks)
    report.systems = pd.concat(systems, ignore_index=True) if systems else pd.DataFrame()
    report.notes = _notes(report)
    return report


def agreement_table(
    human: pd.DataFrame, labels: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """One row per (labeler, reference). ``labels`` holds every labeler's rows with columns pair_source,
    qid, doc_id, labeler_id, role ('teacher' or 'student'), status, grade, expected_grade, latency_s."""
    return build_report(human, labels, n_resamples=n_resamples, seed=seed, cross_check=False).table


def headline_kappas(table: pd.DataFrame) -> dict[str, float]:
    """Cohen's kappa of each role's labeler against the human judgments (``teacher_kappa``, ``student_kappa``,
    ``cascade_kappa``, ...) and of the student against the teacher (``student_teacher_kappa``); where a role has
    several labelers, the first by id. The figures the UI plots over materializations."""
    if table.empty:
        return {}
    figures: dict[str, float] = {}
    for row in table.sort_values(["labeler_id", "reference"]).to_dict("records"):
        if row["reference"] == "human":
            name = f"{row['role']}_kappa"
        elif row["role"] == "student":
            name = "student_teacher_kappa"
        else:
            continue
        figures.setdefault(name, float(row["cohen_kappa"]))
    return figures


def _notes(report: AgreementReport) -> list[str]:
    settings = report.settings
    notes = [
        f"Brackets: {settings['confidence']:.0%} percentile bootstrap intervals, {settings['n_resamples']} "
        f"resamples of whole queries (seed {settings['seed']}); pairs of one query are not independent.",
        "nDCG@10: each query's judged documents ranked by the labeler's expected grade (its grade when it "
        "has no probabilities; tied documents share their gains), human grades as gains, mean over queries "
        "with a relevant document. Pairwise accuracy: share of document pairs with different human grades "
        "that the labeler orders the same way (ties count one half), over all pairs of all queries.",
    ]
    for row in report.table.to_dict("records"):
        if row["reference"] != "human":
            continue
        extra = int(row["n_labeled"] - row["n_pairs"])
        if row["coverage"] < 1 or extra:
            notes.append(
                f"{row['labeler_id']} labels {int(row['n_pairs'])} of the {int(row['n_reference'])} judged pairs "
                f"(coverage {row['coverage']:.1%}); {extra} of its labels have no human judgment. Metrics use the "
                "pairs both judged."
            )
    if report.cost is not None and len(report.cost) and report.cost["price_basis"].str.startswith("local").any():
        notes.append(
            "Cost of local models (relabel-local/... and the student) is an assumption: machine-seconds x the "
            "hourly rate shown (setting hourly_rate_usd, RELABEL_HOURLY_RATE_USD); API models use litellm's price "
            "table and the token counts recorded in llm_cache."
        )
    return notes


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(row: Mapping[str, Any], metric: str) -> str:
    value = row.get(metric)
    if _is_missing(value):
        return "n/a"
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    text = f"{value:.3f}"
    if not _is_missing(low) and not _is_missing(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def summary_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: one row per (labeler, reference), metrics with their intervals."""
    rows = []
    for row in table.to_dict("records"):
        shown: dict[str, Any] = {"labeler": row.get("labeler_id"), "reference": row.get("reference")}
        shown["pairs"] = "n/a" if _is_missing(row.get("n_pairs")) else int(row["n_pairs"])
        if "coverage" in row:
            shown["coverage"] = "n/a" if _is_missing(row["coverage"]) else f"{row['coverage']:.1%}"
        for metric in METRICS:
            if metric in row:
                shown[METRIC_TITLES[metric]] = _cell(row, metric)
        if "system_kendall_tau" in row:
            shown["system tau"] = (
                "n/a" if _is_missing(row["system_kendall_tau"]) else f"{row['system_kendall_tau']:.3f}"
            )
        if "labels_per_s" in row:
            shown["labels/s"] = "" if _is_missing(row["labels_per_s"]) else f"{row['labels_per_s']:.1f}"
        rows.append(shown)
    frame = pd.DataFrame(rows)
    if "labels/s" in frame and (frame["labels/s"] == "").all():
        frame = frame.drop(columns="labels/s")
    return frame


def _format_frame(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.{digits}f}")
    return shown


def to_markdown(table: pd.DataFrame, title: str = "Agreement report") -> str:
    """The summary table as Markdown, three decimals, intervals in brackets."""
    return f"# {title}\n\n" + summary_frame(table).to_markdown(index=False) + "\n"


def cost_markdown(cost: pd.DataFrame) -> str:
    """The cost and speed table as Markdown."""
    shown = cost.rename(
        columns={
            "labels_per_s": "labels/s",
            "tokens_in_per_label": "tokens in/label",
            "tokens_out_per_label": "tokens out/label",
            "usd_per_1k_labels": "USD/1k labels",
            "throughput_vs_teacher": "x teacher throughput",
            "teacher_cost_over_student": "teacher cost / student cost",
        }
    )
    shown = _format_frame(shown)
    if "USD/1k labels" in shown:
        shown["USD/1k labels"] = [
            "n/a" if pd.isna(v) else f"{v:.6f}" if v < 0.01 else f"{v:.4f}" for v in cost["usd_per_1k_labels"]
        ]
    return shown.to_markdown(index=False)


def confusion_markdown(confusion: Mapping[tuple[str, str], list[list[int]]]) -> str:
    """Each confusion matrix as a small Markdown table (rows: reference grade, columns: labeler grade)."""
    parts = []
    for (labeler_id, reference), matrix in confusion.items():
        frame = pd.DataFrame(
            matrix, index=[f"{reference} {g}" for g in GRADE_LABELS], columns=[f"labeler {g}" for g in GRADE_LABELS]
        )
        parts.append(f"**{labeler_id}** vs **{reference}**\n\n" + frame.to_markdown())
    return "\n\n".join(parts)


def report_markdown(report: AgreementReport, images: Mapping[str, str] | None = None, title: str = "") -> str:
    """The whole report as Markdown; ``images`` maps a plot name to its link (a file path or a data URI)."""
    images = images or {}
    generated = report.settings.get("generated_at", "")
    parts = [f"# {title or 'Agreement report'}", f"_generated {generated}_" if generated else ""]
    parts += ["## Summary", summary_frame(report.table).to_markdown(index=False)]
    parts += ["\n".join(f"- {note}" for note in report.notes)]
    if len(report.cross_check):
        parts += [
            "## Cross-check with second implementations",
            "nDCG@10 by scikit-learn and by ir-measures (trec_eval) on the same scores with ties broken in one "
            "fixed random order (the reported nDCG@10 shares tied gains instead); pairwise accuracy by sorted "
            "counts and by the Mann-Whitney U of scipy's mid-ranks per grade pair.",
            _format_frame(report.cross_check, 4).to_markdown(index=False),
        ]
    if report.cost is not None and len(report.cost):
        parts += ["## Cost and speed", cost_markdown(report.cost)]
    if len(report.systems):
        parts += [
            "## System rankings",
            "Kendall's tau between retrieval systems ordered by nDCG@10 under human and under labeler judgments.",
            _format_frame(report.systems).to_markdown(index=False),
        ]
    if len(report.cascade):
        parts += ["## Cost dial", CASCADE_TEXT]
        if "cascade_curve" in images:
            parts += [f"![cost dial]({images['cascade_curve']})"]
        parts += [_format_frame(report.cascade).to_markdown(index=False)]
    parts += ["## Confusion matrices"]
    if "confusion_matrices" in images:
        parts += [f"![confusion matrices]({images['confusion_matrices']})"]
    parts += [confusion_markdown(report.confusion)]
    parts += ["## Grade distributions"]
    if "grade_distributions" in images:
        parts += [f"![grade distributions]({images['grade_distributions']})"]
    parts += [_format_frame(report.distributions).to_markdown(index=False)]
    parts += ["## Per-query agreement"]
    if "per_query_kappa" in images:
        parts += [f"![per-query kappa]({images['per_query_kappa']})"]
    if len(report.per_query):
        parts += [_format_frame(report.per_query).to_markdown(index=False)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="n/a", border=0, classes="t", escape=True)


def report_html(report: AgreementReport, images: Mapping[str, bytes] | None = None, title: str = "") -> str:
    """The whole report as one self-contained HTML page (plots embedded as PNG data URIs)."""
    images = images or {}
    title = title or "Agreement report"

    def image(name: str) -> str:
        if name not in images:
            return ""
        data = base64.b64encode(images[name]).decode()
        return f'<p><img alt="{name}" src="data:image/png;base64,{data}"></p>'

    body = [f"<h1>{html.escape(title)}</h1>"]
    if report.settings.get("generated_at"):
        body.append(f"<p><em>generated {html.escape(str(report.settings['generated_at']))}</em></p>")
    body += ["<h2>Summary</h2>", _html_table(summary_frame(report.table))]
    body.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in report.notes) + "</ul>")
    if len(report.cross_check):
        body += ["<h2>Cross-check with second implementations</h2>", _html_table(_format_frame(report.cross_check, 4))]
    if report.cost is not None and len(report.cost):
        body += ["<h2>Cost and speed</h2>", _html_table(_format_frame(report.cost, 6))]
    if len(report.systems):
        body += ["<h2>System rankings</h2>", _html_table(_format_frame(report.systems))]
    if len(report.cascade):
        body += [
            "<h2>Cost dial</h2>",
            f"<p>{html.escape(CASCADE_TEXT)}</p>",
            image("cascade_curve"),
            _html_table(_format_frame(report.cascade)),
        ]
    body += ["<h2>Confusion matrices</h2>", image("confusion_matrices")]
    body += [
        "<h2>Grade distributions</h2>",
        image("grade_distributions"),
        _html_table(_format_frame(report.distributions)),
    ]
    body += ["<h2>Per-query agreement</h2>", image("per_query_kappa")]
    if len(report.per_query):
        body.append(_html_table(_format_frame(report.per_query)))
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table.t{border-collapse:collapse;"
        "font-size:13px}table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return json.loads(frame.to_json(orient="records"))


def report_json(report: AgreementReport) -> dict[str, Any]:
    """The report as plain data for machines (NaN becomes null)."""
    return {
        "settings": report.settings,
        "table": _records(report.table),
        "confusion": [
            {"labeler_id": labeler_id, "reference": reference, "rows": "reference grade", "matrix": matrix}
            for (labeler_id, reference), matrix in report.confusion.items()
        ],
        "grade_distributions": _records(report.distributions),
        "per_query": _records(report.per_query),
        "cross_check": _records(report.cross_check),
        "cost": _records(report.cost),
        "systems": _records(report.systems),
        "cascade": _records(report.cascade),
        "notes": report.notes,
    }


def write_report(
    report: AgreementReport, directory: Path, images: Mapping[str, bytes] | None = None, title: str = ""
) -> dict[str, Path]:
    """``agreement_report.md``, ``.html`` and ``.json`` plus ``plots/<name>.png`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    report.settings.setdefault("generated_at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    paths: dict[str, Path] = {}
    links: dict[str, str] = {}
    for name, png in (images or {}).items():
        path = directory / "plots" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(png)
        paths[name] = path
        links[name] = f"plots/{name}.png"
    paths["markdown"] = directory / f"{REPORT_NAME}.md"
    paths["markdown"].write_text(report_markdown(report, links, title), encoding="utf-8")
    paths["html"] = directory / f"{REPORT_NAME}.html"
    paths["html"].write_text(report_html(report, images, title), encoding="utf-8")
    paths["json"] = directory / f"{REPORT_NAME}.json"
    paths["json"].write_text(json.dumps(report_json(report), indent=2, default=str), encoding="utf-8")
    return paths
