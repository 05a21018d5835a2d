"""Table-level data-quality expectations on pandas DataFrames, backed by great-expectations 1.x.

Every check returns a :class:`CheckOutcome` instead of raising, so callers (e.g. Dagster asset checks)
can turn it into metadata directly. GX is imported lazily: the first check pays for the import and
for building one in-memory (ephemeral) context with progress bars and analytics disabled; the context,
its pandas datasource and a whole-dataframe batch definition are then reused by every later check,
each call passing its own frame through ``batch_parameters={"dataframe": df}``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

_PARTIAL_LIMIT = 5
_NON_BLANK_REGEX = r"\S"  # at least one non-whitespace character

_lock = threading.Lock()
_batch_definition: Any = None


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one data-quality check."""

    name: str
    passed: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


def _get_batch_definition() -> Any:
    """Return the cached GX whole-dataframe batch definition, creating the ephemeral context once."""
    global _batch_definition
    with _lock:
        if _batch_definition is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                analytics_enabled=False,
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            asset = context.data_sources.add_pandas("relabel_quality").add_dataframe_asset("frame")
            _batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        return _batch_definition


def _jsonable(value: Any) -> Any:
    """Convert GX/numpy/pandas values into plain JSON-serialisable Python objects (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _validate(df: pd.DataFrame, expectation: Any) -> tuple[bool, dict[str, Any], str | None]:
    """Validate ``df`` as one batch; return (success, JSON-safe summary of the result, error message)."""
    batch = _get_batch_definition().get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(expectation)
    raw = dict(result.result or {})
    summary = {k: raw[k] for k in ("element_count", "unexpected_count", "missing_count", "observed_value") if k in raw}
    if "partial_unexpected_list" in raw:
        summary["unexpected_examples"] = list(raw["partial_unexpected_list"])[:_PARTIAL_LIMIT]
    error = None
    info = result.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, dict) and item.get("raised_exception"):
            error = str(item.get("exception_message"))
            break
    return bool(result.success) and error is None, _jsonable(summary), error


def _missing(df: pd.DataFrame, name: str, columns: list[str]) -> CheckOutcome | None:
    """Return a failed outcome naming the absent columns, or None when all columns exist."""
    absent = [c for c in columns if c not in df.columns]
    if not absent:
        return None
    return CheckOutcome(name, False, f"missing column(s) {', '.join(absent)}", {"missing_columns": absent})


def _error(name: str, error: str, details: dict[str, Any]) -> CheckOutcome:
    """Return a failed outcome for a check GX could not evaluate."""
    return CheckOutcome(name, False, f"check could not be evaluated: {error}", {**details, "error": error})


def expect_unique_key(df: pd.DataFrame, columns: list[str]) -> CheckOutcome:
    """Check that ``columns`` (one or several) form a unique key; nulls are ignored as GX does.

    The reported count is GX's ``unexpected_count``: every row belonging to a duplicated key group.
    """
    key = ", ".join(columns)
    name = f"unique_key({key})"
    if not columns:
        return CheckOutcome(name, False, "no key columns given", {})
    if (missing := _missing(df, name, columns)) is not None:
        return missing
    import great_expectations as gx

    if len(columns) == 1:
        expectation: Any = gx.expectations.ExpectColumnValuesToBeUnique(column=columns[0])
    else:
        expectation = gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(columns))
    passed, details, error = _validate(df, expectation)
    if error:
        return _error(name, error, details)
    count = details.get("unexpected_count", 0)
    text = (
        f"all {details.get('element_count', len(df))} rows have a unique key ({key})"
        if passed
        else f"{count} duplicate rows for key ({key})"
    )
    return CheckOutcome(name, passed, text, details)


def expect_non_empty_text(df: pd.DataFrame, column: str) -> CheckOutcome:
    """Check that every value of ``column`` is non-null and contains a non-whitespace character."""
    name = f"non_empty_text({column})"
    if (missing := _missing(df, name, [column])) is not None:
        return missing
    import great_expectations as gx

    ok_null, nulls, err_null = _validate(df, gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    ok_blank, blanks, err_blank = _validate(
        df, gx.expectations.ExpectColumnValuesToMatchRegex(column=column, regex=_NON_BLANK_REGEX)
    )
    details = {
        "element_count": len(df),
        "null_count": nulls.get("unexpected_count", 0),
        "blank_count": blanks.get("unexpected_count", 0),
        "blank_examples": blanks.get("unexpected_examples", []),
    }
    if err_null or err_blank:
        return _error(name, str(err_null or err_blank), details)
    passed = ok_null and ok_blank
    text = (
        f"all {len(df)} values of {column} are non-empty"
        if passed
        else f"{details['null_count']} null and {details['blank_count']} blank values in {column}"
    )
    return CheckOutcome(name, passed, text, details)


def expect_values_between(
    df: pd.DataFrame, column: str, low: float, high: float, ignore_null: bool = False
) -> CheckOutcome:
    """Check that every value of ``column`` lies in ``[low, high]``; nulls fail unless ``ignore_null``."""
    name = f"values_between({column}, {low}, {high})"
    if (missing := _missing(df, name, [column])) is not None:
        return missing
    import great_expectations as gx

    passed, details, error = _validate(
        df, gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
    )
    if error:
        return _error(name, error, details)
    nulls = int(details.get("missing_count", df[column].isna().sum()))
    if not ignore_null and nulls:
        passed = False
    out = details.get("unexpected_count", 0)
    text = (
        f"all {len(df)} values of {column} are within [{low}, {high}]"
        if passed
        else f"{out} values of {column} outside [{low}, {high}], {nulls} null"
    )
    return CheckOutcome(name, passed, text, {**details, "null_count": nulls, "ignore_null": ignore_null})


def expect_row_count_at_least(df: pd.DataFrame, minimum: int) -> CheckOutcome:
    """Check that the frame has at least ``minimum`` rows."""
    import great_expectations as gx

    name = f"row_count_at_least({minimum})"
    passed, details, error = _validate(df, gx.expectations.ExpectTableRowCountToBeBetween(min_value=minimum))
    if error:
        return _error(name, error, details)
    rows = details.get("observed_value", len(df))
    return CheckOutcome(name, passed, f"{rows} rows (minimum {minimum})", {"row_count": rows, "minimum": minimum})


def expect_no_dominant_value(df: pd.DataFrame, column: str, max_share: float = 0.9) -> CheckOutcome:
    """Check that the most frequent value of ``column`` has at most ``max_share`` of the non-null values.

    Computed with pandas (GX has no direct expectation). An empty frame/column fails.
    """
    name = f"no_dominant_value({column}, max_share={max_share})"
    if (missing := _missing(df, name, [column])) is not None:
        return missing
    counts = df[column].value_counts(dropna=True)
    if counts.empty:
        return CheckOutcome(name, False, f"{column} has no non-null values", {"element_count": len(df)})
    top, top_count = counts.index[0], int(counts.iloc[0])
    share = top_count / int(counts.sum())
    passed = share <= max_share
    details = _jsonable(
        {
            "element_count": len(df),
            "top_value": top,
            "top_count": top_count,
            "top_share": round(share, 6),
            "max_share": max_share,
            "distribution": counts.head(_PARTIAL_LIMIT).to_dict(),
        }
    )
    verdict = "<=" if passed else ">"
    text = f"most frequent {column} value {details['top_value']!r} has share {share:.3f} {verdict} {max_share}"
    return CheckOutcome(name, passed, text, details)
