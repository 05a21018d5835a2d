"""Whole-graph materialization on a tiny corpus with the scripted LLM."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import materialize

from relabel_assets.checks import table_checks
from relabel_assets.definitions import ALL_ASSETS
from tests import scripted_llm
from tests.conftest import ASSET_NAMES

TABLE_ASSETS = sorted(ASSET_NAMES)


@pytest.mark.integration
def test_whole_graph_materializes_and_second_run_makes_no_llm_calls(pipeline_resources):
    scripted_llm.calls.clear()
    result = materialize([*ALL_ASSETS, *table_checks()], resources=pipeline_resources)
    assert result.success
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    first_calls = len(scripted_llm.calls)
    db = pipeline_resources["duckdb"].database
    with duckdb.connect(db, read_only=True) as conn:
        counts = {t: conn.execute(f'select count(*) from "{t}"').fetchall()[0][0] for t in TABLE_ASSETS}
        pools = conn.execute("select count(*) from candidate_pools").fetchall()[0][0]
        bench = conn.execute("select count(*) from human_benchmark").fetchall()[0][0]
        teacher = conn.execute("select count(*), count(*) filter (where status = 'ok') from teacher_labels").fetchall()[
            0
        ]
        labelers = conn.execute("select labeler_id, reference from agreement_report order by 1, 2").fetchall()
    assert all(count > 0 for count in counts.values()), counts
    assert counts["seed_corpus"] == 6
    assert counts["synthetic_queries"] == 12
    assert 12 * 2 <= pools <= 12 * 4  # seed + up to 2 BM25 hits with score > 0 + 1 random negative
    # every pool pair and every judged pair is graded, one LLM call each (+ one per document for queries)
    assert teacher == (pools + bench, pools + bench)
    assert first_calls == 6 + pools + bench
    assert {r for _, r in labelers} == {"human", "teacher:scripted/overlap"}
    # the cost dial: the student-teacher cascade at the inbox's teacher share is a labeler, with its curve
    assert ("cascade:random@20%", "human") in labelers
    text = (Path(pipeline_resources["settings"].data_dir) / "reports" / "agreement_report.md").read_text()
    assert "## Cost dial" in text and "plots/cascade_curve.png" in text

    again = materialize([*ALL_ASSETS, *table_checks()], resources=pipeline_resources)
    assert again.success
    assert len(scripted_llm.calls) == first_calls, "a second materialization must be served from the DuckDB cache"


@pytest.mark.integration
def test_full_job_also_ingests_the_inbox(pipeline_resources):
    from relabel_assets.definitions import build_definitions

    settings = pipeline_resources["settings"]
    defs = build_definitions(pipeline_resources)
    job = defs.resolve_job_def("relabel_job")
    assert job.execute_in_process().success

    inbox = settings.inbox_path()
    inbox.mkdir(parents=True)
    (inbox / "badge.md").write_text(
        "---\ntitle: Office badge replacement\nauthor: Facilities\nmodified: 2026-01-05\n"
        "type: faq\n---\nLost your office badge? Reception prints a replacement badge."
    )
    (inbox / "broken.json").write_text("{oops")
    result = job.execute_in_process()
    assert result.success
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as conn:
        doc = conn.execute("select title, author from seed_corpus where doc_id = 'inbox/badge.md'").fetchall()
        quarantined = conn.execute(
            "select reason from seed_corpus_quarantine where doc_id = 'inbox/broken.json'"
        ).fetchall()
        labels = conn.execute(
            "select count(*) from student_labels s join synthetic_queries q using (qid) "
            "where q.doc_id = 'inbox/badge.md'"
        ).fetchall()[0][0]
    assert doc == [("Office badge replacement", "Facilities")]
    assert "invalid JSON" in quarantined[0][0]
    assert labels >= 2 * 2, "the new document's queries and their pools are labeled by the student"
