"""Synthetic enterprise queries: ask the LLM for one query per requested kind as JSON, parse strictly,
filter with recorded reasons (length, language, title or document copies, duplicates, near-duplicates)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any

import duckdb

from relabel.llm.client import LLMClient, ensure_cache
from relabel.llm.prompts import MAX_DOC_CHARS, PromptTemplate, load_prompt, render_pair
from relabel.llm.runner import CallPolicy, cached_complete
from relabel.synthesis.query_stats import ENGLISH_STOPWORDS, NEAR_DUPLICATE_JACCARD, NearDuplicateIndex, normalize

__all__ = ["normalize", "synthesize_queries", "reject_reason", "parse_queries", "QueryFilter"]

QUERY_PROMPT = "synthesize_queries"
QUERY_KINDS = ("keyword", "question", "metadata", "acronym", "partial_recall")
MAX_QUERY_WORDS = 16
MAX_QUERY_CHARS = 80  # also the schema's maxLength: a query that reaches it was cut off
MIN_QUERY_CHARS = 3
VERBATIM_WORDS = 8
TOKENS_PER_QUERY = 40
MAX_NON_ASCII_LETTER_SHARE = 0.3
# frequent function words of German, French, Spanish, Italian, Dutch and Scandinavian languages that are
# not also common in English queries (no "die", "per", "van", "la", "los", "de")
FOREIGN_STOPWORDS = frozenset(
    "der das und ist nicht mit für von auf eine einen wird sind auch les et est une des du pour avec dans sur pas "
    "qui sont las por para una del que como pero está che della sono anche het een niet zijn voor och att det som "
    "är ikke og".split()
)
_KEY = re.compile(rf"({'|'.join(QUERY_KINDS)})(?:_(\d+))?")


def requested_kinds(doc_id: str, n: int) -> list[str]:
    """The ``n`` query kinds asked for a document, in rotation from a start fixed by a hash of its id: the
    corpus covers every kind evenly and a document's request never changes when documents are added."""
    start = int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % len(QUERY_KINDS)
    return [QUERY_KINDS[(start + j) % len(QUERY_KINDS)] for j in range(n)]


def kind_keys(kinds: Sequence[str]) -> list[str]:
    """JSON keys of the answer: the kind, then ``kind_2``, ``kind_3`` ... when a kind repeats."""
    counts: Counter[str] = Counter()
    keys = []
    for kind in kinds:
        counts[kind] += 1
        keys.append(kind if counts[kind] == 1 else f"{kind}_{counts[kind]}")
    return keys


def response_schema(kinds: Sequence[str]) -> dict[str, Any]:
    """JSON schema of the answer, one string per requested kind in order (``response_format``; llama.cpp
    turns it into a grammar, so the embedded model cannot answer anything else)."""
    keys = kind_keys(kinds)
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "queries",
            "schema": {
                "type": "object",
                "properties": {key: {"type": "string", "maxLength": MAX_QUERY_CHARS} for key in keys},
                "required": keys,
                "additionalProperties": False,
            },
        },
    }


def parse_queries(text: str, expected_keys: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(kind, query) pairs of a JSON answer ``{"keyword": "...", "question": "...", ...}`` (a fenced block
    is accepted). Raises ``ValueError`` when it is not JSON, not a non-empty object, holds a key that is
    not a query kind (or not among ``expected_keys``) or a value that is not a string."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"answer is not JSON: {error.msg}") from error
    if not isinstance(data, dict) or not data:
        raise ValueError("answer JSON is not a non-empty object of kind -> query")
    pairs = []
    for key, value in data.items():
        match = _KEY.fullmatch(key)
        if match is None or (expected_keys is not None and key not in expected_keys):
            raise ValueError(f"answer JSON has an unexpected key {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"answer JSON value of {key!r} is not a string")
        pairs.append((match.group(1), value))
    return pairs


def prompt_examples(prompt: PromptTemplate) -> frozenset[str]:
    """Normalized example queries quoted in the prompt's instructions (two or more words)."""
    quoted = re.findall(r'"([^"{}:]+)"', prompt.system)
    return frozenset(normalize(q) for q in quoted if len(normalize(q).split()) >= 2)


def wrong_language(query: str) -> bool:
    """A cheap English test: mostly non-ASCII letters, or two or more foreign function words outnumbering
    English stopwords."""
    letters = [c for c in query if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) / len(letters) > MAX_NON_ASCII_LETTER_SHARE:
        return True
    words = normalize(query).split()
    foreign = sum(w in FOREIGN_STOPWORDS for w in words)
    english = sum(w in ENGLISH_STOPWORDS for w in words)
    return foreign >= 2 and foreign > english


def _content(words: list[str]) -> list[str]:
    return [w for w in words if w not in ENGLISH_STOPWORDS]


def metadata_values(doc: Mapping[str, Any]) -> frozenset[str]:
    """Normalized metadata a query must not merely copy: author, path, file name (with and without its
    extension), document type and modified date, each also prefixed by its field name ("author ...")."""
    fields = {key: doc.get(key) for key in ("author", "path", "doc_type", "modified")}
    path = fields["path"] if isinstance(fields["path"], str) else ""
    name = path.rsplit("/", 1)[-1]
    fields.update(file=name, file_stem=name.rsplit(".", 1)[0])
    values = set()
    for key, value in fields.items():
        if isinstance(value, str) and normalize(value):
            values |= {normalize(value), normalize(f"{key.replace('doc_', '')} {value}")}
    return frozenset(values)


def reject_reason(
    query: str,
    title: str,
    doc_text: str,
    seen: Container[str] | None = None,
    *,
    examples: frozenset[str] = frozenset(),
    metadata: frozenset[str] = frozenset(),
    language: str = "en",
) -> str | None:
    """Why a candidate query is unusable on its own, or ``None``. Checked in order: ``too_short`` (under
    ``MIN_QUERY_CHARS`` or only stopwords), ``too_long`` (over ``MAX_QUERY_WORDS`` words, or
    ``MAX_QUERY_CHARS`` characters or more: cut off), ``wrong_language`` (only for ``language="en"``),
    ``copies_title`` (equal to the title, also with stopwords dropped), ``copies_metadata`` (only a value
    of ``metadata``), ``copies_prompt_example``, ``verbatim_span`` (``VERBATIM_WORDS`` consecutive words
    of the document), ``duplicate`` (normalized form in ``seen``)."""
    norm = normalize(query)
    words = norm.split()
    if len(norm) < MIN_QUERY_CHARS or not _content(words):
        return "too_short"
    if len(words) > MAX_QUERY_WORDS or len(query.strip()) >= MAX_QUERY_CHARS:
        return "too_long"
    if language == "en" and wrong_language(query):
        return "wrong_language"
    title_words = normalize(title).split()
    if norm == " ".join(title_words) or (len(_content(words)) >= 2 and _content(words) == _content(title_words)):
        return "copies_title"
    if norm in metadata:
        return "copies_metadata"
    if norm in examples:
        return "copies_prompt_example"
    body = f" {normalize(doc_text)} "
    for start in range(len(words) - VERBATIM_WORDS + 1):
        if f" {' '.join(words[start : start + VERBATIM_WORDS])} " in body:
            return "verbatim_span"
    if seen is not None and norm in seen:
        return "duplicate"
    return None


class QueryFilter:
    """The filters of one synthesis run: per-query tests plus exact and near duplicates against every
    query accepted so far (the document's own and the rest of the corpus's)."""

    def __init__(
        self,
        *,
        examples: frozenset[str] = frozenset(),
        language: str = "en",
        near_duplicate_jaccard: float = NEAR_DUPLICATE_JACCARD,
    ) -> None:
        self.examples = examples
        self.language = language
        self.seen: dict[str, str] = {}
        self.near = NearDuplicateIndex(near_duplicate_jaccard)

    def check(self, query: str, doc: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(reason, detail)`` when the query is rejected, else ``None``."""
        title, text = (value if isinstance(value := doc.get(key), str) else "" for key in ("title", "text"))
        reason = reject_reason(
            query,
            title,
            text,
            self.seen,
            examples=self.examples,
            metadata=metadata_values(doc),
            language=self.language,
        )
        if reason == "duplicate":
            return reason, f"same as a query of {self.seen[normalize(query)]}"
        if reason:
            return reason, ""
        match = self.near.find(query)
        if match is not None:
            other_doc, other_query = match
            where = "this document" if other_doc == doc["doc_id"] else other_doc
            return "near_duplicate", f"of {other_query!r} ({where})"
        return None

    def accept(self, query: str, doc_id: str) -> None:
        """Remember an accepted query."""
        self.seen[normalize(query)] = doc_id
        self.near.add(query, (doc_id, query.strip()))


def query_id(doc_id: str, query: str) -> str:
    """Stable id of a synthetic query."""
    return "sq-" + hashlib.sha1(f"{doc_id}\x00{normalize(query)}".encode()).hexdigest()[:12]


def synthesize_queries(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    documents: list[dict[str, Any]],
    *,
    queries_per_doc: int,
    max_doc_chars: int = MAX_DOC_CHARS,
    language: str = "en",
    spare: int = 1,
    progress: Callable[[int], None] | None = None,
    policy: CallPolicy | None = None,
    existing: Iterable[tuple[str, str]] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accepted queries (with ``query_type``) and rejects (each with ``reason`` and ``detail``) for every
    document. The LLM is asked for ``queries_per_doc + spare`` queries of rotating kinds, so a rejected
    query need not leave a document short; valid queries beyond the quota are rejected as ``over_quota``.
    ``language="en"`` enables the wrong-language filter (any other value disables it). Every call obeys
    ``policy`` (retries, rate limits, budget): pass one ``CallPolicy.shared()`` for the whole run.
    ``existing`` ``(doc id, query)`` pairs are queries kept earlier (other batches): a new query that duplicates
    or nearly duplicates one of them is rejected too."""
    prompt = load_prompt(QUERY_PROMPT)
    ensure_cache(conn)
    query_filter = QueryFilter(examples=prompt_examples(prompt), language=language)
    for doc_id, text in existing:
        query_filter.accept(str(text), str(doc_id))
    accepted: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for index, doc in enumerate(sorted(documents, key=lambda d: d["doc_id"])):
        kinds = requested_kinds(doc["doc_id"], queries_per_doc + spare)
        messages = render_pair(prompt, "", doc, max_doc_chars, n=len(kinds), kinds=", ".join(kinds))
        base = {"doc_id": doc["doc_id"], "model": client.model, "prompt_version": prompt.version}
        try:
            answer = cached_complete(
                conn,
                client,
                prompt.prompt_id,
                prompt.version,
                messages,
                policy=policy,
                max_tokens=TOKENS_PER_QUERY * len(kinds) + 8,
                response_format=response_schema(kinds),
            )
            candidates = parse_queries(answer.text, kind_keys(kinds))
        except duckdb.Error:
            raise
        except Exception as error:  # noqa: BLE001 - recorded as a reject with its reason
            detail = f"{type(error).__name__}: {error}"[:500]
            rejects.append({**base, "query_type": None, "query_text": None, "reason": "no_queries", "detail": detail})
            continue
        kept = 0
        for kind, candidate in candidates:
            verdict = query_filter.check(candidate, doc)
            if verdict is None and kept >= queries_per_doc:
                verdict = ("over_quota", f"{queries_per_doc} queries kept already")
            if verdict is not None:
                reason, detail = verdict
                rejects.append(
                    {**base, "query_type": kind, "query_text": candidate, "reason": reason, "detail": detail}
                )
                continue
            query_filter.accept(candidate, doc["doc_id"])
            kept += 1
            accepted.append(
                {**base, "qid": query_id(doc["doc_id"], candidate), "query_type": kind, "query_text": candidate.strip()}
            )
        if progress is not None:
            progress(index + 1)
    return accepted, rejects
