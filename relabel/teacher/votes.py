"""Several teachers per pair: recorded judgments imported as a teacher, and ensembles combined by vote."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relabel.evaluation.judgments import JudgmentError


def read_recorded_labels(path: Path) -> dict[tuple[str, str], int]:
    """A TREC qrels-format labeling (``qid 0|Q0 docid grade`` per line) as {(qid, docid): grade}."""
    labels: dict[tuple[str, str], int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise JudgmentError(f"{path}:{number}: expected 'qid 0 docid grade', got {len(parts)} fields")
        try:
            grade = int(float(parts[3]))
        except ValueError as error:
            raise JudgmentError(f"{path}:{number}: grade {parts[3]!r} is not a number") from error
        if not 0 <= grade <= 3:
            raise JudgmentError(f"{path}:{number}: grade {grade} is outside 0-3")
        labels[(parts[0], parts[2])] = grade
    return labels


INBOX_PREFIXES = ("inbox/", "staging/")


def recorded_doc_id(doc_id: str) -> str:
    """The id a recorded labeling may know a document by: its doc id without an inbox or staging prefix and
    without its folders and file suffix (``inbox/stream/8412.txt`` -> ``8412``)."""
    name = doc_id
    for prefix in INBOX_PREFIXES:
        name = name.removeprefix(prefix)
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def recorded_grade(labels: dict[tuple[str, str], int], qid: str, doc_id: str) -> int | None:
    """A recorded grade for (query, document): by the exact doc id, else by ``recorded_doc_id``."""
    grade = labels.get((qid, doc_id))
    return labels.get((qid, recorded_doc_id(doc_id))) if grade is None else grade


def recorded_teacher_rows(pairs: Sequence[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Label rows from a recorded labeling (labeler id = file name); pairs it lacks are ``failed``. A document
    is found by its doc id, or by its file name without suffix (a corpus or inbox file named after the
    recorded document id)."""
    labels = read_recorded_labels(path)
    labeler_id = f"recorded:{path.stem}"
    rows = []
    for pair in pairs:
        grade = recorded_grade(labels, str(pair["qid"]), str(pair["doc_id"]))
        rows.append(
            {
                "pair_source": pair["pair_source"],
                "qid": pair["qid"],
                "doc_id": pair["doc_id"],
                "labeler_id": labeler_id,
                "model": labeler_id,
                "prompt_id": None,
                "prompt_version": None,
                "status": "ok" if grade is not None else "failed",
                "grade": grade,
                "expected_grade": float(grade) if grade is not None else None,
                "p0": None,
                "p1": None,
                "p2": None,
                "p3": None,
                "raw_answer": None,
                "error": None if grade is not None else f"pair not in recorded labeling {path.name}",
                "from_cache": False,
                "latency_s": None,
            }
        )
    return rows


def combine_votes(members: Sequence[Sequence[dict[str, Any]]], labeler_id: str) -> list[dict[str, Any]]:
    """One row per pair from several members' rows: majority grade (ties go to the grade nearest the mean),
    mean expected grade, mean grade probabilities (vote shares when no member gave probabilities), and
    ``agreement`` = share of voting members with the majority grade. A pair no member graded is ``failed``
    with every member's reason."""
    by_pair: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rows in members:
        for row in rows:
            by_pair.setdefault((row["pair_source"], row["qid"], row["doc_id"]), []).append(row)
    combined = []
    for (source, qid, doc_id), votes in by_pair.items():
        ok = [v for v in votes if v["status"] == "ok"]
        base = {
            "pair_source": source,
            "qid": qid,
            "doc_id": doc_id,
            "labeler_id": labeler_id,
            "model": ",".join(sorted({v["model"] for v in votes})),
            "prompt_id": votes[0]["prompt_id"],
            "prompt_version": votes[0]["prompt_version"],
            "raw_answer": None,
            "from_cache": False,
            "latency_s": float(sum(v["latency_s"] or 0.0 for v in votes)),
            "votes": len(ok),
        }
        if not ok:
            combined.append(
                {
                    **base,
                    "status": "failed",
                    "grade": None,
                    "expected_grade": None,
                    "agreement": None,
                    "p0": None,
                    "p1": None,
                    "p2": None,
                    "p3": None,
                    "error": "; ".join(sorted({str(v["error"]) for v in votes})),
                }
            )
            continue
        mean = float(np.mean([v["expected_grade"] for v in ok]))
        counts = Counter(int(v["grade"]) for v in ok)
        top = max(counts.values())
        grade = min((g for g, c in counts.items() if c == top), key=lambda g: (abs(g - mean), g))
        probs = [[v[f"p{g}"] for g in range(4)] for v in ok if v["p0"] is not None]
        # members without probabilities (hard grades) vote with all their mass on their grade
        mean_probs = (
            np.mean(probs, axis=0) if probs else np.bincount([int(v["grade"]) for v in ok], minlength=4) / len(ok)
        ).tolist()
        combined.append(
            {
                **base,
                "status": "ok",
                "grade": grade,
                "expected_grade": mean,
                "agreement": top / len(ok),
                "p0": mean_probs[0],
                "p1": mean_probs[1],
                "p2": mean_probs[2],
                "p3": mean_probs[3],
                "error": None,
            }
        )
    return combined


def recorded_teacher(paths: Sequence[Path], qids: set[str] | None = None) -> list[dict[str, Any]]:
    """Teacher rows for every pair in the recorded labelings at ``paths`` (restricted to ``qids``): one run
    as it is, several combined by vote. Pairs a member lacks count as that member's failure."""
    keys = sorted({key for path in paths for key in read_recorded_labels(path) if qids is None or key[0] in qids})
    pairs = [{"pair_source": "recorded", "qid": qid, "doc_id": doc_id} for qid, doc_id in keys]
    members = [recorded_teacher_rows(pairs, Path(path)) for path in paths]
    if len(members) == 1:
        return members[0]
    return combine_votes(members, "ensemble:" + "+".join(Path(p).stem for p in paths))


def training_rows(queries: dict[str, str], docs: dict[str, dict], labels: list[dict]) -> list[dict]:
    """Student training rows: teacher-labeled pairs whose query and document texts are known."""
    return [
        {
            "qid": r["qid"],
            "query_text": queries[r["qid"]],
            "doc_id": r["doc_id"],
            "title": docs[r["doc_id"]]["title"],
            "doc_text": docs[r["doc_id"]]["text"],
            "grade": int(r["grade"]),
            "expected_grade": r["expected_grade"],
            **{f"p{g}": r[f"p{g}"] for g in range(4)},
        }
        for r in labels
        if r["status"] == "ok" and r["qid"] in queries and r["doc_id"] in docs
    ]
