"""Pure logic of issue 19: which queries a changed or deleted document retires, how the baseline is re-imported,
the rebuild guard, the near-duplicate check, recorded teachers found by file name, and dagster.yaml upgrades."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from relabel import retrieval
from relabel.cli import DAGSTER_YAML, OLD_DAGSTER_YAMLS, ensure_dagster_yaml
from relabel.incremental import label_store, rules
from relabel.synthesis.query_stats import near_duplicate_free
from relabel.teacher.votes import recorded_doc_id, recorded_teacher_rows

OLD = {"doc_id": "it/vpn.md", "title": "VPN setup on Windows", "text": "Install the GlobalProtect client, sign in."}
QUERIES = [
    {"qid": "q1", "query_text": "globalprotect vpn windows"},
    {"qid": "q2", "query_text": "how to sign in"},
]


@pytest.mark.unit
def test_a_deleted_document_retires_every_query_and_a_changed_one_those_it_no_longer_covers() -> None:
    deleted = rules.queries_to_retire(QUERIES, "deleted", OLD, None)
    assert [(r["qid"], r["reason"]) for r in deleted] == [("q1", "document_deleted"), ("q2", "document_deleted")]
    # same topic, reworded: every query still fits
    reworded = {**OLD, "text": "Windows laptops sign in to the GlobalProtect VPN with Okta."}
    assert rules.queries_to_retire(QUERIES, "changed", OLD, reworded) == []
    # the page now covers something else: the VPN query no longer fits, the sign-in one still does
    other = {**OLD, "title": "Badge policy", "text": "Sign in at reception to get a badge."}
    retired = rules.queries_to_retire(QUERIES, "changed", OLD, other)
    assert [(r["qid"], r["reason"]) for r in retired] == [("q1", "no_longer_fits")]
    assert "covers 0.00" in retired[0]["detail"]
    # a query the old version did not cover either is not the change's fault
    assert rules.queries_to_retire([{"qid": "q3", "query_text": "kafka lag"}], "changed", OLD, other) == []
    assert rules.queries_to_retire(QUERIES, "new", None, OLD) == []


def _label(qid: str, kind: str, grade: int, labeler: str = "x") -> dict:
    return {
        "qid": qid,
        "doc_id": "d",
        "content_hash": "h",
        "labeler_kind": kind,
        "labeler_id": labeler,
        "labeler_version": "v",
        "grade": grade,
    }


@pytest.mark.unit
def test_reimport_keeps_identical_labels_replaces_different_ones_and_retires_what_the_baseline_lacks() -> None:
    baseline = [
        _label("q1", "student", 1),
        _label("q1", "teacher", 3),
        _label("q2", "student", 2),
        _label("q3", "teacher", 0),
    ]
    current = {
        ("q1", "d", "h"): rules.label_signature(_label("q1", "teacher", 3)),  # same: kept
        ("q2", "d", "h"): rules.label_signature(_label("q2", "teacher", 1)),  # differs: replaced
        ("q9", "d", "h"): rules.label_signature(_label("q9", "teacher", 1)),  # not in the baseline: retired
    }
    plan = rules.plan_label_reimport(current, baseline)
    assert plan.kept == 1
    assert [(r["qid"], r["labeler_kind"], r["grade"]) for r in plan.insert] == [
        ("q2", "student", 2),
        ("q3", "teacher", 0),
    ]
    assert plan.retire == [("q2", "d", "h"), ("q9", "d", "h")]
    applied = {
        **{k: v for k, v in current.items() if k not in plan.retire},
        **{rules.pair_key(r): rules.label_signature(r) for r in plan.insert},
    }
    again = rules.plan_label_reimport(applied, baseline)
    assert (again.insert, again.retire, again.kept) == ([], [], 3), "re-importing the same baseline changes nothing"


@pytest.mark.unit
def test_a_full_rebuild_after_inbox_batches_is_refused_unless_a_rebootstrap_is_asked_for() -> None:
    conn = duckdb.connect()
    now = pd.Timestamp("2026-11-29 10:00")
    assert label_store.guard_full_rebuild(conn, False, "seed_corpus", now) is None, (
        "no incremental tables: nothing to guard"
    )
    label_store.ensure_tables(conn)
    assert label_store.guard_full_rebuild(conn, False, "seed_corpus", now) is None, "no inbox batch yet"
    conn.execute("insert into inbox_batches (batch_id, sequence) values ('b000001-abc', 1)")
    with pytest.raises(RuntimeError, match=r"1 inbox batches \(latest b000001-abc\).*RELABEL_REBOOTSTRAP=1"):
        label_store.guard_full_rebuild(conn, False, "seed_corpus", now)
    assert label_store.pending_rebootstrap(conn) is None
    pending = label_store.guard_full_rebuild(conn, True, "seed_corpus", now)
    assert pending and pending.startswith("baseline-") and label_store.pending_rebootstrap(conn) == pending
    # the rest of the same relabel_job run goes on under the pending re-bootstrap, even without the setting
    assert label_store.guard_full_rebuild(conn, False, "teacher_labels", now) == pending


@pytest.mark.unit
def test_near_duplicate_check_uses_the_synthesis_rule() -> None:
    ok = near_duplicate_free(pd.DataFrame({"query_text": ["vpn setup windows", "parental leave weeks"]}))
    assert ok.passed and ok.details["near_duplicate_pairs"] == 0
    bad = near_duplicate_free(pd.DataFrame({"query_text": ["vpn setup windows", "Setup of the Windows VPN", "leave"]}))
    assert not bad.passed and bad.details["examples"] == [["vpn setup windows", "Setup of the Windows VPN"]]


@pytest.mark.unit
def test_recorded_runs_find_inbox_and_corpus_documents_by_file_name(tmp_path: Path) -> None:
    assert recorded_doc_id("inbox/stream/8412.txt") == "8412"
    assert recorded_doc_id("staging/crm/note-7.md") == "note-7"
    run = tmp_path / "umbrela.txt"
    run.write_text("q1 0 8412 3\nq1 0 inbox/exact.md 1\n")
    pairs = [{"pair_source": "pool", "qid": "q1", "doc_id": d} for d in ("inbox/8412.txt", "inbox/exact.md", "x.md")]
    rows = recorded_teacher_rows(pairs, run)
    assert [(r["status"], r["grade"]) for r in rows] == [("ok", 3), ("ok", 1), ("failed", None)]


@pytest.mark.unit
def test_an_old_dagster_yaml_is_upgraded_and_a_hand_edited_one_without_the_limits_is_warned_about(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert ensure_dagster_yaml(fresh) is None and (fresh / "dagster.yaml").read_text() == DAGSTER_YAML
    old = tmp_path / "old"
    old.mkdir()
    (old / "dagster.yaml").write_text(OLD_DAGSTER_YAMLS[0])
    assert ensure_dagster_yaml(old) is None
    assert (old / "dagster.yaml").read_text() == DAGSTER_YAML
    assert (old / "dagster.yaml.old").read_text() == OLD_DAGSTER_YAMLS[0]
    edited = tmp_path / "edited"
    edited.mkdir()
    text = "concurrency:\n  pools:\n    default_limit: 1\nrun_monitoring:\n  enabled: true\n"
    (edited / "dagster.yaml").write_text(text)
    warning = ensure_dagster_yaml(edited)
    assert (
        warning
        and "relabel/queue=inbox_batches limit 1" in warning
        and "default_limit" not in warning.split("Merge")[0]
    )
    assert (edited / "dagster.yaml").read_text() == text, "a hand-edited file is never overwritten"
    complete = DAGSTER_YAML + "run_monitoring:\n  enabled: true\n"
    (edited / "dagster.yaml").write_text(complete)
    assert ensure_dagster_yaml(edited) is None and (edited / "dagster.yaml").read_text() == complete


@pytest.mark.unit
def test_reretrieval_with_the_stored_top_k_bound_finds_exactly_what_a_full_search_finds() -> None:
    import random

    rng = random.Random(7)
    words = [f"w{i}" for i in range(60)]
    docs = [
        {"doc_id": f"d{i:03d}", "content_hash": f"h{i}", "title": "", "text": " ".join(rng.choices(words, k=30))}
        for i in range(240)
    ]
    queries = [(f"q{i}", " ".join(rng.sample(words, 3))) for i in range(150)]
    k = 5
    old_index, tokens, _ = retrieval.build_bm25(docs[:200])
    stored = retrieval.top_k_of(old_index, queries, k)
    new = docs[200:]
    new_index, _, _ = retrieval.build_bm25(docs, tokens)
    new_docs = {d["doc_id"]: d["content_hash"] for d in new}
    new_tokens = [[t] for t in retrieval.tokenize([d["text"] for d in new])]
    found = retrieval.reretrieve(new_index, queries, new_docs, new_tokens, stored, k)
    expected = retrieval.entering_pairs(new_index.search([t for _, t in queries], k), [q for q, _ in queries], new_docs)
    key = lambda r: (r["qid"], r["doc_id"], r["bm25_rank"])  # noqa: E731
    assert sorted(map(key, found.entering)) == sorted(map(key, expected)) and expected
    assert found.ruled_out > 0 and found.searched < found.scored, "the bound spares full searches"
    assert all(found.top_k[q] == [d for d, _ in new_index.search([t], k)[0]] for q, t in queries if q in found.top_k)
    # without a stored top-k every scored query is searched in full, with the same pairs
    cold = retrieval.reretrieve(new_index, queries, new_docs, new_tokens, {}, k)
    assert sorted(map(key, cold.entering)) == sorted(map(key, expected)) and cold.ruled_out < found.ruled_out
