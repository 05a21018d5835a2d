"""Teacher grading: render the grading prompt for a (query, document) pair and read the 0-3 grade."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from relabel.llm.client import LLMClient
from relabel.llm.prompts import MAX_DOC_CHARS, PromptTemplate, load_prompt, render_pair
from relabel.llm.runner import CallPolicy, CallRequest, run_calls

GRADES = (0, 1, 2, 3)
DEFAULT_GRADE_PROMPT = "grade_nist"
_STRICT_ANSWER = re.compile(r"^\s*(?:grade\s*[:=]?\s*)?([0-3])\s*\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class GradeResult:
    """A parsed teacher answer. ``status`` is ``ok`` or ``unparsed``; only ``ok`` rows carry a grade."""

    status: str
    grade: int | None
    expected_grade: float | None
    probabilities: tuple[float, float, float, float] | None
    grade_token_mass: float | None


def grade_from_logprobs(top_logprobs: dict[str, float], min_mass: float = 0.01) -> GradeResult | None:
    """Distribution over the four grade tokens (renormalised) from the first token's top logprobs."""
    mass = [0.0, 0.0, 0.0, 0.0]
    for token, logprob in top_logprobs.items():
        stripped = token.strip()
        if stripped in ("0", "1", "2", "3"):
            mass[int(stripped)] += math.exp(logprob)
    total = sum(mass)
    if total < min_mass:
        return None
    probs = tuple(m / total for m in mass)
    expected = sum(g * p for g, p in zip(GRADES, probs, strict=True))
    grade = max(GRADES, key=lambda g: probs[g])
    return GradeResult("ok", grade, expected, probs, total)  # type: ignore[arg-type]


def grade_from_text(text: str) -> GradeResult:
    """Strict parse of a one-digit answer; anything else is ``unparsed`` (never a grade)."""
    match = _STRICT_ANSWER.match(text)
    if match is None:
        return GradeResult("unparsed", None, None, None, None)
    grade = int(match.group(1))
    return GradeResult("ok", grade, float(grade), None, None)


def parse_grade(text: str, top_logprobs: dict[str, float] | None) -> GradeResult:
    """Logprobs when the provider returned grade tokens among them, else the strict text parse."""
    if top_logprobs:
        from_logprobs = grade_from_logprobs(top_logprobs)
        if from_logprobs is not None:
            return from_logprobs
    return grade_from_text(text)


def pair_item_id(pair: dict[str, Any]) -> str:
    """Stable id of a (source, query, document) pair."""
    return f"{pair['pair_source']}|{pair['qid']}|{pair['doc_id']}"


def label_pairs(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    pairs: Iterable[dict[str, Any]],
    *,
    prompt_id: str = DEFAULT_GRADE_PROMPT,
    use_logprobs: bool = True,
    max_doc_chars: int = MAX_DOC_CHARS,
    policy: CallPolicy | None = None,
    labeler_id: str | None = None,
    sample: int = 0,
    temperature: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    template: PromptTemplate | None = None,
) -> list[dict[str, Any]]:
    """Grade each pair (keys: pair_source, qid, query_text, doc_id, title, author, path, modified, doc_type, text).

    Every input pair yields one row: ``ok`` with a grade, ``unparsed`` with the raw answer, ``failed`` with
    the error, or ``skipped_budget``; rows come sorted by query and document. The runner sends the calls in
    prefix order (``CallPolicy.order``), so a document's pairs share the server's cached prompt prefix.
    ``template`` replaces the shipped prompt ``prompt_id`` (for prompt ablations such as the injection bench's).
    """
    policy = policy or CallPolicy()
    prompt = template or load_prompt(prompt_id)
    labeler_id = labeler_id or f"teacher:{client.model}"
    ordered = sorted(pairs, key=lambda p: (p["qid"], p["doc_id"], p["pair_source"]))
    params: dict[str, Any] = {"max_tokens": 1 if use_logprobs else 4, "logprobs": use_logprobs}
    if sample or temperature:
        params.update(sample=sample, temperature=temperature)
    requests = [
        CallRequest(
            pair_item_id(p),
            render_pair(prompt, p["query_text"], p, max_doc_chars),
            params,
            prompt.prompt_id,
            prompt.version,
        )
        for p in pairs
    ]
    outcomes = run_calls(
        conn,
        client,
        requests,
        labeler_id=labeler_id,
        policy=policy,
        validate=lambda a: parse_grade(a.text, a.top_logprobs).status == "ok",
        progress=progress,
    )
    rows: list[dict[str, Any]] = []
    for pair in ordered:
        outcome = outcomes[pair_item_id(pair)]
        answer = outcome.answer
        result = parse_grade(answer.text, answer.top_logprobs) if answer is not None else None
        probs = (result.probabilities if result else None) or (None, None, None, None)
        status = {"ok": "ok", "invalid": "unparsed"}.get(outcome.status, outcome.status)
        rows.append(
            {
                "pair_source": pair["pair_source"],
                "qid": pair["qid"],
                "doc_id": pair["doc_id"],
                "labeler_id": labeler_id,
                "model": client.model,
                "prompt_id": prompt.prompt_id,
                "prompt_version": prompt.version,
                "status": status,
                "grade": result.grade if result else None,
                "expected_grade": result.expected_grade if result else None,
                "p0": probs[0],
                "p1": probs[1],
                "p2": probs[2],
                "p3": probs[3],
                "raw_answer": answer.text if answer else None,
                "error": "answer is not a grade 0-3" if status == "unparsed" else outcome.error,
                "from_cache": bool(answer and answer.from_cache),
                "latency_s": answer.latency_s if answer else None,
            }
        )
    return rows
