"""Agreement between a labeler and human judges (names as in DESIGN.md section 6).

Grade agreement comes from scikit-learn (Cohen's kappa, accuracy, confusion matrix) and krippendorff
(ordinal alpha); ranking agreement from scikit-learn's ``ndcg_score``; system rankings from ir-measures
(trec_eval's nDCG@10 of run files) and ``scipy.stats.kendalltau``. Pairwise accuracy has no library
implementation and is the one small function kept here. Confidence intervals resample queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import kendalltau, rankdata
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, ndcg_score

GRADE_LABELS = [0, 1, 2, 3]
GRADE_METRICS = ["cohen_kappa", "quadratic_kappa", "binary_kappa", "exact_accuracy", "krippendorff_alpha"]
RANKING_METRICS = ["ndcg@10", "pairwise_accuracy"]
METRICS = [*GRADE_METRICS, *RANKING_METRICS]
DEFAULT_RESAMPLES = 1000


def _kappa(a: np.ndarray, b: np.ndarray, weights: str | None = None, sample_weight: np.ndarray | None = None) -> float:
    """sklearn's Cohen's kappa; 1.0 when both raters give the same single grade everywhere (0/0 otherwise)."""
    present = np.ones(len(a), dtype=bool) if sample_weight is None else sample_weight > 0
    if not present.any():
        return float("nan")
    if len(set(a[present]) | set(b[present])) == 1:
        return 1.0
    return float(cohen_kappa_score(a, b, labels=GRADE_LABELS, weights=weights, sample_weight=sample_weight))


def _alpha(h: np.ndarray, lab: np.ndarray, sample_weight: np.ndarray | None) -> float:
    """Krippendorff's ordinal alpha of two coders (grades 0-3); integer ``sample_weight`` repeats units."""
    units = np.arange(len(h))
    values = np.zeros((len(h), len(GRADE_LABELS)))
    np.add.at(values, (units, h), 1)
    np.add.at(values, (units, lab), 1)
    if sample_weight is not None:
        values = np.repeat(values, np.rint(sample_weight).astype(int), axis=0)
    if len(values) == 0 or (values.sum(axis=0) > 0).sum() <= 1:
        return float("nan")
    return float(krippendorff.alpha(value_counts=values, value_domain=GRADE_LABELS, level_of_measurement="ordinal"))


def agreement(
    human: Sequence[int], labeler: Sequence[int], sample_weight: Sequence[float] | None = None
) -> dict[str, float]:
    """Grade agreement: Cohen's kappa, quadratic-weighted kappa, binary kappa (grade >= 2), exact accuracy
    and Krippendorff's ordinal alpha. ``sample_weight`` (integer repeat counts) weights the pairs."""
    h = np.asarray(human, dtype=int)
    lab = np.asarray(labeler, dtype=int)
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    total = float(len(h)) if weight is None else float(weight.sum())
    return {
        "n_pairs": total,
        "cohen_kappa": _kappa(h, lab, sample_weight=weight),
        "quadratic_kappa": _kappa(h, lab, "quadratic", sample_weight=weight),
        "binary_kappa": _kappa((h >= 2).astype(int), (lab >= 2).astype(int), sample_weight=weight),
        "exact_accuracy": float(accuracy_score(h, lab, sample_weight=weight)) if total else float("nan"),
        "krippendorff_alpha": _alpha(h, lab, weight),
    }


def grade_confusion(human: Sequence[int], labeler: Sequence[int]) -> list[list[int]]:
    """4x4 confusion matrix, rows = human grade, columns = labeler grade."""
    if len(human) == 0:
        return [[0] * len(GRADE_LABELS) for _ in GRADE_LABELS]
    return confusion_matrix(human, labeler, labels=GRADE_LABELS).tolist()


def _stacked_kappa(confusion: np.ndarray, weights: str | None = None) -> np.ndarray:
    """scikit-learn's ``cohen_kappa_score`` formula on a stack of confusion matrices (B x G x G) at once."""
    size = confusion.shape[-1]
    sum0, sum1 = confusion.sum(axis=-2), confusion.sum(axis=-1)
    total = sum0.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = sum0[:, :, None] * sum1[:, None, :] / total[:, None, None]
        grid = np.subtract.outer(np.arange(size), np.arange(size))
        if weights is None:
            weight = (grid != 0).astype(float)
        else:
            weight = np.abs(grid) if weights == "linear" else grid.astype(float) ** 2
        observed_cost = (weight * confusion).sum(axis=(-2, -1))
        expected_cost = (weight * expected).sum(axis=(-2, -1))
        kappa = 1 - observed_cost / expected_cost
    # one grade everywhere from both raters: perfect agreement (as :func:`_kappa`); no pairs: undefined
    kappa = np.where((expected_cost == 0) & (total > 0), 1.0, kappa)
    return np.where(total > 0, kappa, np.nan)


def _stacked_alpha(confusion: np.ndarray) -> np.ndarray:
    """krippendorff's ordinal alpha for two coders on a stack of confusion matrices: the coincidence matrix
    of two coders without missing values is C + C^T; expected coincidences and ordinal distances as in
    ``krippendorff.alpha``."""
    observed = confusion + np.swapaxes(confusion, -2, -1)
    n_v = observed.sum(axis=-1)
    total = n_v.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (n_v[:, :, None] * n_v[:, None, :] - n_v[:, :, None] * np.eye(n_v.shape[-1])) / (
            total[:, None, None] - 1
        )
        cumulative = np.concatenate([np.zeros((len(n_v), 1)), np.cumsum(n_v, axis=-1)], axis=-1)
        grades = np.arange(n_v.shape[-1])
        low, high = np.minimum.outer(grades, grades), np.maximum.outer(grades, grades)
        between = cumulative[:, high + 1] - cumulative[:, low]
        distance = (between - (n_v[:, low] + n_v[:, high]) / 2) ** 2
        alpha = 1 - (observed * distance).sum(axis=(-2, -1)) / (expected * distance).sum(axis=(-2, -1))
    single_value = (n_v > 0).sum(axis=-1) <= 1
    return np.where(single_value, np.nan, alpha)


def confusion_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Cohen's, quadratic and binary kappa, exact accuracy and ordinal alpha of each 4x4 confusion matrix in a
    stack (rows = human grade): the bootstrap's fast path (1000 resamples in milliseconds), the same formulas
    as scikit-learn and krippendorff, which the tests check it against; reported estimates come from them."""
    confusion = np.asarray(confusion, dtype=float)
    high = np.array(GRADE_LABELS) >= 2
    binary = np.stack(
        [
            np.stack([confusion[:, ~high][:, :, ~high].sum((1, 2)), confusion[:, ~high][:, :, high].sum((1, 2))], -1),
            np.stack([confusion[:, high][:, :, ~high].sum((1, 2)), confusion[:, high][:, :, high].sum((1, 2))], -1),
        ],
        axis=-2,
    )
    total = confusion.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.trace(confusion, axis1=1, axis2=2) / total
    return {
        "cohen_kappa": _stacked_kappa(confusion),
        "quadratic_kappa": _stacked_kappa(confusion, "quadratic"),
        "binary_kappa": _stacked_kappa(binary),
        "exact_accuracy": accuracy,
        "krippendorff_alpha": _stacked_alpha(confusion),
    }


def pairwise_accuracy(human: Sequence[int], score: Sequence[float]) -> tuple[float, int]:
    """Share of document pairs with different human grades that ``score`` orders the same way
    (a tie in ``score`` counts one half); returns (accuracy, number of pairs). O(n log n) per grade pair."""
    h = np.asarray(human)
    s = np.asarray(score, dtype=float)
    agree, pairs = 0.0, 0
    levels = np.unique(h)
    for i, low in enumerate(levels):
        below_scores = np.sort(s[h == low])
        for high in levels[i + 1 :]:
            above = s[h == high]
            lower = np.searchsorted(below_scores, above, side="left")
            tied = np.searchsorted(below_scores, above, side="right") - lower
            agree += float(lower.sum()) + 0.5 * float(tied.sum())
            pairs += len(below_scores) * len(above)
    return (agree / pairs if pairs else float("nan")), pairs


def pairwise_accuracy_ranksum(human: Sequence[int], score: Sequence[float]) -> tuple[float, int]:
    """Second implementation of :func:`pairwise_accuracy` for cross-checks: for each two human grades, the
    Mann-Whitney U of the scores (scipy's mid-ranks, so score ties count one half) over all their pairs."""
    h = np.asarray(human)
    s = np.asarray(score, dtype=float)
    total, pairs = 0.0, 0
    levels = np.unique(h)
    for i, low in enumerate(levels):
        for high in levels[i + 1 :]:
            mask = (h == low) | (h == high)
            is_high = h[mask] == high
            n_high, n_low = int(is_high.sum()), int((~is_high).sum())
            total += float(rankdata(s[mask])[is_high].sum()) - n_high * (n_high + 1) / 2
            pairs += n_high * n_low
    return (total / pairs if pairs else float("nan")), pairs


def ndcg_at_k(human: Sequence[int], score: Sequence[float], k: int = 10) -> float:
    """nDCG@k of the judged documents ranked by ``score`` with human grades as gains (scikit-learn: tied
    scores share their gains); NaN for a query with one document or no relevant one."""
    h = np.asarray(human, dtype=float)
    if len(h) < 2 or h.max() <= 0:
        return float("nan")
    return float(ndcg_score([h], [np.asarray(score, dtype=float)], k=k))


def per_query_table(frame: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """One row per query of ``frame`` (columns qid, human, grade, score): pair counts, mean grades, kappas,
    exact accuracy, nDCG@k and pairwise accuracy (with its number of ordered pairs)."""
    rows: list[dict[str, Any]] = []
    for qid, group in frame.groupby("qid", sort=True):
        human = group["human"].to_numpy(dtype=int)
        grade = group["grade"].to_numpy(dtype=int)
        score = group["score"].to_numpy(dtype=float)
        accuracy, pairs = pairwise_accuracy(human, score)
        rows.append(
            {
                "qid": qid,
                "n_pairs": len(group),
                "n_relevant": int((human >= 2).sum()),
                "mean_human": float(human.mean()),
                "mean_labeler": float(grade.mean()),
                "cohen_kappa": _kappa(human, grade),
                "quadratic_kappa": _kappa(human, grade, "quadratic"),
                "exact_accuracy": float(accuracy_score(human, grade)),
                f"ndcg@{k}": ndcg_at_k(human, score, k),
                "pairwise_accuracy": accuracy,
                "ranked_pairs": pairs,
            }
        )
    columns = ["qid", "n_pairs", "n_relevant", "mean_human", "mean_labeler", "cohen_kappa", "quadratic_kappa"]
    columns += ["exact_accuracy", f"ndcg@{k}", "pairwise_accuracy", "ranked_pairs"]
    return pd.DataFrame(rows, columns=columns)


def ranking_from_queries(per_query: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Mean per-query nDCG@k and pairwise accuracy over all pairs of all queries."""
    ndcg = per_query[f"ndcg@{k}"].dropna()
    pairs = per_query["ranked_pairs"].sum()
    agree = (per_query["pairwise_accuracy"].fillna(0) * per_query["ranked_pairs"]).sum()
    return {
        f"ndcg@{k}": float(ndcg.mean()) if len(ndcg) else float("nan"),
        "pairwise_accuracy": float(agree / pairs) if pairs else float("nan"),
    }


def ranking_agreement(frame: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Mean per-query nDCG@k (labeler score ranks the judged docs, human grades are gains) and
    pairwise accuracy over all within-query pairs. Needs columns qid, human, score."""
    frame = frame.assign(grade=frame["human"]) if "grade" not in frame else frame
    return ranking_from_queries(per_query_table(frame, k), k)


def query_bootstrap(
    frame: pd.DataFrame,
    per_query: pd.DataFrame | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    k: int = 10,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric, resampling whole QUERIES with replacement (pairs
    within a query are not independent). Each resample weights the pairs by how often their query was
    drawn; the grade metrics are recomputed by scikit-learn/krippendorff with those weights, the ranking
    metrics are re-averaged from the per-query values."""
    nan_pair = (float("nan"), float("nan"))
    names = [*GRADE_METRICS, f"ndcg@{k}", "pairwise_accuracy"]
    if per_query is None:
        per_query = per_query_table(frame, k)
    n_queries = len(per_query)
    if n_queries == 0 or n_resamples <= 0:
        return dict.fromkeys(names, nan_pair)
    index = {qid: i for i, qid in enumerate(per_query["qid"])}
    query_of_pair = frame["qid"].map(index).to_numpy(dtype=int)
    cell = frame["human"].to_numpy(dtype=int) * 4 + frame["grade"].to_numpy(dtype=int)
    cells = np.zeros((n_queries, 16))
    np.add.at(cells, (query_of_pair, cell), 1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_queries, size=(n_resamples, n_queries))
    times = np.zeros((n_resamples, n_queries))
    np.add.at(times, (np.repeat(np.arange(n_resamples), n_queries), draws.ravel()), 1)
    counts = times @ cells
    samples = confusion_metrics(counts.reshape(-1, 4, 4))
    ndcg = per_query[f"ndcg@{k}"].to_numpy(dtype=float)
    valid = ~np.isnan(ndcg)
    with np.errstate(invalid="ignore", divide="ignore"):
        ranked = times[:, valid]
        ndcg_samples = ranked @ ndcg[valid] / ranked.sum(axis=1)
        pairs = per_query["ranked_pairs"].to_numpy(dtype=float)
        agree = np.nan_to_num(per_query["pairwise_accuracy"].to_numpy(dtype=float)) * pairs
        pairwise_samples = times @ agree / (times @ pairs)
    all_samples = {**samples, f"ndcg@{k}": ndcg_samples, "pairwise_accuracy": pairwise_samples}
    tail = (1 - level) / 2 * 100
    intervals: dict[str, tuple[float, float]] = {}
    for name, values in all_samples.items():
        array = np.asarray(values, dtype=float)
        array = array[~np.isnan(array)]
        if len(array) == 0:
            intervals[name] = nan_pair
        else:
            low, high = np.percentile(array, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


def tie_broken_scores(frame: pd.DataFrame, seed: int = 0) -> pd.Series:
    """Unique per-query integer scores that keep ``score``'s order and break its ties in a fixed random
    order, so that two nDCG implementations rank the same documents identically."""
    key = np.random.default_rng(seed).permutation(len(frame))
    ordered = frame.assign(_key=key).sort_values(["qid", "score", "_key"], ascending=[True, True, True])
    ranks = ordered.groupby("qid").cumcount().astype(float)
    return ranks.reindex(frame.index)


def ir_measures_ndcg(qrels: pd.DataFrame, run: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Per-query nDCG@k by ir-measures (trec_eval through pytrec_eval). ``qrels``: qid, doc_id, grade;
    ``run``: qid, doc_id, score. Unjudged retrieved documents count as non-relevant, as in trec_eval."""
    import ir_measures

    qrels_frame = pd.DataFrame(
        {"query_id": qrels["qid"].astype(str), "doc_id": qrels["doc_id"].astype(str), "relevance": qrels["grade"]}
    ).astype({"relevance": int})
    run_frame = pd.DataFrame(
        {"query_id": run["qid"].astype(str), "doc_id": run["doc_id"].astype(str), "score": run["score"]}
    ).astype({"score": float})
    measure = ir_measures.nDCG @ k
    return {m.query_id: float(m.value) for m in ir_measures.iter_calc([measure], qrels_frame, run_frame)}


def ndcg_cross_check(frame: pd.DataFrame, k: int = 10, seed: int = 0) -> dict[str, float]:
    """nDCG@k of the labeler's ranking by two implementations on the same tie-broken scores (scikit-learn
    and ir-measures/trec_eval), and pairwise accuracy by a second one (Mann-Whitney U from scipy's ranks).
    Needs columns qid, doc_id, human, score."""
    if frame.empty:
        return {}
    ranked = frame.assign(score=tie_broken_scores(frame, seed))
    sklearn_values = {
        qid: ndcg_at_k(group["human"].to_numpy(), group["score"].to_numpy(), k)
        for qid, group in ranked.groupby("qid", sort=True)
    }
    qrels = pd.DataFrame({"qid": ranked["qid"], "doc_id": ranked["doc_id"], "grade": ranked["human"]})
    trec = ir_measures_ndcg(qrels, ranked, k)
    qids = [qid for qid, value in sklearn_values.items() if not np.isnan(value)]
    rank_agree, rank_pairs = 0.0, 0
    for _, group in frame.groupby("qid", sort=True):
        accuracy, pairs = pairwise_accuracy_ranksum(group["human"].to_numpy(), group["score"].to_numpy())
        if pairs:
            rank_agree += accuracy * pairs
            rank_pairs += pairs
    return {
        f"ndcg@{k}_sklearn_tie_broken": float(np.mean([sklearn_values[q] for q in qids])) if qids else float("nan"),
        f"ndcg@{k}_ir_measures_tie_broken": float(np.mean([trec.get(str(q), 0.0) for q in qids]))
        if qids
        else float("nan"),
        "pairwise_accuracy_mann_whitney": rank_agree / rank_pairs if rank_pairs else float("nan"),
    }


def system_ranking_tau(
    human: pd.DataFrame, labeler: pd.DataFrame, runs: Mapping[str, pd.DataFrame], k: int = 10
) -> tuple[dict[str, float], pd.DataFrame]:
    """Kendall's tau (scipy) between the orderings of retrieval systems by mean nDCG@k (ir-measures) under
    human and under labeler judgments. ``human``/``labeler``: qid, doc_id, grade (only the pairs both judged
    are used); ``runs``: system name -> qid, doc_id, score. Returns the tau summary and a per-system table."""
    common = human[["qid", "doc_id", "grade"]].merge(
        labeler[["qid", "doc_id", "grade"]], on=["qid", "doc_id"], suffixes=("_human", "_labeler")
    )
    rows = []
    for system, run in sorted(runs.items()):
        run = run[run["qid"].isin(set(common["qid"]))]
        values = {}
        for side in ("human", "labeler"):
            qrels = common[["qid", "doc_id", f"grade_{side}"]].rename(columns={f"grade_{side}": "grade"})
            per_query = ir_measures_ndcg(qrels, run, k) if len(run) else {}
            values[side] = float(np.mean(list(per_query.values()))) if per_query else float("nan")
        rows.append({"system": system, f"ndcg@{k}_human": values["human"], f"ndcg@{k}_labeler": values["labeler"]})
    table = pd.DataFrame(rows, columns=["system", f"ndcg@{k}_human", f"ndcg@{k}_labeler"])
    valid = table.dropna()
    summary = {"n_systems": float(len(valid)), "kendall_tau": float("nan"), "kendall_p_value": float("nan")}
    if len(valid) >= 2:
        result = kendalltau(valid[f"ndcg@{k}_human"], valid[f"ndcg@{k}_labeler"])
        summary.update(kendall_tau=float(result.statistic), kendall_p_value=float(result.pvalue))
    return summary, table
