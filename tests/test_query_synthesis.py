"""Query synthesis: strict JSON parsing, filters with reasons, quality statistics and the diversity check."""

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from relabel.corpus.documents import scan_directory
from relabel.llm.client import LLMClient
from relabel.llm.prompts import load_prompt
from relabel.synthesis.queries import (
    QUERY_KINDS,
    QUERY_PROMPT,
    kind_keys,
    metadata_values,
    parse_queries,
    prompt_examples,
    reject_reason,
    requested_kinds,
    response_schema,
    synthesize_queries,
)
from relabel.synthesis.query_stats import (
    NearDuplicateIndex,
    candidate_diversity,
    difficulty,
    diversity_outcome,
    query_set_stats,
    seed_retrieval_outcome,
)
from tests import scripted_llm

pytestmark = pytest.mark.unit

TEXT = "Install the GlobalProtect VPN client from the portal and sign in with Okta."


def _tiny_docs(tiny_corpus: Path) -> list[dict]:
    docs, _ = scan_directory(tiny_corpus)
    return [d.as_row() for d in docs]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("vp", "too_short"),
        ("word " * 17, "too_long"),
        ("x" * 80, "too_long"),  # reached the schema's maxLength: cut off
        ("where is it", "too_short"),  # only stopwords
        ("VPN setup on Windows", "copies_title"),
        ("vpn setup windows", "copies_title"),  # the title with its stopwords dropped
        ("vpn client: install the globalprotect vpn client from the portal and", "verbatim_span"),
        ("wie ist der vpn zugang für neue mitarbeiter", "wrong_language"),
        ("как настроить впн", "wrong_language"),
        ("parking permit renewal form", "copies_prompt_example"),
        ("globalprotect install guide", None),
        ("vpn setup windows 11", None),
        ("per diem los angeles office", None),  # English words shared with other languages are no evidence
    ],
)
def test_query_filters_give_reasons(query: str, reason: str | None) -> None:
    examples = prompt_examples(load_prompt(QUERY_PROMPT))
    assert reject_reason(query, "VPN setup on Windows", TEXT, set(), examples=examples) == reason


def test_bare_metadata_is_not_a_query() -> None:
    doc = {"author": "Dana Ops", "path": "it/vpn-windows.md", "doc_type": "runbook", "modified": "2025-03-14"}
    metadata = metadata_values(doc)
    for query in ("Author: Dana Ops", "dana ops", "it/vpn-windows.md", "vpn-windows", "runbook", "2025-03-14"):
        assert reject_reason(query, "t", TEXT, metadata=metadata) == "copies_metadata", query
    assert reject_reason("dana ops vpn runbook 2025", "t", TEXT, metadata=metadata) is None


def test_exact_duplicates_and_other_languages() -> None:
    assert reject_reason("GlobalProtect install guide!", "t", TEXT, {"globalprotect install guide"}) == "duplicate"
    assert reject_reason("wie ist der vpn zugang für neue mitarbeiter", "t", TEXT, language="de") is None


def test_prompt_examples_are_read_from_the_prompt() -> None:
    examples = prompt_examples(load_prompt(QUERY_PROMPT))
    assert "how do i book a meeting room" in examples and "keyword" not in examples


def test_answers_parse_strictly() -> None:
    assert parse_queries('```json\n{"keyword": "a b", "question": "how c"}\n```') == [
        ("keyword", "a b"),
        ("question", "how c"),
    ]
    assert parse_queries('{"keyword_2": "a b"}') == [("keyword", "a b")]
    bad = ['{"queries": ["a"]}', "keyword: a b", "{}", '["a b"]', '{"keyword": 1}', '{"keyword": ["a"]}']
    for answer in bad:
        with pytest.raises(ValueError):
            parse_queries(answer)
    with pytest.raises(ValueError, match="unexpected key 'question'"):
        parse_queries('{"keyword": "a b", "question": "c d"}', ["keyword", "acronym"])


def test_requested_kinds_rotate_and_schema_follows_them() -> None:
    kinds = requested_kinds("it/vpn.md", 7)
    assert kinds == requested_kinds("it/vpn.md", 7) and set(kinds) == set(QUERY_KINDS)
    assert kinds[:5] == [QUERY_KINDS[(QUERY_KINDS.index(kinds[0]) + j) % 5] for j in range(5)]
    assert kind_keys(kinds)[5:] == [f"{kinds[0]}_2", f"{kinds[1]}_2"]
    starts = {requested_kinds(f"doc-{i}", 1)[0] for i in range(40)}
    assert starts == set(QUERY_KINDS), "documents start at different kinds, so the corpus covers them all"
    schema = response_schema(["keyword", "question"])["json_schema"]["schema"]
    assert schema["required"] == ["keyword", "question"] and schema["additionalProperties"] is False


def test_near_duplicates_ignore_order_inflection_and_stopwords() -> None:
    index = NearDuplicateIndex()
    index.add("vpn setup windows", "a")
    assert index.find("Windows VPN set-up") is None  # "set up" is two words
    assert index.find("windows vpn setup") == "a"
    assert index.find("the vpn setups for windows") == "a"
    assert index.find("vpn setup mac") is None


def test_every_reject_has_a_reason(tiny_corpus: Path) -> None:
    scripted_llm.register()
    conn = duckdb.connect()
    docs = _tiny_docs(tiny_corpus)
    accepted, rejects = synthesize_queries(conn, LLMClient("scripted/noisy"), docs, queries_per_doc=5)
    assert rejects and all(r["reason"] for r in rejects)
    by_reason = {r["reason"] for r in rejects}
    expected = {"too_short", "copies_title", "wrong_language", "verbatim_span", "near_duplicate", "duplicate"}
    assert expected <= by_reason, by_reason
    assert all(r["detail"] for r in rejects if r["reason"] in ("near_duplicate", "duplicate"))
    assert len(accepted) + len(rejects) == 6 * len(docs)
    assert all(q["query_type"] in QUERY_KINDS for q in accepted + rejects)
    assert {q["query_text"] for q in accepted} <= {
        f"{d['title'].split()[0].lower()} guide for new starters" for d in docs
    }


def test_failed_answers_are_rejects_with_the_error(tiny_corpus: Path) -> None:
    scripted_llm.register()
    client = LLMClient("scripted/prose")
    accepted, rejects = synthesize_queries(duckdb.connect(), client, _tiny_docs(tiny_corpus)[:2], queries_per_doc=1)
    assert accepted == [] and [r["reason"] for r in rejects] == ["no_queries", "no_queries"]
    assert rejects[0]["detail"].startswith("ValueError: answer is not JSON")


def test_diversity_check_fails_on_a_collapsed_query_set(tiny_corpus: Path) -> None:
    scripted_llm.register()
    docs = _tiny_docs(tiny_corpus)
    conn = duckdb.connect()
    accepted, rejects = synthesize_queries(conn, LLMClient("scripted/collapsed"), docs, queries_per_doc=2)
    assert len(accepted) == 1, "the filters keep one copy of the generic query"
    generated = pd.DataFrame([*accepted, *rejects])[["doc_id", "query_text"]]
    outcome = diversity_outcome(generated)
    assert not outcome.passed
    assert outcome.details["collapsed_document_share"] == 1.0
    assert outcome.details["cross_document_near_duplicate_share"] == 1.0

    # one query per document: the per-document test is vacuous, the cross-document one still fails
    one_each = pd.DataFrame({"doc_id": [f"d{i}" for i in range(4)], "query_text": ["company policy document"] * 4})
    assert not diversity_outcome(one_each).passed

    good, good_rejects = synthesize_queries(conn, LLMClient("scripted/overlap"), docs, queries_per_doc=2)
    assert len(good) == 12 and good_rejects == []
    healthy = diversity_outcome(pd.DataFrame(good)[["doc_id", "query_text"]])
    assert healthy.passed, healthy.description
    assert not diversity_outcome(pd.DataFrame(columns=["doc_id", "query_text"])).passed


def test_collapse_within_one_document() -> None:
    rows = [
        {"doc_id": "a", "query_text": "vpn setup windows"},
        {"doc_id": "a", "query_text": "windows vpn setup"},
        {"doc_id": "a", "query_text": "setup vpn on windows"},
        {"doc_id": "a", "query_text": "who owns the vpn"},
        {"doc_id": "b", "query_text": "parental leave weeks"},
        {"doc_id": "b", "query_text": "how long is maternity leave"},
    ]
    stats = candidate_diversity(rows)
    assert stats["collapsed_documents"] == 1 and stats["collapsed_examples"] == ["a"]
    assert stats["collapsed_document_share"] == 0.5 and stats["cross_document_near_duplicate_share"] == 0.0
    assert diversity_outcome(pd.DataFrame(rows)).passed  # one of two documents: at the limit, not above
    assert not diversity_outcome(pd.DataFrame(rows[:4])).passed


def test_query_set_statistics() -> None:
    queries = [
        {"doc_id": "a", "query_type": "keyword", "query_text": "vpn setup windows"},
        {"doc_id": "a", "query_type": "question", "query_text": "how do i set up vpn"},
        {"doc_id": "b", "query_type": "keyword", "query_text": "windows vpn setup"},
    ]
    stats = query_set_stats(queries)
    assert stats["queries"] == 3 and stats["documents"] == 2
    assert stats["types"] == {"keyword": 2, "question": 1}
    assert stats["distinct_1"] == pytest.approx(8 / 12, abs=1e-4)  # 8 distinct of 12 words
    assert stats["distinct_2"] == pytest.approx(8 / 9, abs=1e-4)  # "vpn setup" twice among 9 bigrams
    assert stats["near_duplicate_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["length"]["words_min"] == 3 and stats["length"]["words_max"] == 6
    assert stats["length"]["histogram"] == {"1-2": 0, "3-4": 2, "5-8": 1, "9+": 0}


def test_difficulty_and_seed_retrieval_check() -> None:
    stats = difficulty([1, 1, 5, 50, 500, None])
    assert stats["seed_rank_1"] == pytest.approx(2 / 6, abs=1e-4)
    assert stats["seed_top_10"] == 0.5 and stats["seed_top_100"] == pytest.approx(4 / 6, abs=1e-4)
    assert stats["seed_not_retrieved"] == pytest.approx(1 / 6, abs=1e-4)
    assert seed_retrieval_outcome(pd.DataFrame({"bm25_rank": [1, 3, None]})).passed
    assert not seed_retrieval_outcome(pd.DataFrame({"bm25_rank": [None, None, 200.0]})).passed
