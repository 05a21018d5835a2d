"""The call engine: faults, budget, rate limits, concurrency, cache invalidation and resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from relabel.llm.client import LLMClient
from relabel.llm.runner import CallPolicy, _RateLimiter
from relabel.teacher.grading import label_pairs
from tests import fault_llm, scripted_llm
from tests.robustness_scenarios import budget_scenario, make_pairs

REPO = Path(__file__).resolve().parents[1]
FAST = CallPolicy(max_attempts=4, backoff_initial_s=0.0, backoff_max_s=0.0)


@pytest.mark.unit
def test_thirty_percent_faults_every_pair_labeled_or_failed_with_reason() -> None:
    fault_llm.register()
    fault_llm.attempts.clear()
    conn = duckdb.connect()
    rows = label_pairs(conn, LLMClient("faulty/0.3"), make_pairs(80), use_logprobs=False, policy=FAST)
    assert len(rows) == 80 and len({(r["qid"], r["doc_id"]) for r in rows}) == 80
    statuses = {r["status"] for r in rows}
    assert statuses <= {"ok", "unparsed", "failed"} and "ok" in statuses
    for row in rows:
        assert (row["grade"] is not None) == (row["status"] == "ok")
        assert row["status"] == "ok" or row["error"]
    log = dict(conn.execute("select status, count(*) from llm_calls group by 1").fetchall())
    assert log.get("error", 0) > 0, "injected errors are logged as attempts"
    assert sum(log.values()) == sum(fault_llm.attempts.values()), "one call-log row per attempt"
    ok_answers = conn.execute("select count(*) from llm_cache").fetchall()[0][0]
    assert ok_answers == sum(r["status"] in ("ok", "unparsed") for r in rows)


class PricedClient(LLMClient):
    """Every call costs half a dollar."""

    def cost(self, response, latency_s):  # noqa: ANN001, ANN201
        return 0.5


@pytest.mark.unit
def test_budget_stops_cleanly_and_a_bigger_budget_resumes() -> None:
    scripted_llm.register()
    scripted_llm.calls.clear()
    conn = duckdb.connect()
    pairs = make_pairs(10)
    rows = label_pairs(
        conn, PricedClient("scripted/overlap"), pairs, use_logprobs=False, policy=CallPolicy(budget_usd=2.0)
    )
    statuses = [r["status"] for r in rows]
    assert statuses.count("ok") == 4 and statuses.count("skipped_budget") == 6
    assert conn.execute("select sum(cost_usd) from llm_calls").fetchall()[0][0] == pytest.approx(2.0)
    rows = label_pairs(
        conn, PricedClient("scripted/overlap"), pairs, use_logprobs=False, policy=CallPolicy(budget_usd=10.0)
    )
    assert [r["status"] for r in rows] == ["ok"] * 10
    assert len(scripted_llm.calls) == 10, "the 4 pairs answered before the budget stop are not paid twice"


class ReservingClient(PricedClient):
    """Every call costs half a dollar and says so before it is sent."""

    def max_cost_usd(self, messages, max_tokens):  # noqa: ANN001, ANN201
        return 0.5


@pytest.mark.unit
def test_calls_in_flight_cannot_overshoot_the_budget() -> None:
    scripted_llm.register()
    scripted_llm.calls.clear()
    conn = duckdb.connect()
    policy = CallPolicy(budget_usd=1.75, max_concurrency=4)  # four in flight would spend 2.0
    rows = label_pairs(conn, ReservingClient("scripted/overlap"), make_pairs(10), use_logprobs=False, policy=policy)
    statuses = [r["status"] for r in rows]
    assert statuses.count("ok") == 3 and statuses.count("skipped_budget") == 7
    assert len(scripted_llm.calls) == 3, "an attempt whose maximum cost does not fit is never sent"
    assert conn.execute("select sum(cost_usd) from llm_calls").fetchall()[0][0] == pytest.approx(1.5)
    assert all("budget of $1.75" in r["error"] for r in rows if r["status"] == "skipped_budget")


@pytest.mark.unit
def test_query_writing_and_grading_draw_on_one_budget(tiny_corpus: Path) -> None:
    from relabel.corpus.documents import scan_directory
    from relabel.synthesis.queries import synthesize_queries

    scripted_llm.register()
    scripted_llm.calls.clear()
    conn = duckdb.connect()
    policy = CallPolicy(budget_usd=1.0).shared()
    docs = [d.as_row() for d in scan_directory(tiny_corpus)[0]]
    client = ReservingClient("scripted/overlap")
    accepted, rejects = synthesize_queries(conn, client, docs, queries_per_doc=1, policy=policy)
    assert len(scripted_llm.calls) == 2, "query writing stops at the budget like grading"
    assert len({q["doc_id"] for q in accepted}) <= 2
    budget_rejects = [r for r in rejects if r["reason"] == "no_queries"]
    assert len(budget_rejects) == len(docs) - 2 and all("budget of $1.00" in r["detail"] for r in budget_rejects)
    rows = label_pairs(conn, client, make_pairs(3), use_logprobs=False, policy=policy)
    assert [r["status"] for r in rows] == ["skipped_budget"] * 3, "grading finds the budget spent by query writing"
    assert policy.budget is not None and policy.budget.spent_usd == pytest.approx(1.0)
    assert policy.budget.reserved_usd == pytest.approx(0.0)


@pytest.mark.unit
def test_the_budget_scenario_spends_at_most_the_budget_with_calls_in_flight() -> None:
    """The benchmark's row (``bench/robustness_bench.py``) at CI size: query writing and grading, 4 calls in
    flight, prices that vary after a $0.50 reservation; every item is answered or refused with the budget."""
    outcome = budget_scenario(documents=6, pairs=20, budget_usd=4.0, concurrency=4)
    assert outcome.tried == 26 and outcome.lost == 0 and outcome.duplicated == 0 and outcome.no_reason == 0
    assert outcome.ingested > 0 and outcome.quarantined > 0, "the budget ran out part-way"
    assert outcome.ingested + outcome.quarantined == 26
    assert outcome.violations == 0 and 0 < outcome.notes["spent_usd"] <= 4.0
    assert outcome.notes["reserved_after_usd"] == pytest.approx(0.0), "every reservation was settled"


@pytest.mark.unit
def test_maximum_cost_of_a_call() -> None:
    import litellm

    messages = [{"role": "user", "content": "grade this pair ü"}]
    priced = LLMClient("gpt-4o").max_cost_usd(messages, 100)
    prompt_tokens = len("grade this pair ü".encode()) + 8
    prompt, completion = litellm.cost_per_token(model="gpt-4o", prompt_tokens=prompt_tokens, completion_tokens=100)
    assert priced == pytest.approx(prompt + completion) and priced > 0
    local = LLMClient("scripted/overlap", timeout_s=60, hourly_rate_usd=0.36)
    assert local.max_cost_usd(messages, 100) == pytest.approx(60 * 0.36 / 3600)


@pytest.mark.unit
def test_token_rate_limit_blocks_until_the_window_has_room() -> None:
    limiter = _RateLimiter(requests_per_minute=None, tokens_per_minute=300)
    for _ in range(3):
        limiter.acquire(100)
    fourth = threading.Thread(target=limiter.acquire, args=(100,), daemon=True)
    fourth.start()
    fourth.join(timeout=0.5)
    assert fourth.is_alive(), "a fourth 100-token request must wait for the minute window"


@pytest.mark.unit
def test_concurrency_is_bounded() -> None:
    fault_llm.register()
    fault_llm.delay_s = 0.05
    in_flight, peak = [0], [0]
    lock = threading.Lock()
    original = LLMClient.complete

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN202
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    LLMClient.complete = counting
    try:
        rows = label_pairs(
            duckdb.connect(),
            LLMClient("faulty/0.0"),
            make_pairs(12),
            use_logprobs=False,
            policy=CallPolicy(max_concurrency=3),
        )
    finally:
        LLMClient.complete = original
        fault_llm.delay_s = 0.0
    assert [r["status"] for r in rows] == ["ok"] * 12
    assert 2 <= peak[0] <= 3


@pytest.mark.unit
def test_changing_model_prompt_or_input_invalidates_exactly_the_affected_rows() -> None:
    scripted_llm.register()
    conn = duckdb.connect()
    pairs = make_pairs(6)

    def calls_for(client: LLMClient, batch: list[dict], **kwargs) -> int:  # noqa: ANN003
        scripted_llm.calls.clear()
        label_pairs(conn, client, batch, use_logprobs=False, **kwargs)
        return len(scripted_llm.calls)

    assert calls_for(LLMClient("scripted/overlap"), pairs) == 6
    assert calls_for(LLMClient("scripted/overlap"), pairs) == 0
    # a new model re-asks every row; its invalid answers are retried once each
    assert calls_for(LLMClient("scripted/garbage"), pairs) == 6 * 2
    edited = [*pairs[:5], {**pairs[5], "text": "A rewritten document."}]
    assert calls_for(LLMClient("scripted/overlap"), edited) == 1
    assert calls_for(LLMClient("scripted/overlap"), pairs, prompt_id="grade_one_digit") == 6


RESUME_SCRIPT = """
import sys, duckdb
sys.path.insert(0, {repo!r})
from tests import fault_llm
from tests.robustness_scenarios import make_pairs
from relabel.teacher.grading import label_pairs
from relabel.llm.client import LLMClient
from relabel.llm.runner import CallPolicy
fault_llm.register()
fault_llm.delay_s = 0.05
conn = duckdb.connect(sys.argv[1])
rows = label_pairs(conn, LLMClient("faulty/0.0"), make_pairs(40), use_logprobs=False, policy=CallPolicy(),
                   progress=lambda n, total: print(n, flush=True))
conn.execute("create or replace table labels as select * from (values " +
             ",".join(f"('{{r['qid']}}', '{{r['doc_id']}}', {{r['grade']}})" for r in rows) + ") t(qid, doc_id, grade)")
print("done", flush=True)
"""


@pytest.mark.integration
def test_sigkill_midway_then_restart_finishes_without_repeating_answered_calls(tmp_path: Path) -> None:
    script = tmp_path / "label.py"
    script.write_text(RESUME_SCRIPT.format(repo=str(REPO)))
    db = str(tmp_path / "w.duckdb")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    child = subprocess.Popen([sys.executable, str(script), db], stdout=subprocess.PIPE, text=True, env=env)
    for line in child.stdout:
        if line.strip() == "15":
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    with duckdb.connect(db) as conn:
        answered_before = conn.execute("select count(*) from llm_cache").fetchall()[0][0]
        calls_before = conn.execute("select count(*) from llm_calls").fetchall()[0][0]
    assert 15 <= answered_before < 40
    finished = subprocess.run([sys.executable, str(script), db], capture_output=True, text=True, env=env, timeout=300)
    assert "done" in finished.stdout, finished.stderr[-2000:]
    with duckdb.connect(db) as conn:
        labels = conn.execute("select count(*), count(distinct (qid, doc_id)) from labels").fetchall()[0]
        calls_after = conn.execute("select count(*) from llm_calls").fetchall()[0][0]
        repeated = conn.execute(
            "select count(*) from (select item_id from llm_calls group by 1 having count(*) > 1)"
        ).fetchall()[0][0]
    assert labels == (40, 40)
    assert calls_after - calls_before == 40 - answered_before, "only unanswered pairs are called again"
    assert repeated == 0
