"""Unit tests for relabel.checks.expectations (great-expectations backed table checks)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from relabel.checks import expectations as quality
from relabel.checks.expectations import (
    CheckOutcome,
    expect_no_dominant_value,
    expect_non_empty_text,
    expect_row_count_at_least,
    expect_unique_key,
    expect_values_between,
)


@pytest.fixture
def labels() -> pd.DataFrame:
    """A small, clean labels frame."""
    return pd.DataFrame(
        {
            "qid": ["q1", "q1", "q2", "q3"],
            "doc_id": ["d1", "d2", "d1", "d3"],
            "text": ["alpha", "beta", "gamma", "delta"],
            "grade": [0, 1, 2, 3],
        }
    )


@pytest.mark.unit
def test_single_column_duplicates_counted(labels: pd.DataFrame) -> None:
    outcome = expect_unique_key(labels, ["qid"])
    assert isinstance(outcome, CheckOutcome)
    assert not outcome.passed
    assert outcome.name == "unique_key(qid)"
    assert outcome.details["unexpected_count"] == 2
    assert outcome.details["unexpected_examples"] == ["q1", "q1"]
    assert "2 duplicate rows" in outcome.description


@pytest.mark.unit
def test_compound_key_unique_and_duplicate(labels: pd.DataFrame) -> None:
    assert expect_unique_key(labels, ["qid", "doc_id"]).passed
    dup = pd.concat([labels, labels.iloc[[0]]], ignore_index=True)
    outcome = expect_unique_key(dup, ["qid", "doc_id"])
    assert not outcome.passed
    assert outcome.name == "unique_key(qid, doc_id)"
    assert outcome.details["unexpected_count"] == 2
    assert "(qid, doc_id)" in outcome.description


@pytest.mark.unit
def test_non_empty_text_passes_clean(labels: pd.DataFrame) -> None:
    outcome = expect_non_empty_text(labels, "text")
    assert outcome.passed
    assert outcome.details["null_count"] == 0 and outcome.details["blank_count"] == 0


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_non_empty_text_catches_blank(labels: pd.DataFrame, bad: str) -> None:
    labels.loc[1, "text"] = bad
    outcome = expect_non_empty_text(labels, "text")
    assert not outcome.passed
    assert outcome.details["blank_count"] == 1
    assert outcome.details["null_count"] == 0


@pytest.mark.unit
def test_non_empty_text_catches_none(labels: pd.DataFrame) -> None:
    labels["text"] = labels["text"].astype(object)
    labels.loc[2, "text"] = None
    outcome = expect_non_empty_text(labels, "text")
    assert not outcome.passed
    assert outcome.details["null_count"] == 1


@pytest.mark.unit
def test_values_between_in_range_passes(labels: pd.DataFrame) -> None:
    outcome = expect_values_between(labels, "grade", 0, 3)
    assert outcome.passed
    assert outcome.details["unexpected_count"] == 0


@pytest.mark.unit
def test_values_between_out_of_range_caught(labels: pd.DataFrame) -> None:
    labels.loc[3, "grade"] = 7
    outcome = expect_values_between(labels, "grade", 0, 3)
    assert not outcome.passed
    assert outcome.details["unexpected_count"] == 1
    assert outcome.details["unexpected_examples"] == [7]


@pytest.mark.unit
def test_values_between_null_handling(labels: pd.DataFrame) -> None:
    labels["grade"] = labels["grade"].astype(float)
    labels.loc[0, "grade"] = np.nan
    assert not expect_values_between(labels, "grade", 0, 3).passed
    assert expect_values_between(labels, "grade", 0, 3, ignore_null=True).passed


@pytest.mark.unit
def test_row_count(labels: pd.DataFrame) -> None:
    assert expect_row_count_at_least(labels, 4).passed
    outcome = expect_row_count_at_least(labels, 5)
    assert not outcome.passed
    assert outcome.details["row_count"] == 4
    assert not expect_row_count_at_least(labels.iloc[:0], 1).passed


@pytest.mark.unit
def test_dominant_value_fails_at_095() -> None:
    df = pd.DataFrame({"grade": [1] * 95 + [0] * 5})
    outcome = expect_no_dominant_value(df, "grade", max_share=0.9)
    assert not outcome.passed
    assert outcome.details["top_share"] == pytest.approx(0.95)
    assert outcome.details["top_value"] == 1


@pytest.mark.unit
def test_dominant_value_passes_at_05() -> None:
    df = pd.DataFrame({"grade": [1] * 50 + [0] * 50})
    outcome = expect_no_dominant_value(df, "grade", max_share=0.9)
    assert outcome.passed
    assert outcome.details["top_share"] == pytest.approx(0.5)


@pytest.mark.unit
def test_dominant_value_empty_frame_fails() -> None:
    assert not expect_no_dominant_value(pd.DataFrame({"grade": []}), "grade").passed


@pytest.mark.unit
@pytest.mark.parametrize(
    "check",
    [
        lambda df: expect_unique_key(df, ["qid", "nope"]),
        lambda df: expect_non_empty_text(df, "nope"),
        lambda df: expect_values_between(df, "nope", 0, 3),
        lambda df: expect_no_dominant_value(df, "nope"),
    ],
)
def test_missing_column_gives_failed_outcome(
    labels: pd.DataFrame, check: Callable[[pd.DataFrame], CheckOutcome]
) -> None:
    outcome = check(labels)
    assert not outcome.passed
    assert "nope" in outcome.description
    assert outcome.details["missing_columns"] == ["nope"]


@pytest.mark.unit
def test_details_are_json_serialisable(labels: pd.DataFrame) -> None:
    labels["grade"] = labels["grade"].astype(float)
    labels.loc[0, "grade"] = np.nan
    labels.loc[1, "grade"] = 9.5
    labels["text"] = labels["text"].astype(object)
    labels.loc[2, "text"] = None
    dup = pd.concat([labels, labels], ignore_index=True)
    outcomes = [
        expect_unique_key(dup, ["qid", "doc_id"]),
        expect_unique_key(dup, ["grade"]),
        expect_non_empty_text(dup, "text"),
        expect_values_between(dup, "grade", 0, 3),
        expect_row_count_at_least(dup, 100),
        expect_no_dominant_value(dup, "grade"),
        expect_no_dominant_value(dup, "nope"),
    ]
    for outcome in outcomes:
        json.dumps(outcome.details, allow_nan=False)
        assert not outcome.passed or outcome.name.startswith("no_dominant")


@pytest.mark.unit
def test_unexpected_examples_truncated_to_five() -> None:
    df = pd.DataFrame({"grade": list(range(100, 120))})
    outcome = expect_values_between(df, "grade", 0, 3)
    assert outcome.details["unexpected_count"] == 20
    assert len(outcome.details["unexpected_examples"]) <= 5


@pytest.mark.unit
def test_context_is_cached(labels: pd.DataFrame) -> None:
    expect_row_count_at_least(labels, 1)
    first = quality._get_batch_definition()
    expect_unique_key(labels, ["qid", "doc_id"])
    assert quality._get_batch_definition() is first
