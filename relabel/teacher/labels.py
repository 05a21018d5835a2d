"""The teacher of a set of pairs, chosen from settings the same way for the full pipeline and inbox batches:
recorded runs (``RELABEL_TEACHER_RUNS``; several combined by vote; with ``RELABEL_TEACHER_RUNS_FALLBACK=llm``
the pairs no run covers go to the LLM teacher), or the LLM teacher with any ensemble members and samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from relabel.llm.client import LLMClient
from relabel.llm.prompts import MAX_DOC_CHARS
from relabel.llm.runner import CallPolicy
from relabel.teacher.grading import DEFAULT_GRADE_PROMPT, label_pairs
from relabel.teacher.votes import combine_votes, recorded_teacher_rows

# the columns of a teacher label row (teacher_labels, teacher_label_votes; inbox_teacher_labels keeps most)
LABEL_COLUMNS = [
    "pair_source",
    "qid",
    "doc_id",
    "labeler_id",
    "model",
    "prompt_id",
    "prompt_version",
    "status",
    "grade",
    "expected_grade",
    "p0",
    "p1",
    "p2",
    "p3",
    "raw_answer",
    "error",
    "from_cache",
    "latency_s",
]

FALLBACKS = ("none", "llm")


@dataclass
class TeacherGrades:
    """One row per pair (the final grade), every member's rows (votes) and the LLM calls made."""

    rows: list[dict[str, Any]]
    votes: list[dict[str, Any]]
    calls: int
    usd: float = 0.0


def grade_with_teachers(
    conn: duckdb.DuckDBPyConnection,
    pairs: Sequence[dict[str, Any]],
    *,
    runs: Sequence[str | Path],
    clients: Sequence[LLMClient],
    samples_per_model: int = 1,
    sample_temperature: float = 0.7,
    use_logprobs: bool = True,
    max_doc_chars: int = MAX_DOC_CHARS,
    policy: CallPolicy | None = None,
    fallback: str = "none",
    progress: Callable[[str, int, int], Any] | None = None,
    prompt_id: str = DEFAULT_GRADE_PROMPT,
) -> TeacherGrades:
    """Grade ``pairs`` (keys: pair_source, qid, query_text, doc_id and the document fields). With recorded
    ``runs`` no LLM is called, unless ``fallback="llm"``: then the pairs that no run grades are graded by the
    first of ``clients`` (the row keeps that teacher's labeler id). Without runs every client (the teacher, then
    ensemble members) grades every pair ``samples_per_model`` times with the prompt ``prompt_id``. Several members
    are combined by vote."""
    if fallback not in FALLBACKS:
        raise ValueError(f"RELABEL_TEACHER_RUNS_FALLBACK must be one of {FALLBACKS}, got {fallback!r}")
    if not pairs:
        return TeacherGrades([], [], 0)
    members: list[list[dict[str, Any]]] = [recorded_teacher_rows(pairs, Path(run)) for run in runs]
    calls_before = sum(c.calls_made for c in clients)
    usd_before = sum(c.spent_usd for c in clients)

    def grade(client: LLMClient, todo: Sequence[dict[str, Any]], sample: int, temperature: float) -> list[dict]:
        return label_pairs(
            conn,
            client,
            todo,
            prompt_id=prompt_id,
            use_logprobs=use_logprobs,
            max_doc_chars=max_doc_chars,
            policy=policy,
            sample=sample,
            temperature=temperature,
            progress=None if progress is None else lambda n, total: progress(client.model, n, total),
        )

    if not runs:
        for client in clients:
            for sample in range(samples_per_model):
                members.append(grade(client, pairs, sample, sample_temperature if samples_per_model > 1 else 0.0))
    votes = [row for rows in members for row in rows]
    if len(members) > 1:
        labeler = "ensemble:" + "+".join(sorted({str(v["labeler_id"]) for v in votes}))
        rows = combine_votes(members, labeler)
    else:
        rows = [dict(r) for r in members[0]]
    if runs and fallback == "llm" and clients:
        missing = {(r["pair_source"], r["qid"], r["doc_id"]) for r in rows if r["status"] != "ok"}
        todo = [p for p in pairs if (p["pair_source"], p["qid"], p["doc_id"]) in missing]
        filled = {(r["pair_source"], r["qid"], r["doc_id"]): r for r in grade(clients[0], todo, 0, 0.0)} if todo else {}
        votes += list(filled.values())
        rows = [filled.get((r["pair_source"], r["qid"], r["doc_id"]), r) for r in rows]
    return TeacherGrades(
        rows, votes, sum(c.calls_made for c in clients) - calls_before, sum(c.spent_usd for c in clients) - usd_before
    )
