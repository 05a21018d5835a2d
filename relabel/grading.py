"""Teacher grading: render the grading prompt for a (query, document) pair and read the 0-3 grade."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from relabel.llm_client import LLMClient, cached_complete, ensure_cache
from relabel.prompts import PromptTemplate, load_prompt

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


def render_pair(
    prompt: PromptTemplate, query: str, doc: dict[str, Any], max_doc_chars: int, **extra: object
) -> list[dict[str, str]]:
    """Grading messages: fixed instructions, then the query, then the fenced document with its metadata."""
    text = str(doc["text"])
    if len(text) > max_doc_chars:
        text = text[:max_doc_chars].rsplit(" ", 1)[0] + " ..."
    text = text.replace("</document>", "</ document>")
    return prompt.render(
        query=query,
        title=doc.get("title", ""),
        author=doc.get("author", ""),
        path=doc.get("path", ""),
        modified=doc.get("modified", ""),
        doc_type=doc.get("doc_type", ""),
        text=text,
        **extra,
    )


def label_pairs(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    pairs: Iterable[dict[str, Any]],
    *,
    prompt_id: str = DEFAULT_GRADE_PROMPT,
    use_logprobs: bool = True,
    max_doc_chars: int = 1200,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Grade each pair (keys: qid, query_text, doc_id, title, author, path, modified, doc_type, text, pair_source).

    Every input pair yields one row: ``ok`` with a grade, ``unparsed`` with the raw answer, or ``failed``
    with the error. Pairs are sent sorted by query so a query's candidates share the cached prompt prefix.
    """
    prompt = load_prompt(prompt_id)
    ensure_cache(conn)
    labeler_id = f"teacher:{client.model}"
    rows: list[dict[str, Any]] = []
    for index, pair in enumerate(sorted(pairs, key=lambda p: (p["qid"], p["doc_id"]))):
        messages = render_pair(prompt, pair["query_text"], pair, max_doc_chars)
        row: dict[str, Any] = {
            "pair_source": pair["pair_source"],
            "qid": pair["qid"],
            "doc_id": pair["doc_id"],
            "labeler_id": labeler_id,
            "model": client.model,
            "prompt_id": prompt.prompt_id,
            "prompt_version": prompt.version,
        }
        try:
            answer = cached_complete(
                conn,
                client,
                prompt.prompt_id,
                prompt.version,
                messages,
                max_tokens=1 if use_logprobs else 4,
                logprobs=use_logprobs,
            )
        except duckdb.Error:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is recorded on its row, with its reason
            rows.append(
                {
                    **row,
                    "status": "failed",
                    "grade": None,
                    "expected_grade": None,
                    "p0": None,
                    "p1": None,
                    "p2": None,
                    "p3": None,
                    "raw_answer": None,
                    "error": f"{type(error).__name__}: {error}"[:500],
                    "from_cache": False,
                    "latency_s": None,
                }
            )
            continue
        result = parse_grade(answer.text, answer.top_logprobs)
        probs = result.probabilities or (None, None, None, None)
        rows.append(
            {
                **row,
                "status": result.status,
                "grade": result.grade,
                "expected_grade": result.expected_grade,
                "p0": probs[0],
                "p1": probs[1],
                "p2": probs[2],
                "p3": probs[3],
                "raw_answer": answer.text,
                "error": None if result.status == "ok" else "answer is not a grade 0-3",
                "from_cache": answer.from_cache,
                "latency_s": answer.latency_s,
            }
        )
        if progress is not None:
            progress(index + 1)
    return rows
