"""Pure logic of incremental relabeling: versions, pairs, teacher sample, label merge, staleness, BM25 update."""

import os
from pathlib import Path

import numpy as np
import pytest

from relabel import retrieval
from relabel.incremental import batches, rules
from relabel.retrieval import BM25Index, passage_texts


@pytest.mark.unit
def test_plan_versions_new_changed_unchanged_deleted_and_restored() -> None:
    current = {
        "a": rules.CurrentVersion(1, "h1", False),
        "b": rules.CurrentVersion(2, "h2", False),
        "c": rules.CurrentVersion(1, "h3", False),
        "gone": rules.CurrentVersion(3, None, True),  # type: ignore[arg-type]
    }
    plan = rules.plan_versions(current, {"a": "h1", "b": "h2b", "new": "h9", "gone": "h4"}, ["c", "never"])
    assert [(p.doc_id, p.change, p.version, p.previous_version) for p in plan] == [
        ("a", "unchanged", None, 1),
        ("b", "changed", 3, 2),
        ("gone", "changed", 4, 3),
        ("new", "new", 1, None),
        ("c", "deleted", 2, 1),
        ("never", "missing", None, None),
    ]


@pytest.mark.unit
def test_merge_labels_adds_missing_teacher_supersedes_student_and_nothing_is_relabeled() -> None:
    current = {("q1", "d1", "h"): "student", ("q2", "d2", "h"): "teacher"}

    def label(qid: str, doc: str, kind: str) -> dict:
        return {"qid": qid, "doc_id": doc, "content_hash": "h", "labeler_kind": kind, "grade": 1}

    merge = rules.merge_labels(
        current,
        [
            label("q3", "d3", "student"),
            label("q3", "d3", "teacher"),
            label("q1", "d1", "teacher"),
            label("q1", "d1", "student"),
            label("q2", "d2", "student"),
            label("q2", "d2", "teacher"),
        ],
    )
    assert [(r["qid"], r["labeler_kind"]) for r in merge.insert] == [
        ("q3", "student"),
        ("q3", "teacher"),
        ("q1", "teacher"),
    ]
    assert merge.retire == [(("q3", "d3", "h"), "student"), (("q1", "d1", "h"), "student")]


@pytest.mark.unit
def test_teacher_sample_is_deterministic_sized_and_order_free() -> None:
    pairs = [{"qid": f"q{i}", "doc_id": f"d{i % 3}", "content_hash": "h"} for i in range(10)]
    sample = rules.teacher_sample(pairs, 0.25, seed=13)
    assert len(sample) == 3 == rules.sample_size(10, 0.25)
    assert rules.teacher_sample(list(reversed(pairs)), 0.25, seed=13) == sample
    assert rules.teacher_sample(pairs, 0.25, seed=14) != sample
    assert rules.teacher_sample(pairs, 0.0, seed=13) == [] and len(rules.teacher_sample(pairs, 1.0, seed=13)) == 10
    with pytest.raises(ValueError, match="within"):
        rules.sample_size(5, 1.5)


@pytest.mark.unit
def test_retrain_decision_on_label_count_and_on_agreement() -> None:
    args = {"min_teacher_labels": 10, "min_agreement": 0.5, "min_compared_pairs": 4}
    assert not rules.retrain_decision(3, [1, 2, 3, 0], [1, 2, 3, 0], **args).stale
    by_count = rules.retrain_decision(10, [], [], **args)
    assert by_count.stale and "10 new teacher labels" in by_count.reason
    drift = rules.retrain_decision(4, [0, 0, 0, 1], [3, 3, 2, 1], **args)
    assert drift.stale and drift.agreement == 0.25 and "agreement 0.250" in drift.reason
    assert not rules.retrain_decision(2, [0, 0], [3, 3], **args).stale, "too few compared pairs to judge drift"


@pytest.mark.unit
def test_diff_cursor_and_batch_ids(tmp_path: Path) -> None:
    changes = batches.diff_hashes({"a": "1", "b": "2b", "n": "9"}, {"a": "1", "b": "2", "gone": "3"})
    assert changes == batches.BatchChanges(("n",), ("b",), ("gone",))
    assert not batches.diff_hashes({"a": "1"}, {"a": "1"})
    cursor = batches.InboxCursor(3, {"inbox/a.md": batches.SourceState(5, 7, "ff")}, {"staging/x.md": "ee"})
    assert batches.InboxCursor.parse(cursor.dump()) == cursor
    assert batches.InboxCursor.parse('{"a.md": "5:7"}') == batches.InboxCursor(), "an old-style cursor starts fresh"
    hashes = {"n": "9", "b": "2b"}
    first = batches.make_batch_id(4, changes, hashes)
    assert first.startswith("b000004-") and first == batches.make_batch_id(4, changes, hashes)
    assert batches.make_batch_id(4, changes, {"n": "9", "b": "2c"}) != first
    assert batches.next_sequence(3, []) == 4
    assert batches.next_sequence(0, ["b000007-abc", "b000002-def", "other"]) == 8, (
        "a reset cursor continues the sequence"
    )


@pytest.mark.unit
def test_incremental_bm25_matches_a_rebuild_and_tokenizes_only_new_versions() -> None:
    docs = [
        {"doc_id": f"d{i}", "content_hash": f"h{i}", "title": f"doc {i}", "text": f"vpn gateway {i} " * (i + 1) * 40}
        for i in range(6)
    ]
    _, tokens, tokenized = retrieval.build_bm25(docs[:4])
    assert tokenized == sum(len(t) for t in tokens.values())
    changed = {**docs[1], "content_hash": "h1b", "text": "kafka consumer lag runbook"}
    later = [docs[0], changed, docs[2], docs[4], docs[5]]  # d3 deleted, d1 changed, d4 and d5 new
    incremental, _, fresh = retrieval.build_bm25(later, tokens)
    rebuilt = BM25Index.build(later)
    assert fresh == sum(len(passage_texts(d)) for d in (changed, docs[4], docs[5])) < tokenized + 3
    for a, b in zip(
        incremental.doc_scores(["vpn gateway 4", "kafka lag"]),
        rebuilt.doc_scores(["vpn gateway 4", "kafka lag"]),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert incremental.doc_ids == rebuilt.doc_ids


@pytest.mark.unit
def test_entering_pairs_and_term_overlap() -> None:
    results = [[("d1", 3.0), ("new", 2.0)], [("d2", 1.0)]]
    assert retrieval.entering_pairs(results, ["q1", "q2"], {"new": "hn"}) == [
        {"qid": "q1", "doc_id": "new", "content_hash": "hn", "role": "entered_top_k", "bm25_rank": 2, "bm25_score": 2.0}
    ]
    tokens = retrieval.build_bm25(
        [{"doc_id": "n", "content_hash": "h", "title": "Badge", "text": "replacement badge"}]
    )[1]
    assert retrieval.terms_overlap(["lost badge", "vpn setup"], tokens.values()) == [True, False]


def test_unreadable_inbox_entries_travel_to_the_batch_with_their_reason(tmp_path: Path) -> None:
    inbox_dir, batches_dir = tmp_path / "inbox", tmp_path / "batches"
    inbox_dir.mkdir()
    (inbox_dir / "ok.md").write_text("fine")
    (inbox_dir / "ignored.xlsx").write_bytes(b"PK")
    os.symlink("loop-b.txt", inbox_dir / "loop-a.txt")
    os.symlink("loop-a.txt", inbox_dir / "loop-b.txt")
    os.mkfifo(inbox_dir / "pipe.txt")
    states = batches.scan_inbox(inbox_dir, {})
    assert sorted(states) == ["inbox/loop-a.txt", "inbox/loop-b.txt", "inbox/ok.md", "inbox/pipe.txt"]
    assert batches.unreadable_reason(states["inbox/loop-a.txt"].sha256) == "symlink loop"
    assert batches.unreadable_reason(states["inbox/pipe.txt"].sha256) == "not a regular file (FIFO, socket or device)"
    assert batches.unreadable_reason(states["inbox/ok.md"].sha256) is None
    hashes = {d: s.sha256 for d, s in states.items()}
    changes = batches.diff_hashes(hashes, {})
    folder = batches.snapshot_batch(
        batches_dir, "b000001-x", 1, changes, hashes, {d: inbox_dir / d[6:] for d in states}
    )
    manifest = batches.BatchManifest.load(folder)
    assert manifest.added == hashes  # the reasons ride in the manifest ...
    assert sorted(p.name for p in (folder / batches.FILES_DIR / "inbox").iterdir()) == [
        "ok.md"
    ]  # ... nothing is copied
    # an unreadable entry is tried again at every scan, and becomes a change once it can be read
    (inbox_dir / "loop-a.txt").unlink()
    (inbox_dir / "loop-a.txt").write_text("readable now")
    again = batches.scan_inbox(inbox_dir, states)
    changed = batches.diff_hashes({d: s.sha256 for d, s in again.items()}, hashes).changed
    assert changed == ("inbox/loop-a.txt", "inbox/loop-b.txt")  # the link now reaches a readable file too


def test_route_teacher_pairs_random_matches_the_sample_and_uncertainty_takes_the_unsure() -> None:
    pairs = [{"qid": f"q{i % 3}", "doc_id": f"d{i}", "content_hash": f"h{i}"} for i in range(20)]
    random = rules.route_teacher_pairs(pairs, 0.25, seed=13)
    chosen = [rules.pair_key(r) for r in random if r["to_teacher"]]
    assert sorted(chosen) == sorted(rules.pair_key(r) for r in rules.teacher_sample(pairs, 0.25, seed=13))
    assert {r["routing_reason"] for r in random if r["to_teacher"]} == {"random"}
    probabilities = np.tile([0.97, 0.01, 0.01, 0.01], (20, 1))
    probabilities[[3, 8, 11, 17, 19]] = 0.25  # the student is unsure of these five
    unsure = rules.route_teacher_pairs(
        pairs, 0.25, seed=13, policy="uncertainty", random_share=0.0, probabilities=probabilities
    )
    assert [i for i, r in enumerate(unsure) if r["to_teacher"]] == [3, 8, 11, 17, 19]
    assert all(r["routing_reason"] == "uncertain" for r in unsure if r["to_teacher"])
    assert all(r["routing_reason"] == "student" and r["routing_score"] < 0.3 for r in unsure if not r["to_teacher"])
    sliced = rules.route_teacher_pairs(
        pairs, 0.25, seed=13, policy="uncertainty", random_share=0.2, probabilities=probabilities
    )
    assert [r["routing_reason"] for r in sliced].count("random_slice") == 1
    assert sum(r["to_teacher"] for r in sliced) == 5
    with pytest.raises(ValueError, match="RELABEL_TEACHER_ROUTING"):
        rules.route_teacher_pairs(pairs, 0.25, seed=13, policy="everything")


@pytest.mark.unit
def test_failed_teacher_rows_of_a_batch_are_dropped_and_answered_ones_stay() -> None:
    import duckdb

    from relabel.incremental import label_store

    with duckdb.connect() as conn:
        label_store.ensure_tables(conn)
        conn.execute(
            "insert into inbox_teacher_labels (qid, doc_id, content_hash, status, batch_id) values "
            "('q', 'a', 'h', 'ok', 'b1'), ('q', 'b', 'h', 'unparsed', 'b1'), ('q', 'c', 'h', 'failed', 'b1'), "
            "('q', 'd', 'h', 'skipped_budget', 'b1'), ('q', 'e', 'h', 'failed', 'b2')"
        )
        assert label_store.drop_failed_teacher_rows(conn, "b1") == 2
        assert label_store.drop_failed_teacher_rows(conn, "b1") == 0
        assert sorted(d for _, d, _ in label_store.teacher_graded_keys(conn)) == ["a", "b", "e"]
