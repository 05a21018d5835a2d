"""Teacher answer parsing and labeling: logprobs, strict text, unparsed and failed rows."""

import math
import os

import duckdb
import pytest

from relabel.llm.client import LLMClient
from relabel.llm.prompts import load_prompt, parse_template, render_pair
from relabel.llm.runner import CallRequest, prefix_order_key
from relabel.teacher.grading import grade_from_logprobs, grade_from_text, label_pairs, parse_grade
from tests import scripted_llm

pytestmark = pytest.mark.unit

PAIR = {
    "pair_source": "pool",
    "qid": "q1",
    "query_text": "vpn setup windows",
    "doc_id": "d1",
    "title": "VPN setup",
    "author": "Dana",
    "path": "it/vpn.md",
    "modified": "2025-01-01",
    "doc_type": "runbook",
    "text": "Install GlobalProtect VPN on Windows and sign in.",
}


def test_expected_grade_from_grade_token_logprobs() -> None:
    top = {"3": math.log(0.5), " 2": math.log(0.3), "1": math.log(0.1), "0": math.log(0.1), "The": math.log(0.4)}
    result = grade_from_logprobs(top)
    assert result is not None and result.grade == 3
    assert result.expected_grade == pytest.approx(3 * 0.5 + 2 * 0.3 + 0.1)
    assert sum(result.probabilities) == pytest.approx(1.0)
    assert grade_from_logprobs({"The": -0.1, "A": -2.0}) is None


@pytest.mark.parametrize(("text", "grade"), [("3", 3), (" 0\n", 0), ("Grade: 2", 2), ("1.", 1)])
def test_strict_text_answers(text: str, grade: int) -> None:
    assert grade_from_text(text).grade == grade


@pytest.mark.parametrize("text", ["", "4", "I would say 2 or 3", "relevant", "23"])
def test_unparseable_answers_are_never_grades(text: str) -> None:
    result = parse_grade(text, None)
    assert result.status == "unparsed" and result.grade is None


def test_document_is_fenced_and_truncated() -> None:
    messages = render_pair(load_prompt("grade_nist"), "q", {**PAIR, "text": "x </document> " + "word " * 500}, 100)
    user = messages[1]["content"]
    assert user.count("</document>") == 1 and "</ document>" in user
    assert len(user) < 600 and user.index("</document>") < user.index("Query:")


def test_prefix_order_sends_a_documents_pairs_back_to_back_sharing_the_whole_document() -> None:
    """The document comes before the query, so sorting calls by their messages puts a document's pairs next to
    each other and their common prefix holds the rubric and the whole document (what a KV cache can skip)."""
    prompt = load_prompt("grade_nist")
    pairs = [
        {**PAIR, "doc_id": doc_id, "text": f"{PAIR['text']} {doc_id}", "query_text": query}
        for query in ("vpn setup windows", "who signs travel expenses", "printer on floor 3")
        for doc_id in ("d1", "d2")
    ]
    requests = [
        CallRequest(
            f"{p['query_text']}|{p['doc_id']}",
            render_pair(prompt, p["query_text"], p, 500),
            {},
            prompt.prompt_id,
            prompt.version,
        )
        for p in pairs
    ]
    ordered = sorted(requests, key=prefix_order_key)
    assert [r.item_id.split("|")[1] for r in ordered] == ["d1"] * 3 + ["d2"] * 3
    first, second = (r.messages[1]["content"] for r in ordered[:2])
    shared = os.path.commonprefix([first, second])
    assert shared.endswith("Query: ") and "</document>" in shared and f"{PAIR['text']} d1" in shared


def test_prompt_version_follows_content() -> None:
    a = parse_template("p", "### system\nA\n### user\n$query")
    b = parse_template("p", "### system\nB\n### user\n$query")
    assert a.version != b.version and a.render(query="x")[1]["content"] == "x"
    with pytest.raises(ValueError):
        parse_template("p", "no sections")


@pytest.mark.parametrize(
    ("model", "status", "error"),
    [
        ("scripted/overlap", "ok", None),
        ("scripted/garbage", "unparsed", "answer is not a grade 0-3"),
        ("scripted/broken", "failed", "scripted outage"),
    ],
)
def test_every_pair_yields_a_row_with_its_status(model: str, status: str, error: str | None) -> None:
    scripted_llm.register()
    conn = duckdb.connect()
    rows = label_pairs(conn, LLMClient(model), [PAIR], use_logprobs=False)
    assert len(rows) == 1 and rows[0]["status"] == status
    if status == "ok":
        assert rows[0]["grade"] == 3  # "vpn", "setup", "windows" all occur in the document
    else:
        assert rows[0]["grade"] is None and error in rows[0]["error"]
    cached = conn.execute("select count(*) from llm_cache").fetchall()[0][0]
    assert cached == (0 if status == "failed" else 1), "failed calls are not cached, so a re-run retries them"
