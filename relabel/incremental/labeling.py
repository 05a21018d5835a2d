"""Labeling one inbox batch: route its pairs to the teacher (under ``uncertainty`` the current student grades
them first), shape the teacher's grades as ``inbox_teacher_labels`` rows, and student-label the pairs still
without a label, each row with its provenance and routing."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from relabel.incremental.rules import PairKey, pair_key, route_teacher_pairs
from relabel.student import load_student, pair_text
from relabel.teacher.labels import LABEL_COLUMNS


def _doc_texts(pairs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [pair_text({"title": p["title"], "doc_text": p["text"]}) for p in pairs]


def route_batch(
    pairs: list[dict],
    *,
    routing: str,
    sample_rate: float,
    seed: int,
    uncertainty: str,
    random_slice: float,
    checkpoint_path: Path | None,
) -> list[dict]:
    """The batch's pairs with their routing (``RELABEL_TEACHER_ROUTING``); under ``uncertainty`` the student at
    ``checkpoint_path`` grades them first (its grade and expected grade are kept with the routing)."""
    if routing != "uncertainty" or not pairs:
        return route_teacher_pairs(pairs, sample_rate, seed, routing)
    if checkpoint_path is None:
        raise RuntimeError("uncertainty routing needs a student checkpoint: run relabel_job once first")
    labeler = load_student(checkpoint_path)
    scores, grades, probabilities = labeler.predict_with_probabilities(
        [p["query_text"] for p in pairs], _doc_texts(pairs)
    )
    routed = route_teacher_pairs(
        pairs,
        sample_rate,
        seed,
        "uncertainty",
        uncertainty,
        random_share=random_slice,
        probabilities=probabilities,
        expected=scores,
        thresholds=labeler.thresholds,
    )
    return [
        {**r, "student_grade": int(g), "student_expected_grade": float(s)}
        for r, g, s in zip(routed, grades, scores, strict=True)
    ]


def teacher_label_frame(
    rows: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]], batch_id: str, now: pd.Timestamp
) -> pd.DataFrame:
    """``inbox_teacher_labels`` rows: the teacher's grade rows with the pair's version, query and document."""
    by_key = {(p["qid"], p["doc_id"]): p for p in pairs}
    frame = pd.DataFrame(
        [
            {
                **{k: r[k] for k in LABEL_COLUMNS if k not in ("pair_source", "from_cache", "latency_s")},
                "content_hash": by_key[(r["qid"], r["doc_id"])]["content_hash"],
                "query_text": by_key[(r["qid"], r["doc_id"])]["query_text"],
                "title": by_key[(r["qid"], r["doc_id"])]["title"],
                "doc_text": by_key[(r["qid"], r["doc_id"])]["text"],
                "batch_id": batch_id,
                "labeled_at": now,
            }
            for r in rows
        ]
    )
    if len(frame):
        frame["grade"] = frame["grade"].astype("Int64")
    return frame


def student_label_rows(
    pairs: Sequence[Mapping[str, Any]],
    checkpoint: Mapping[str, Any],
    labeler_id: str,
    routing: Mapping[PairKey, tuple[str, float | None]],
) -> tuple[list[dict], float]:
    """The checkpoint's label of every pair (kind ``student``, its sha256 as version, the pair's routing reason
    and score, ``student`` when it was not routed); returns the rows and the seconds spent labeling."""
    if not pairs:
        return [], 0.0
    labeler = load_student(Path(checkpoint["path"]))
    started = time.perf_counter()
    scores, grades = labeler.predict([p["query_text"] for p in pairs], _doc_texts(pairs))
    seconds = time.perf_counter() - started
    rows = []
    for pair, score, grade in zip(pairs, scores, grades, strict=True):
        reason, routing_score = routing.get(pair_key(pair), ("student", None))
        rows.append(
            {
                "qid": pair["qid"],
                "doc_id": pair["doc_id"],
                "content_hash": pair["content_hash"],
                "labeler_kind": "student",
                "labeler_id": labeler_id,
                "labeler_version": checkpoint["sha256"],
                "grade": int(grade),
                "expected_grade": float(score),
                "routing_reason": reason,
                "routing_score": routing_score,
            }
        )
    return rows, seconds
