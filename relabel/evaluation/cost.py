"""Cost and speed of each labeler from recorded timings: labels/s, tokens in/out, $ per 1,000 labels, and
the student's throughput and cost relative to the teacher.

Prices: litellm's price table for API models; local models (``relabel-local/...`` and the student) cost
machine-seconds x an hourly rate, an assumption the report states (default 0.10 USD/h, a 2-core CPU VM).
Timings are the recorded per-call latencies (teacher rows and ``llm_cache``, which keeps the latency of
the original call even when a later run is served from the cache) and the student's measured batch time.
"""

from __future__ import annotations

import math

import pandas as pd

DEFAULT_HOURLY_RATE_USD = 0.10
LOCAL_PREFIXES = ("relabel-local/", "student")
COST_COLUMNS = [
    "labeler_id",
    "role",
    "model",
    "labels",
    "machine_s",
    "labels_per_s",
    "tokens_in_per_label",
    "tokens_out_per_label",
    "usd_per_1k_labels",
    "price_basis",
    "throughput_vs_teacher",
    "teacher_cost_over_student",
]


def is_local(model: str) -> bool:
    """Whether ``model`` runs on our own machine (the embedded GGUF models and the student)."""
    return model.startswith(LOCAL_PREFIXES)


def api_cost_usd(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """Dollars for ``tokens_in``/``tokens_out`` tokens of ``model`` from litellm's price table; None when the
    model is not priced there."""
    import litellm

    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=int(tokens_in), completion_tokens=int(tokens_out)
        )
    except Exception:  # noqa: BLE001 - litellm raises a bare Exception for models it has no price for
        return None
    return float(prompt + completion)


def _tokens_for(tokens: pd.DataFrame | None, model: str, prompt_id: object) -> tuple[float, float]:
    """Mean prompt and completion tokens per call of ``model`` (and prompt, when known) in ``llm_cache``."""
    if tokens is None or tokens.empty:
        return float("nan"), float("nan")
    match = tokens[tokens["model"] == model]
    if isinstance(prompt_id, str) and "prompt_id" in match and (match["prompt_id"] == prompt_id).any():
        match = match[match["prompt_id"] == prompt_id]
    calls = match["calls"].sum()
    if not calls:
        return float("nan"), float("nan")
    return float(match["prompt_tokens"].sum() / calls), float(match["completion_tokens"].sum() / calls)


def cost_table(
    labels: pd.DataFrame, tokens: pd.DataFrame | None = None, hourly_rate_usd: float = DEFAULT_HOURLY_RATE_USD
) -> pd.DataFrame:
    """One row per labeler. ``labels``: labeler_id, role, model, status, latency_s (per label) and optionally
    prompt_id; ``tokens``: model, prompt_id, calls, prompt_tokens, completion_tokens (sums, from llm_cache)."""
    rows = []
    for (role, labeler_id), group in labels.groupby(["role", "labeler_id"], sort=True):
        model = str(group["model"].dropna().iloc[0]) if group["model"].notna().any() else str(labeler_id)
        ok = int((group["status"] == "ok").sum())
        latency = group["latency_s"].dropna()
        machine_s = float(latency.sum()) if len(latency) else float("nan")
        prompts = group["prompt_id"].dropna() if "prompt_id" in group else pd.Series(dtype=object)
        prompt_id = prompts.iloc[0] if len(prompts) else None
        tokens_in, tokens_out = _tokens_for(tokens, model, prompt_id)
        usd, basis = float("nan"), "no recorded timings"
        if is_local(model) or role == "student":
            if len(latency):
                usd = machine_s * hourly_rate_usd / 3600
                basis = f"local: machine-seconds x {hourly_rate_usd:.2f} USD/h (assumed rate)"
        elif not math.isnan(tokens_in):
            price = api_cost_usd(model, round(tokens_in * len(group)), round(tokens_out * len(group)))
            usd, basis = (price, "litellm price table") if price is not None else (float("nan"), "no price for model")
        else:
            basis = "no token counts"
        rows.append(
            {
                "labeler_id": labeler_id,
                "role": role,
                "model": model,
                "labels": ok,
                "machine_s": machine_s,
                "labels_per_s": len(latency) / machine_s if machine_s and machine_s > 0 else float("nan"),
                "tokens_in_per_label": tokens_in,
                "tokens_out_per_label": tokens_out,
                "usd_per_1k_labels": usd / ok * 1000 if ok else float("nan"),
                "price_basis": basis,
            }
        )
    table = pd.DataFrame(rows, columns=COST_COLUMNS[:-2])
    teachers = table[table["role"] == "teacher"]
    teacher = teachers.iloc[0] if len(teachers) else None
    student = table["role"] == "student"
    table["throughput_vs_teacher"] = float("nan")
    table["teacher_cost_over_student"] = float("nan")
    if teacher is not None:
        table.loc[student, "throughput_vs_teacher"] = table.loc[student, "labels_per_s"] / teacher["labels_per_s"]
        table.loc[student, "teacher_cost_over_student"] = teacher["usd_per_1k_labels"] / table.loc[
            student, "usd_per_1k_labels"
        ].replace(0, float("nan"))
    return table
