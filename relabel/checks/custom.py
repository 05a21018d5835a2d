"""Checks that need more than a table-level expectation (no Dagster import)."""

from __future__ import annotations

import pandas as pd

from relabel.checks.expectations import CheckOutcome


def pools_hold_seed_and_negative(pools: pd.DataFrame) -> CheckOutcome:
    """Every query's pool holds its seed document and at least one negative."""
    name = "pool_has_seed_and_negative"
    if pools.empty:
        return CheckOutcome(name, False, "candidate_pools is empty", {})
    per_query = pools.groupby("qid")["role"].agg(
        seeds=lambda r: int((r == "seed").sum()), negatives=lambda r: int((r != "seed").sum())
    )
    bad = per_query[(per_query["seeds"] != 1) | (per_query["negatives"] < 1)]
    details = {
        "queries": int(len(per_query)),
        "bad_queries": int(len(bad)),
        "examples": bad.head(5).reset_index().to_dict("records"),
    }
    if bad.empty:
        return CheckOutcome(name, True, f"all {len(per_query)} pools hold one seed and at least one negative", details)
    return CheckOutcome(name, False, f"{len(bad)} of {len(per_query)} pools lack their seed or a negative", details)


def failure_rate_below(labels: pd.DataFrame, max_rate: float) -> CheckOutcome:
    """Share of label rows that are ``unparsed`` or ``failed`` is at most ``max_rate``."""
    total = len(labels)
    bad = labels[labels["status"] != "ok"]
    rate = len(bad) / total if total else 0.0
    details = {"rows": total, "by_status": labels["status"].value_counts().to_dict(), "rate": round(rate, 4)}
    passed = rate <= max_rate
    verdict = "within" if passed else "above"
    return CheckOutcome(
        "failure_rate",
        passed,
        f"{len(bad)} of {total} labels failed or unparsed ({rate:.1%}), {verdict} the {max_rate:.0%} limit",
        details,
    )
