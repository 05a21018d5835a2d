"""Incremental relabeling end to end: the inbox sensor registers batches, the partitioned job labels only
what is new, relevance_labels retires instead of deleting, and a stale student is retrained."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from relabel_assets.definitions import build_definitions
from resources.llm import LLMGateway
from tests import scripted_llm
from tests.robustness_scenarios import build_baseline, copy_baseline, daemon_scenario, incremental_resources

BADGE = "---\ntitle: Office badge replacement\nauthor: Facilities\nmodified: 2026-01-05\ntype: faq\n---\n"
WIFI = "Title: Guest wifi access\nAuthor: IT Desk\nModified: 2026-01-09\nType: howto\n\n"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full relabel_job once on the tiny corpus: the state every incremental test starts from."""
    return build_baseline(tmp_path_factory.mktemp("baseline"))


def run_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None):
    sensor = defs.resolve_sensor_def(name)
    resources = {k: v for k, v in defs.resources.items() if k in sensor.required_resource_keys}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context), context


def rows(db: str, sql: str) -> list[tuple]:
    with duckdb.connect(db, read_only=True) as conn:
        return conn.execute(sql).fetchall()


def count(db: str, sql: str) -> int:
    return int(rows(db, sql)[0][0])


@pytest.mark.integration
def test_two_batches_label_only_new_pairs_retire_old_labels_and_retrain(baseline: Path, tmp_path: Path) -> None:
    root = copy_baseline(baseline, tmp_path)
    resources = incremental_resources(
        root,
        baseline / "corpus",
        baseline / "judgments",
        teacher_sample_rate=0.5,
        incremental_top_k=3,
        retrain_min_teacher_labels=4,
    )
    db = resources["duckdb"].database
    defs = build_definitions(resources)
    job = defs.resolve_job_def("incremental_relabel_job")
    instance = dg.DagsterInstance.ephemeral()
    inbox = root / "inbox"
    base = {t: count(db, f"select count(*) from {t}") for t in ("seed_corpus", "synthetic_queries", "candidate_pools")}
    baseline_labels = count(db, "select count(*) from student_labels where pair_source = 'pool'")

    # batch 1: two new documents and one unreadable file
    inbox.mkdir()
    (inbox / "badge.md").write_text(BADGE + "Lost your office badge? Reception prints a replacement badge in Leeds.")
    (inbox / "wifi.txt").write_text(
        WIFI + "Guests join the Kestrel-Guest wifi with the daily password; Windows laptops of staff use the VPN."
    )
    (inbox / "broken.json").write_text("{oops")
    first, _ = run_sensor(defs, instance, "inbox_sensor", None)
    assert [r.partition_key for r in first.run_requests] == first.dynamic_partitions_requests[0].partition_keys
    batch1 = first.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [batch1])
    scripted_llm.calls.clear()
    assert job.execute_in_process(partition_key=batch1, instance=instance).success

    # baseline import + 2 new versions; the broken file is quarantined with its reason
    assert count(db, "select count(*) from document_versions") == base["seed_corpus"] + 2
    assert rows(db, "select doc_id, reason from inbox_quarantine") == [
        ("inbox/broken.json", rows(db, "select reason from inbox_quarantine")[0][0])
    ]
    assert "invalid JSON" in rows(db, "select reason from inbox_quarantine")[0][0]
    new_queries = count(db, f"select count(*) from label_queries where batch_id = '{batch1}'")
    assert new_queries == 4  # 2 per new document
    pairs1 = count(db, f"select count(*) from label_pairs where batch_id = '{batch1}'")
    entered1 = count(db, f"select count(*) from label_pairs where batch_id = '{batch1}' and role = 'entered_top_k'")
    sampled1 = -(-pairs1 // 2)
    assert count(db, f"select count(*) from inbox_teacher_labels where batch_id = '{batch1}'") == sampled1
    # LLM calls only for new items: one query call per new document, one teacher call per sampled pair
    assert len(scripted_llm.calls) == 2 + sampled1
    students1 = count(
        db, f"select count(*) from relevance_labels where batch_id = '{batch1}' and labeler_kind = 'student'"
    )
    assert students1 == pairs1, "the student labels every new pair"
    current = count(db, "select count(*) from relevance_labels where retired_at is null")
    assert current == baseline_labels + pairs1, "one current label per pool pair and per new pair"
    assert (
        count(
            db,
            "select count(*) from relevance_labels where retired_at is null and labeler_kind = 'teacher' "
            f"and batch_id = '{batch1}'",
        )
        == sampled1
    )
    assert entered1 >= 1, "a new document enters the top-k of an existing query"
    stale = rows(db, "select checkpoint_id, stale_reason from student_checkpoint_registry where stale_at is not null")
    assert len(stale) == 1 and "new teacher labels" in stale[0][1]

    # the same files again: nothing; re-running the partition: no LLM call, no new row
    same, context = run_sensor(defs, instance, "inbox_sensor", first.cursor)
    assert isinstance(same, dg.SkipReason)
    before = count(db, "select count(*) from relevance_labels")
    scripted_llm.calls.clear()
    assert job.execute_in_process(partition_key=batch1, instance=instance).success
    assert scripted_llm.calls == [] and count(db, "select count(*) from relevance_labels") == before

    # the stale student is retrained once; its labels stay attributable to it
    retrain, _ = run_sensor(defs, instance, "student_retrain_sensor", None)
    assert retrain.run_key == f"retrain-{stale[0][0]}"
    assert defs.resolve_job_def("student_retrain_job").execute_in_process(instance=instance).success
    new_ckpt = rows(db, "select checkpoint_id from student_checkpoint")[0][0]
    assert new_ckpt != stale[0][0]
    assert count(db, "select count(*) from training_set") == base["candidate_pools"] + sampled1
    assert isinstance(run_sensor(defs, instance, "student_retrain_sensor", None)[0], dg.SkipReason)

    # batch 2: badge changed, wifi deleted, one more new document
    (inbox / "badge.md").write_text(BADGE + "Lost your badge? Security at the front desk issues a new badge.")
    (inbox / "wifi.txt").unlink()
    (inbox / "printer.md").write_text("---\ntitle: Printer toner orders\n---\nOrder toner for the Leeds printers.")
    second, _ = run_sensor(defs, instance, "inbox_sensor", first.cursor)
    batch2 = second.run_requests[0].partition_key
    assert batch2 != batch1 and second.run_requests[0].tags == {
        "relabel/queue": "inbox_batches",
        "relabel/new": "1",
        "relabel/changed": "1",
        "relabel/deleted": "1",
    }
    instance.add_dynamic_partitions("inbox_batches", [batch2])
    labels_v1 = count(
        db,
        "select count(*) from relevance_labels where doc_id in ('inbox/badge.md', 'inbox/wifi.txt') "
        "and retired_at is null",
    )
    scripted_llm.calls.clear()
    assert job.execute_in_process(partition_key=batch2, instance=instance).success

    assert count(db, "select count(*) from document_versions") == base["seed_corpus"] + 2 + 3
    assert rows(
        db, "select version, is_tombstone from document_versions where doc_id = 'inbox/wifi.txt' order by 1"
    ) == [(1, False), (2, True)]
    retired = dict(
        rows(
            db,
            f"select retired_reason, count(*) from relevance_labels where retired_by_batch = '{batch2}' group by 1",
        )
    )
    pairs2 = count(db, f"select count(*) from label_pairs where batch_id = '{batch2}'")
    sampled2 = -(-pairs2 // 2)
    assert len(scripted_llm.calls) == 2 + sampled2, "queries for the changed and the new document, teacher sample"
    assert retired["document_changed"] + retired["document_deleted"] == labels_v1
    # the deleted document's queries are retired, and with them the labels of their pairs on other documents;
    # the changed document kept its title, so its queries still fit and stay current (and the new version's
    # queries, written from the same title, are rejected as duplicates of them)
    assert retired == {
        "document_changed": retired["document_changed"],
        "document_deleted": retired["document_deleted"],
        "query_document_deleted": 2,
        "superseded_by_teacher": sampled2,
    }
    assert rows(
        db,
        "select retired_by_batch, retired_reason, count(*) from label_queries "
        "where retired_at is not null group by 1, 2",
    ) == [(batch2, "document_deleted", 2)]
    assert rows(db, "select count(*) from label_queries where doc_id = 'inbox/wifi.txt' and retired_at is null") == [
        (0,)
    ]
    assert rows(db, "select count(*) from label_queries where doc_id = 'inbox/badge.md' and retired_at is null") == [
        (2,)
    ]
    assert (
        count(db, "select count(*) from relevance_labels where doc_id = 'inbox/wifi.txt' and retired_at is null") == 0
    )
    assert rows(
        db, f"select distinct labeler_id from relevance_labels where batch_id = '{batch2}' and labeler_kind = 'student'"
    ) == [(f"student:{new_ckpt}",)]
    assert rows(
        db, f"select distinct labeler_id from relevance_labels where batch_id = '{batch1}' and labeler_kind = 'student'"
    ) == [(f"student:{stale[0][0]}",)]
    assert count(db, "select count(*) from relevance_labels where retired_at is null") == (
        baseline_labels + pairs1 - labels_v1 - 2 + pairs2
    )
    # the exact figures of this scenario (scripted LLM, tiny corpus): 30 baseline pool labels, 11 new pairs in
    # batch 1 (8 pool pairs of 4 new queries + 3 existing queries whose top-3 a new document entered), 6 in
    # batch 2; 7 labels retired with the changed and the deleted document, 2 more with the deleted one's queries
    assert (base["candidate_pools"], baseline_labels, pairs1, entered1, pairs2, labels_v1) == (30, 30, 11, 3, 6, 7)
    assert count(db, "select count(*) from relevance_labels where retired_at is null") == 38
    # baseline student + teacher rows, then student + teacher rows per batch: every label ever made is kept
    assert count(db, "select count(*) from relevance_labels") == 2 * 30 + (11 + 6) + (6 + 3)
    failed = [
        e.check_name
        for e in job.execute_in_process(partition_key=batch2, instance=instance).get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == []


@pytest.mark.integration
@pytest.mark.slow
def test_daemon_batches_a_full_run_and_readers_at_once_lose_nothing(baseline: Path, tmp_path: Path) -> None:
    """The real daemon and webserver relabel two files dropped one after the other (two sensor ticks, two
    batches) while `relabel run` rebuilds the full pipeline in another process and `relabel report` reads in a
    loop: no DuckDB lock error anywhere, every batch succeeds, the full run either succeeds or is refused with
    its reason (the rebuild guard, when a batch got in first), and no label is lost or duplicated."""
    files = [
        ("badge.md", BADGE + "Lost your office badge? Reception prints a replacement badge."),
        ("wifi.txt", WIFI + "Guests join the Visitor network with a code."),
    ]
    seen = daemon_scenario(baseline, tmp_path, files, timeout_s=600)
    assert [r["status"] for r in seen.runs] == ["SUCCESS", "SUCCESS"], seen.daemon_log[-3000:]
    assert [p[:7] for p in seen.partitions] == ["b000001", "b000002"], "one batch per sensor tick"
    assert seen.full_run_returncode == 0 or seen.full_run_refused_by_the_guard, seen.full_run_output[-3000:]
    assert not seen.lock_errors
    assert seen.reads and all(r.returncode == 0 for r in seen.reads), [r.stderr[-500:] for r in seen.reads]
    assert seen.versions == {"inbox/badge.md": 1, "inbox/wifi.txt": 1}
    assert all(n > 0 for n in seen.live_labels.values()), seen.live_labels
    assert seen.duplicated_pairs == 0
    outcome = seen.outcome()
    assert (outcome.crashed, outcome.lost, outcome.duplicated, outcome.violations) == (0, 0, 0, 0)


@pytest.mark.integration
def test_a_batch_without_a_baseline_fails_with_the_reason_and_keeps_its_snapshot(tmp_path: Path) -> None:
    resources = incremental_resources(tmp_path, tmp_path / "corpus", tmp_path / "judgments")
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "badge.md").write_text(BADGE + "Reception prints a replacement badge.")
    result, _ = run_sensor(defs, instance, "inbox_sensor", None)
    key = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [key])
    run = defs.resolve_job_def("incremental_relabel_job").execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False
    )
    assert not run.success
    failure = run.get_step_failure_events()[0].event_specific_data.error
    assert "run `relabel run` (relabel_job) once first" in str(failure.cause or failure.message)
    assert (resources["settings"].batches_path() / key / "files" / "inbox" / "badge.md").exists()


@pytest.mark.integration
def test_uncertainty_routing_sends_the_students_least_sure_pairs_to_the_teacher(baseline: Path, tmp_path: Path) -> None:
    from relabel.incremental.label_store import BATCH_PAIRS_SQL
    from relabel.student import load_student, pair_text
    from relabel.teacher.routing import entropy

    root = copy_baseline(baseline, tmp_path)
    resources = incremental_resources(
        root,
        baseline / "corpus",
        baseline / "judgments",
        teacher_sample_rate=0.3,
        teacher_routing="uncertainty",
        teacher_random_slice=0.0,
        incremental_top_k=3,
    )
    db = resources["duckdb"].database
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "badge.md").write_text(BADGE + "Lost your office badge? Reception prints a replacement badge in Leeds.")
    (inbox / "wifi.txt").write_text(WIFI + "Guests join the Kestrel-Guest wifi with the daily password.")
    result, _ = run_sensor(defs, instance, "inbox_sensor", None)
    batch = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [batch])
    assert (
        defs.resolve_job_def("incremental_relabel_job")
        .execute_in_process(partition_key=batch, instance=instance)
        .success
    )

    # recompute the student's uncertainty on the batch's pairs independently of the routing code
    with duckdb.connect(db, read_only=True) as conn:
        pairs = conn.execute(BATCH_PAIRS_SQL, [batch]).df()
        path = conn.execute("select path from student_checkpoint order by created_at desc limit 1").fetchall()[0][0]
    labeler = load_student(Path(path))
    _, _, probabilities = labeler.predict_with_probabilities(
        pairs["query_text"].tolist(),
        [pair_text({"title": t, "doc_text": x}) for t, x in zip(pairs["title"], pairs["text"], strict=True)],
    )
    h = entropy(probabilities)
    budget = -(-3 * len(pairs) // 10)
    assert 0 < budget < len(pairs)
    keys = list(zip(pairs["qid"], pairs["doc_id"], pairs["content_hash"], strict=True))
    graded = set(rows(db, f"select qid, doc_id, content_hash from inbox_teacher_labels where batch_id = '{batch}'"))
    assert len(graded) == budget
    in_graded = np.array([k in graded for k in keys])
    assert h[in_graded].min() >= h[~in_graded].max() - 1e-6, "the teacher graded the least sure pairs"

    routed = rows(
        db, f"select routing_reason, count(*) from inbox_routing where batch_id = '{batch}' group by 1 order by 1"
    )
    assert routed == [("student", len(pairs) - budget), ("uncertain", budget)]
    provenance = dict(
        rows(
            db,
            f"select labeler_kind, string_agg(distinct routing_reason) from relevance_labels "
            f"where batch_id = '{batch}' and retired_at is null group by 1",
        )
    )
    assert provenance == {"teacher": "uncertain", "student": "student"}
    scores = rows(
        db,
        f"select routing_score from relevance_labels where batch_id = '{batch}' and retired_at is null "
        "and labeler_kind = 'teacher' order by routing_score",
    )
    assert scores[0][0] == pytest.approx(float(np.sort(h)[-budget]), abs=1e-4)


def ingest(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None, **kwargs: object):
    """One sensor tick and the incremental job for its batch: (batch id, new cursor, run result)."""
    result, _ = run_sensor(defs, instance, "inbox_sensor", cursor)
    batch = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [batch])
    run = defs.resolve_job_def("incremental_relabel_job").execute_in_process(
        partition_key=batch, instance=instance, **kwargs
    )
    return batch, result.cursor, run


def failed_checks(run: dg.ExecuteInProcessResult) -> list[str]:
    return [e.check_name for e in run.get_asset_check_evaluations() if not e.passed]


@pytest.mark.integration
def test_changed_documents_retire_queries_that_no_longer_fit_and_no_batch_repeats_a_current_query(
    baseline: Path, tmp_path: Path
) -> None:
    root = copy_baseline(baseline, tmp_path)
    resources = incremental_resources(root, baseline / "corpus", baseline / "judgments", incremental_top_k=3)
    db = resources["duckdb"].database
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "badge.md").write_text(BADGE + "Lost your office badge? Reception prints a replacement badge in Leeds.")
    batch1, cursor, run1 = ingest(defs, instance, None)
    assert run1.success and failed_checks(run1) == []
    badge_queries = rows(db, "select qid, query_text from label_queries where doc_id = 'inbox/badge.md' order by 1")
    assert len(badge_queries) == 2
    labels_of_badge_queries = count(
        db,
        "select count(*) from relevance_labels where retired_at is null and qid in "
        "(select qid from label_queries where doc_id = 'inbox/badge.md')",
    )
    assert labels_of_badge_queries > 0

    # batch 2: the badge page now covers the canteen (its queries no longer fit); two new documents whose
    # scripted queries repeat queries of the baseline: one word for word, one reworded (a near-duplicate)
    (inbox / "badge.md").write_text(
        "---\ntitle: Canteen opening hours\nauthor: Facilities\n---\nThe canteen serves lunch from noon to two."
    )
    (inbox / "vpn-copy.md").write_text("---\ntitle: VPN setup on Windows\n---\nA second copy of the VPN page, Leeds.")
    (inbox / "vpn-reworded.md").write_text("---\ntitle: Setup VPN on laptops\n---\nLaptops connect through the VPN.")
    scripted_llm.calls.clear()
    batch2, _, run2 = ingest(defs, instance, cursor)
    assert run2.success and failed_checks(run2) == []

    retired = rows(
        db,
        "select qid, retired_by_batch, retired_reason from label_queries where retired_at is not null order by 1",
    )
    assert retired == [(qid, batch2, "no_longer_fits") for qid, _ in badge_queries]
    reasons = dict(
        rows(
            db,
            "select retired_reason, count(*) from relevance_labels where retired_by_batch = ? "
            "and retired_reason <> 'superseded_by_teacher' group by 1".replace("?", f"'{batch2}'"),
        )
    )
    # labels on the old version go with the version; the rest of the retired queries' labels go with them
    assert sum(reasons.values()) == labels_of_badge_queries + count(
        db,
        f"select count(*) from relevance_labels where doc_id = 'inbox/badge.md' and batch_id = '{batch1}' "
        "and qid not in (select qid from label_queries where doc_id = 'inbox/badge.md')",
    )
    assert set(reasons) <= {"document_changed", "query_no_longer_fits"} and reasons.get("query_no_longer_fits")
    assert (
        count(
            db,
            "select count(*) from relevance_labels r join label_queries q using (qid) "
            "where r.retired_at is null and q.retired_at is not null",
        )
        == 0
    )
    # the new version gets queries of its own; the copies' queries that repeat baseline queries are rejected
    assert (
        count(db, f"select count(*) from label_queries where batch_id = '{batch2}' and doc_id = 'inbox/badge.md'") == 2
    )
    rejects = rows(
        db,
        f"select doc_id, query_text, reason, detail from inbox_query_rejects where batch_id = '{batch2}' "
        "and reason in ('duplicate', 'near_duplicate') order by 1, 2",
    )
    assert [(d, q, r) for d, q, r, _ in rejects] == [
        ("inbox/vpn-copy.md", "vpn setup on help", "duplicate"),
        ("inbox/vpn-copy.md", "where is the windows info", "duplicate"),
        ("inbox/vpn-reworded.md", "setup vpn on help", "near_duplicate"),
    ]
    assert all("it/vpn-windows.md" in detail for *_, detail in rejects), "found among the baseline's queries"
    current = rows(db, "select query_text from label_queries where retired_at is null")
    from relabel.synthesis.query_stats import near_duplicate_free

    assert near_duplicate_free(pd.DataFrame(current, columns=["query_text"])).passed
    assert len(scripted_llm.calls) >= 3, "one query call per changed or new document"


@pytest.mark.integration
def test_inbox_batches_use_recorded_runs_with_llm_fallback_and_ensembles_like_the_full_pipeline(
    baseline: Path, tmp_path: Path
) -> None:
    from relabel.synthesis.queries import query_id

    run_file = tmp_path / "gpt4o-recorded.txt"
    vpn_query = query_id("it/vpn-windows.md", "vpn setup on help")
    run_file.write_text(f"{vpn_query} 0 vpn-linux 3\n{vpn_query} 0 it/vpn-mac.txt 0\n")
    root = copy_baseline(baseline, tmp_path / "recorded")
    resources = incremental_resources(
        root,
        baseline / "corpus",
        baseline / "judgments",
        teacher_sample_rate=1.0,
        incremental_top_k=3,
        teacher_runs=[str(run_file)],
        teacher_runs_fallback="llm",
    )
    db = resources["duckdb"].database
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    (root / "inbox").mkdir()
    (root / "inbox" / "vpn-linux.md").write_text(
        "---\ntitle: Linux VPN client\n---\nVPN setup on Linux: install the GlobalProtect client and sign in."
    )
    scripted_llm.calls.clear()
    batch, cursor, run = ingest(defs, instance, None)
    assert run.success and failed_checks(run) == []
    graded = rows(
        db,
        "select qid, doc_id, labeler_id, grade from inbox_teacher_labels where status = 'ok' order by labeler_id, qid",
    )
    pairs = count(db, f"select count(*) from label_pairs where batch_id = '{batch}'")
    assert len(graded) == pairs, "every pair graded: by the recorded run where it covers it, by the LLM elsewhere"
    recorded = [g for g in graded if g[2] == "recorded:gpt4o-recorded"]
    assert recorded == [(vpn_query, "inbox/vpn-linux.md", "recorded:gpt4o-recorded", 3)]
    assert {g[2] for g in graded} == {"recorded:gpt4o-recorded", "teacher:scripted/overlap"}
    assert len(scripted_llm.calls) == 1 + pairs - 1, "one query call, one LLM call per pair the run lacks"
    current = rows(
        db,
        f"select labeler_id, grade from relevance_labels where retired_at is null and qid = '{vpn_query}' "
        "and doc_id = 'inbox/vpn-linux.md'",
    )
    assert current == [("recorded:gpt4o-recorded", 3)]

    # an ensemble of two LLM teachers grades the next batch, combined by vote as in teacher_labels
    ensemble = incremental_resources(
        root, baseline / "corpus", baseline / "judgments", teacher_sample_rate=1.0, incremental_top_k=3
    )
    ensemble["llm"] = LLMGateway(model="scripted/overlap", use_logprobs=False, ensemble_models=["scripted/noisy"])
    defs = build_definitions(ensemble)
    (root / "inbox" / "wifi.txt").write_text(WIFI + "Guests join the Kestrel-Guest wifi with the daily password.")
    scripted_llm.calls.clear()
    batch2, _, run2 = ingest(defs, instance, cursor)
    assert run2.success
    labelers = rows(db, f"select distinct labeler_id from inbox_teacher_labels where batch_id = '{batch2}'")
    assert labelers == [("ensemble:teacher:scripted/noisy+teacher:scripted/overlap",)]
    pairs2 = count(db, f"select count(*) from label_pairs where batch_id = '{batch2}'")
    assert scripted_llm.calls.count("noisy") == pairs2 and scripted_llm.calls.count("overlap") == 1 + pairs2


@pytest.mark.integration
def test_relabel_job_after_inbox_batches_refuses_or_rebootstraps_to_one_label_set(
    baseline: Path, tmp_path: Path
) -> None:
    root = copy_baseline(baseline, tmp_path)
    resources = incremental_resources(root, baseline / "corpus", baseline / "judgments", incremental_top_k=3)
    db = resources["duckdb"].database
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    (root / "inbox").mkdir()
    (root / "inbox" / "badge.md").write_text(BADGE + "Lost your office badge? Reception prints a replacement badge.")
    batch1, cursor, run1 = ingest(defs, instance, None)
    assert run1.success
    seed_before = count(db, "select count(*) from seed_corpus")

    refused = defs.resolve_job_def("relabel_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not refused.success
    error = refused.get_step_failure_events()[0].event_specific_data.error
    message = str(error.cause or error.message)
    assert "1 inbox batches" in message and "diverging" in message and "RELABEL_REBOOTSTRAP=1" in message
    assert count(db, "select count(*) from seed_corpus") == seed_before, "nothing was rebuilt"

    # while a rebuild is under way (its first asset registered a pending re-bootstrap), inbox batches wait
    from relabel.incremental import label_store

    with duckdb.connect(db) as conn:
        pending = label_store.guard_full_rebuild(conn, True, "seed_corpus", pd.Timestamp.now())
    (root / "inbox" / "wifi.txt").write_text(WIFI + "Guests join the Kestrel-Guest wifi with the daily password.")
    batch2, cursor, waiting = ingest(defs, instance, cursor, raise_on_error=False)
    assert not waiting.success
    error = waiting.get_step_failure_events()[0].event_specific_data.error
    assert f"re-bootstrap {pending} pending" in str(error.cause or error.message)

    labels_before = count(db, "select count(*) from relevance_labels")
    rebuild = build_definitions(
        incremental_resources(root, baseline / "corpus", baseline / "judgments", incremental_top_k=3, rebootstrap=True)
    )
    done = rebuild.resolve_job_def("relabel_job").execute_in_process(instance=instance)
    assert done.success and failed_checks(done) == []
    assert count(db, "select count(*) from seed_corpus") == seed_before + 2, "the inbox files joined the baseline"
    imports = rows(db, "select import_id, status, detail, inbox_batches from baseline_imports order by requested_at")
    assert imports[-1] == (pending, "done", "re-bootstrap", 1)

    with duckdb.connect(db, read_only=True) as conn:
        assert label_store.baseline_divergence(conn)["missing"] == label_store.baseline_divergence(conn)["extra"] == 0
        pools = conn.execute("select count(*) from candidate_pools").fetchall()[0][0]
        teacher_ok = conn.execute(
            "select count(*) from teacher_labels where pair_source = 'pool' and status = 'ok'"
        ).fetchall()[0][0]
    assert pools == teacher_ok
    assert count(db, "select count(*) from relevance_labels where retired_at is null") == pools
    assert count(db, "select count(*) from relevance_labels") >= labels_before, "nothing deleted"
    assert count(db, "select count(*) from relevance_labels where retired_at is null and labeler_kind = 'student'") == 0

    # the waiting batch runs now (its document came in with the rebuilt baseline), and batches go on from there
    again = rebuild.resolve_job_def("incremental_relabel_job").execute_in_process(
        partition_key=batch2, instance=instance
    )
    assert again.success and failed_checks(again) == []
    (root / "inbox" / "printer.md").write_text("---\ntitle: Printer toner orders\n---\nOrder toner for the printers.")
    batch3, _, run3 = ingest(rebuild, instance, cursor)
    assert run3.success and failed_checks(run3) == []
    assert count(db, f"select count(*) from relevance_labels where batch_id = '{batch3}' and retired_at is null") > 0
