"""The pure rules of incremental relabeling: document versions by content hash (tombstones for deleted
files), which (query, document version) pairs are new, which of them the teacher grades, how new labels
merge into ``relevance_labels`` (retire, never delete), when the student is stale, which queries no longer
hold, and how the baseline is re-imported. No I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from relabel.retrieval import passage_texts
from relabel.synthesis.query_stats import content_terms
from relabel.teacher.routing import random_order, route


def text_sha256(text: str) -> str:
    """Content hash of a staging row (the bytes its snapshot file will hold)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CurrentVersion:
    """The current version of a document in ``document_versions``."""

    version: int
    content_hash: str
    is_tombstone: bool


@dataclass(frozen=True)
class VersionChange:
    """What ingesting one document of a batch does: ``new``, ``changed``, ``deleted`` (a tombstone),
    ``unchanged`` (same content as the current version: nothing to do) or ``missing`` (deleted but unknown)."""

    doc_id: str
    change: str
    version: int | None
    previous_version: int | None


def plan_versions(
    current: Mapping[str, CurrentVersion], incoming: Mapping[str, str], deleted: Iterable[str]
) -> list[VersionChange]:
    """Version changes for a batch: ``incoming`` maps doc id -> content hash of new or changed files."""
    plan: list[VersionChange] = []
    for doc_id, content_hash in sorted(incoming.items()):
        known = current.get(doc_id)
        if known is None:
            plan.append(VersionChange(doc_id, "new", 1, None))
        elif known.content_hash == content_hash and not known.is_tombstone:
            plan.append(VersionChange(doc_id, "unchanged", None, known.version))
        else:
            # a file that comes back after deletion is a new version of the same document
            plan.append(VersionChange(doc_id, "changed", known.version + 1, known.version))
    for doc_id in sorted(set(deleted)):
        known = current.get(doc_id)
        if known is None or known.is_tombstone:
            plan.append(VersionChange(doc_id, "missing", None, None))
        else:
            plan.append(VersionChange(doc_id, "deleted", known.version + 1, known.version))
    return plan


PairKey = tuple[str, str, str]  # (qid, doc_id, content_hash)


def pair_key(row: Mapping[str, Any]) -> PairKey:
    """The identity of a label: query, document and the document version's content hash."""
    return (str(row["qid"]), str(row["doc_id"]), str(row["content_hash"]))


def unlabeled_pairs(candidates: Iterable[Mapping[str, Any]], labeled: Iterable[PairKey]) -> list[dict[str, Any]]:
    """Candidates that have no current label yet, each once (first occurrence wins)."""
    done = set(labeled)
    out: list[dict[str, Any]] = []
    for row in candidates:
        key = pair_key(row)
        if key not in done:
            done.add(key)
            out.append(dict(row))
    return out


def sample_size(n_pairs: int, rate: float) -> int:
    """How many of ``n_pairs`` new pairs the teacher grades: ``ceil(rate * n)``, within [0, n]."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"teacher sample rate must be within [0, 1], got {rate}")
    return min(n_pairs, math.ceil(rate * n_pairs - 1e-9))


def teacher_sample(pairs: Sequence[Mapping[str, Any]], rate: float, seed: int) -> list[dict[str, Any]]:
    """A deterministic sample of ``sample_size(len(pairs), rate)`` pairs: the smallest seeded hashes of the
    pair keys, so the same pairs are chosen on every re-run and a pair's chance does not depend on order."""
    order = random_order(len(pairs), seed, [pair_key(r) for r in pairs])
    return [dict(pairs[i]) for i in order[: sample_size(len(pairs), rate)]]


ROUTING_POLICIES = ("random", "uncertainty")


def route_teacher_pairs(
    pairs: Sequence[Mapping[str, Any]],
    rate: float,
    seed: int,
    policy: str = "random",
    variant: str = "entropy",
    random_share: float = 0.1,
    probabilities: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Every pair with its routing: ``to_teacher``, ``routing_reason`` and ``routing_score``.

    The budget is ``sample_size(len(pairs), rate)`` pairs. ``random`` picks the same pairs as ``teacher_sample``;
    ``uncertainty`` keeps ``random_share`` of the budget on those seeded-random pairs (so student–teacher
    agreement on them stays unbiased) and fills the rest with the pairs the student is least sure of
    (``probabilities``: entropy; ``expected`` + ``thresholds``: margin), see ``relabel.teacher.routing``."""
    if policy not in ROUTING_POLICIES:
        raise ValueError(f"RELABEL_TEACHER_ROUTING must be one of {ROUTING_POLICIES}, got {policy!r}")
    routing = route(
        len(pairs),
        sample_size(len(pairs), rate),
        policy,
        variant,
        random_share=random_share,
        seed=seed,
        probabilities=probabilities,
        expected=expected,
        thresholds=thresholds,
        keys=[pair_key(r) for r in pairs],
    )
    return [
        {
            **dict(row),
            "policy": routing.policy,
            "variant": routing.variant,
            "to_teacher": bool(routing.teacher[i]),
            "routing_reason": str(routing.reason[i]),
            "routing_score": None if np.isnan(routing.score[i]) else float(routing.score[i]),
        }
        for i, row in enumerate(pairs)
    ]


LABEL_KIND_PRECEDENCE = {"teacher": 2, "student": 1}


@dataclass(frozen=True)
class LabelMerge:
    """Rows to insert into ``relevance_labels`` and current rows to retire (by pair key and labeler kind)."""

    insert: list[dict[str, Any]]
    retire: list[tuple[PairKey, str]]


def merge_labels(current: Mapping[PairKey, str], new_labels: Sequence[Mapping[str, Any]]) -> LabelMerge:
    """Merge new labels into the current ones (``current`` maps pair key -> labeler kind of its current
    label), in the order given. A pair gets a label only when it has none; a teacher label supersedes a
    student label of the same pair (the student's row is retired, not deleted, so student-teacher agreement
    stays measurable); anything else already labeled is left alone."""
    state = dict(current)
    insert: list[dict[str, Any]] = []
    retire: list[tuple[PairKey, str]] = []
    for row in new_labels:
        key, kind = pair_key(row), str(row["labeler_kind"])
        held = state.get(key)
        if held is None:
            insert.append(dict(row))
            state[key] = kind
        elif LABEL_KIND_PRECEDENCE[kind] > LABEL_KIND_PRECEDENCE[held]:
            retire.append((key, held))
            insert.append(dict(row))
            state[key] = kind
    return LabelMerge(insert, retire)


@dataclass(frozen=True)
class RetrainDecision:
    """Whether the current student checkpoint is stale, and why."""

    stale: bool
    reason: str
    new_teacher_labels: int
    agreement: float | None
    compared_pairs: int


def retrain_decision(
    new_teacher_labels: int,
    student_grades: Sequence[int],
    teacher_grades: Sequence[int],
    *,
    min_teacher_labels: int,
    min_agreement: float,
    min_compared_pairs: int,
) -> RetrainDecision:
    """Stale when at least ``min_teacher_labels`` teacher labels arrived since the checkpoint was made, or
    when the student's exact agreement with the teacher on the sampled new pairs (at least
    ``min_compared_pairs`` of them) is below ``min_agreement``."""
    if len(student_grades) != len(teacher_grades):
        raise ValueError("student and teacher grades must be paired")
    compared = len(student_grades)
    agreement = (
        sum(int(s) == int(t) for s, t in zip(student_grades, teacher_grades, strict=True)) / compared
        if compared
        else None
    )
    if new_teacher_labels >= min_teacher_labels:
        reason = f"{new_teacher_labels} new teacher labels (threshold {min_teacher_labels})"
        return RetrainDecision(True, reason, new_teacher_labels, agreement, compared)
    if agreement is not None and compared >= min_compared_pairs and agreement < min_agreement:
        reason = f"student-teacher agreement {agreement:.3f} on {compared} new pairs < {min_agreement}"
        return RetrainDecision(True, reason, new_teacher_labels, agreement, compared)
    return RetrainDecision(False, "fresh", new_teacher_labels, agreement, compared)


def label_signature(row: Mapping[str, Any]) -> tuple[str, str, str, int | None]:
    """What makes two labels of a pair the same label: labeler kind, id, version and grade."""
    grade = row.get("grade")
    grade = None if grade is None or (isinstance(grade, float) and math.isnan(grade)) else int(grade)
    return (str(row["labeler_kind"]), str(row["labeler_id"]), str(row["labeler_version"]), grade)


@dataclass(frozen=True)
class LabelReimport:
    """How ``relevance_labels`` becomes the rebuilt baseline: rows to insert, current pairs to retire."""

    insert: list[dict[str, Any]]
    retire: list[PairKey]
    kept: int


def plan_label_reimport(
    current: Mapping[PairKey, tuple[str, str, str, int | None]], baseline_rows: Sequence[Mapping[str, Any]]
) -> LabelReimport:
    """The current label of every pair becomes the baseline's (the teacher's where it graded the pair, the
    student's otherwise): an identical current label is kept, a different one retired and replaced, a current
    label of a pair the baseline lacks retired. So re-importing an unchanged baseline changes nothing."""
    wanted: dict[PairKey, dict[str, Any]] = {}
    for row in baseline_rows:
        key = pair_key(row)
        held = wanted.get(key)
        if (
            held is None
            or LABEL_KIND_PRECEDENCE[str(row["labeler_kind"])] >= LABEL_KIND_PRECEDENCE[held["labeler_kind"]]
        ):
            wanted[key] = dict(row)
    insert = [row for key, row in wanted.items() if current.get(key) != label_signature(row)]
    retire = sorted(
        key for key, signature in current.items() if key not in wanted or label_signature(wanted[key]) != signature
    )
    return LabelReimport(insert, retire, len(wanted) - len(insert))


QUERY_FIT_MIN_COVERAGE = 0.5


def document_terms(doc: Mapping[str, Any]) -> frozenset[str]:
    """Stemmed content words of a document version: title, metadata and text (what a query can be written from)."""
    return content_terms(" ".join(passage_texts({**doc, "title": doc.get("title") or ""}, 10**9)))


def query_coverage(query: str, terms: frozenset[str]) -> float:
    """Share of the query's stemmed content words found in ``terms`` (1.0 for a query without any)."""
    words = content_terms(query)
    return len(words & terms) / len(words) if words else 1.0


def queries_to_retire(
    queries: Sequence[Mapping[str, Any]],
    change: str,
    old_doc: Mapping[str, Any] | None,
    new_doc: Mapping[str, Any] | None,
    min_coverage: float = QUERY_FIT_MIN_COVERAGE,
) -> list[dict[str, str]]:
    """``{qid, reason, detail}`` of the current queries written from a document (``queries``: qid and
    query_text) that no longer hold after ``change``: every one when it is ``deleted``; when it is ``changed``,
    a query whose stemmed content words the new version covers less than ``min_coverage`` and less than the
    old version did (``no_longer_fits``)."""
    if change == "deleted":
        return [{"qid": str(q["qid"]), "reason": "document_deleted", "detail": ""} for q in queries]
    if change != "changed" or new_doc is None:
        return []
    new_terms = document_terms(new_doc)
    old_terms = document_terms(old_doc) if old_doc is not None else frozenset()
    out = []
    for q in queries:
        now, before = query_coverage(str(q["query_text"]), new_terms), query_coverage(str(q["query_text"]), old_terms)
        if now < min_coverage and now < before:
            detail = f"new version covers {now:.2f} of its words (old {before:.2f}, minimum {min_coverage})"
            out.append({"qid": str(q["qid"]), "reason": "no_longer_fits", "detail": detail})
    return out
