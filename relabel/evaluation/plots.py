"""PNG plots of the agreement report (matplotlib, Agg canvas, no display needed): confusion matrices, grade
distributions and per-query kappa."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from relabel.evaluation.report import AgreementReport

GRADE_COLORS = ["#d7dde4", "#9ecae1", "#4292c6", "#08519c"]
DPI = 90
METRIC_NAMES = {"cohen_kappa": "Cohen's kappa", "quadratic_kappa": "quadratic-weighted kappa"}


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes (rendered by the Agg canvas)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _short(text: str, width: int = 34) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def confusion_plot(confusion: dict[tuple[str, str], list[list[int]]], columns: int = 4) -> bytes:
    """Small multiples: one row-normalized confusion matrix per (labeler, reference), counts in the cells."""
    items = list(confusion.items()) or [(("no labeler", "human"), [[0] * 4 for _ in range(4)])]
    columns = min(columns, len(items))
    rows = math.ceil(len(items) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axis, ((labeler_id, reference), matrix) in zip(axes, items, strict=False):
        counts = np.asarray(matrix, dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(4):
            for j in range(4):
                color = "white" if shares[i, j] > 0.6 else "black"
                axis.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8, color=color)
        axis.set_xticks(range(4))
        axis.set_yticks(range(4))
        axis.set_xlabel("labeler grade", fontsize=8)
        axis.set_ylabel("human grade" if reference == "human" else "reference grade", fontsize=8)
        axis.set_title(f"{_short(labeler_id)}\nvs {_short(reference)}", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in axes[len(items) :]:
        axis.set_visible(False)
    return _png(figure)


def distribution_plot(distributions: pd.DataFrame) -> bytes:
    """Stacked horizontal bars: the share of each grade given by the humans and by each labeler."""
    frame = distributions if len(distributions) else pd.DataFrame([{"labeler_id": "none", "n": 0}])
    labels = [_short(str(x), 40) for x in frame["labeler_id"]]
    figure = Figure(figsize=(8, 1.2 + 0.32 * len(frame)), layout="constrained")
    axis = figure.subplots()
    left = np.zeros(len(frame))
    positions = np.arange(len(frame))[::-1]
    for grade, color in enumerate(GRADE_COLORS):
        column = f"share_{grade}"
        shares = frame[column].fillna(0).to_numpy(dtype=float) if column in frame else np.zeros(len(frame))
        axis.barh(positions, shares, left=left, color=color, label=f"grade {grade}", height=0.8)
        left += shares
    axis.set_yticks(positions, labels, fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.6, len(frame) - 0.4)
    axis.set_xlabel("share of judged pairs")
    axis.set_title("Grade distributions", fontsize=10)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def per_query_kappa_plot(per_query: pd.DataFrame, metric: str = "cohen_kappa") -> bytes:
    """Heatmap of per-query Cohen's kappa: rows are (labeler vs reference), columns queries (only the rows
    against the humans when there are any)."""
    if len(per_query) and (per_query["reference"] == "human").any():
        per_query = per_query[per_query["reference"] == "human"]
    if per_query.empty:
        pivot = pd.DataFrame([[np.nan]], index=["none"], columns=["-"])
    else:
        keyed = per_query.assign(row=per_query["labeler_id"].astype(str) + " vs " + per_query["reference"].astype(str))
        pivot = keyed.pivot_table(index="row", columns="qid", values=metric, aggfunc="first", dropna=False)
    values = pivot.to_numpy(dtype=float)
    height = 1.6 + 0.3 * len(pivot)
    width = min(max(6.0, 2.5 + 0.45 * pivot.shape[1]), 30.0)
    figure = Figure(figsize=(width, height), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=-0.2, vmax=1, aspect="auto")
    axis.set_yticks(range(len(pivot)), [_short(str(x), 48) for x in pivot.index], fontsize=7)
    axis.set_xticks(range(pivot.shape[1]), [str(x) for x in pivot.columns], fontsize=7, rotation=90)
    if values.size <= 400:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not np.isnan(values[i, j]):
                    axis.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
    axis.set_xlabel("query")
    axis.set_title(f"Per-query {METRIC_NAMES.get(metric, metric)} (grey: undefined)", fontsize=10)
    axis.set_facecolor("#cccccc")
    figure.colorbar(image, ax=axis, shrink=0.8)
    return _png(figure)


def report_plots(report: AgreementReport) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by name."""
    return {
        "confusion_matrices": confusion_plot(report.confusion),
        "grade_distributions": distribution_plot(report.distributions),
        "per_query_kappa": per_query_kappa_plot(report.per_query),
        **(
            {"cascade_curve": cascade_curve_plot(report.cascade, title="Cost dial: cascade vs human judgments")}
            if len(report.cascade)
            else {}
        ),
    }


def cascade_curve_plot(
    curve: pd.DataFrame,
    metrics: tuple[str, ...] = ("kappa", "qw_kappa", "pairwise"),
    title: str = "Cost dial: student everywhere, teacher where routed",
) -> bytes:
    """One panel per metric against the teacher share (%): a line per routing policy (``policy``, ``share``,
    metric columns; an optional ``<metric>_std`` column is drawn as a band), the teacher-only level dashed."""
    names = {
        "kappa": "Cohen's kappa",
        "qw_kappa": "quadratic kappa",
        "pairwise": "pairwise accuracy",
        "ndcg@10": "nDCG@10",
    }
    figure = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for axis, metric in zip(axes, metrics, strict=True):
        for policy, part in curve.groupby("policy", sort=False):
            part = part.sort_values("share")
            x = 100 * part["share"].to_numpy(dtype=float)
            y = part[metric].to_numpy(dtype=float)
            axis.plot(x, y, marker="o", markersize=3, label=str(policy))
            if f"{metric}_std" in part:
                spread = part[f"{metric}_std"].fillna(0).to_numpy(dtype=float)
                axis.fill_between(x, y - spread, y + spread, alpha=0.2)
        full = curve[curve["share"] >= 1.0]
        if len(full):
            axis.axhline(float(full[metric].iloc[0]), color="grey", linestyle="--", linewidth=1, label="teacher only")
        axis.set_xlabel("teacher share (%)")
        axis.set_title(names.get(metric, metric), fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _png(figure)
