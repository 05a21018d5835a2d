"""Synthetic enterprise queries: ask the LLM for JSON, parse strictly, filter with recorded reasons."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import duckdb

from relabel.grading import render_pair
from relabel.llm_client import LLMClient, cached_complete, ensure_cache
from relabel.prompts import load_prompt

QUERY_PROMPT = "synthesize_queries"
MAX_QUERY_WORDS = 16
MAX_QUERY_CHARS = 100
MIN_QUERY_CHARS = 3
VERBATIM_WORDS = 8


def normalize(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced form used for duplicate and copy tests."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def response_schema(n: int) -> dict[str, Any]:
    """JSON schema for the answer (used as ``response_format`` where the provider supports it)."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "queries",
            "schema": {
                "type": "object",
                "properties": {
                    "queries": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": MAX_QUERY_CHARS},
                        "minItems": 1,
                        "maxItems": n,
                    },
                },
                "required": ["queries"],
            },
        },
    }


def parse_queries(text: str) -> list[str]:
    """The ``queries`` list of a JSON answer (a fenced block is accepted); raises ``ValueError`` otherwise."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"answer is not JSON: {error.msg}") from error
    queries = data.get("queries") if isinstance(data, dict) else None
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise ValueError("answer JSON has no 'queries' list of strings")
    return queries


def reject_reason(query: str, title: str, doc_text: str, seen: set[str]) -> str | None:
    """Why a candidate query is unusable, or ``None`` when it is kept."""
    norm = normalize(query)
    words = norm.split()
    if len(norm) < MIN_QUERY_CHARS:
        return "too_short"
    if len(words) > MAX_QUERY_WORDS or len(query) > MAX_QUERY_CHARS:
        return "too_long"
    if norm in seen:
        return "duplicate"
    if norm == normalize(title):
        return "copies_title"
    body = f" {normalize(doc_text)} "
    for start in range(len(words) - VERBATIM_WORDS + 1):
        if f" {' '.join(words[start : start + VERBATIM_WORDS])} " in body:
            return "verbatim_span"
    return None


def query_id(doc_id: str, query: str) -> str:
    """Stable id of a synthetic query."""
    return "sq-" + hashlib.sha1(f"{doc_id}\x00{normalize(query)}".encode()).hexdigest()[:12]


def synthesize_queries(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    documents: list[dict[str, Any]],
    *,
    queries_per_doc: int,
    max_doc_chars: int = 1200,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accepted queries and rejects (each with its reason) for every document. The LLM is asked for one
    spare candidate, so a rejected query does not leave a document short."""
    prompt = load_prompt(QUERY_PROMPT)
    ensure_cache(conn)
    accepted: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, doc in enumerate(sorted(documents, key=lambda d: d["doc_id"])):
        asked = queries_per_doc + 1
        messages = render_pair(prompt, "", doc, max_doc_chars, n=asked)
        base = {"doc_id": doc["doc_id"], "model": client.model, "prompt_version": prompt.version}
        try:
            answer = cached_complete(
                conn,
                client,
                prompt.prompt_id,
                prompt.version,
                messages,
                max_tokens=40 * asked,
                response_format=response_schema(asked),
            )
            candidates = parse_queries(answer.text)
        except duckdb.Error:
            raise
        except Exception as error:  # noqa: BLE001 - recorded as a reject with its reason
            rejects.append({**base, "query_text": None, "reason": f"no_queries: {type(error).__name__}: {error}"[:500]})
            continue
        kept = 0
        for candidate in candidates:
            reason = (
                "over_quota" if kept >= queries_per_doc else reject_reason(candidate, doc["title"], doc["text"], seen)
            )
            if reason:
                rejects.append({**base, "query_text": candidate, "reason": reason})
                continue
            seen.add(normalize(candidate))
            kept += 1
            accepted.append({**base, "qid": query_id(doc["doc_id"], candidate), "query_text": candidate.strip()})
        if progress is not None:
            progress(index + 1)
    return accepted, rejects
