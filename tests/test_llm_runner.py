"""The call engine: faults, budget, rate limits, concurrency, cache invalidation and resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from relabel.grading import label_pairs
from relabel.llm_client import LLMClient
from relabel.llm_runner import CallPolicy, _RateLimiter
from tests import fault_llm, scripted_llm

REPO = Path(__file__).resolve().parents[1]
FAST = CallPolicy(max_attempts=4, backoff_initial_s=0.0, backoff_max_s=0.0)


def make_pairs(n: int, source: str = "pool") -> list[dict]:
    return [{"pair_source": source, "qid": f"q{i // 4}", "query_text": f"query number {i // 4} vpn",
             "doc_id": f"d{i}", "title": f"Doc {i}", "author": "A", "path": f"p/{i}.md", "modified": "2025-01-01",
             "doc_type": "faq", "text": f"Document {i} about the vpn and other things."} for i in range(n)]


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
    rows = label_pairs(conn, PricedClient("scripted/overlap"), pairs, use_logprobs=False,
                       policy=CallPolicy(budget_usd=2.0))
    statuses = [r["status"] for r in rows]
    assert statuses.count("ok") == 4 and statuses.count("skipped_budget") == 6
    assert conn.execute("select sum(cost_usd) from llm_calls").fetchall()[0][0] == pytest.approx(2.0)
    rows = label_pairs(conn, PricedClient("scripted/overlap"), pairs, use_logprobs=False,
                       policy=CallPolicy(budget_usd=10.0))
    assert [r["status"] for r in rows] == ["ok"] * 10
    assert len(scripted_llm.calls) == 10, "the 4 pairs answered before the budget stop are not paid twice"


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
        rows = label_pairs(duckdb.connect(), LLMClient("faulty/0.0"), make_pairs(12), use_logprobs=False,
                           policy=CallPolicy(max_concurrency=3))
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
from tests.test_llm_runner import make_pairs
from relabel.grading import label_pairs
from relabel.llm_client import LLMClient
from relabel.llm_runner import CallPolicy
fault_llm.register()
fault_llm.delay_s = 0.05
conn = duckdb.connect(sys.argv[1])
rows = label_pairs(conn, LLMClient("faulty/0.0"), make_pairs(40), use_logprobs=False, policy=CallPolicy(),
                   progress=lambda n: print(n, flush=True))
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
        repeated = conn.execute("select count(*) from (select item_id from llm_calls group by 1 having count(*) > 1)"
                                ).fetchall()[0][0]
    assert labels == (40, 40)
    assert calls_after - calls_before == 40 - answered_before, "only unanswered pairs are called again"
    assert repeated == 0
