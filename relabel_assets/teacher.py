"""teacher_labels: the teacher LLM's 0-3 grade for every candidate-pool pair and every judged pair."""

import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.incremental import TABLES_DDL
from relabel.teachers import TeacherGrades, grade_with_teachers
from relabel.warehouse import replace_table
from relabel_assets.common import WRITER_POOL, guard_full_rebuild, write_asset_table
from resources.llm import LLMGateway
from resources.settings import PipelineSettings

PAIRS_SQL = """
select 'pool' as pair_source, p.qid, q.query_text, d.doc_id, d.title, d.author, d.path, d.modified,
       d.doc_type, d.text
from candidate_pools p join synthetic_queries q using (qid) join seed_corpus d on d.doc_id = p.doc_id
union all
select 'benchmark' as pair_source, qid, query_text, doc_id, title, author, path, modified, doc_type, text
from human_benchmark
"""

LABEL_COLUMNS = [
    "pair_source",
    "qid",
    "doc_id",
    "labeler_id",
    "model",
    "prompt_id",
    "prompt_version",
    "status",
    "grade",
    "expected_grade",
    "p0",
    "p1",
    "p2",
    "p3",
    "raw_answer",
    "error",
    "from_cache",
    "latency_s",
]


def teacher_grades(
    conn: duckdb.DuckDBPyConnection,
    pairs: list[dict],
    llm: LLMGateway,
    settings: PipelineSettings,
    log: Callable[[str], Any] | None = None,
) -> TeacherGrades:
    """The teacher the settings choose (recorded runs, with or without the LLM fallback; the LLM teacher with
    ensemble members and samples), for the full pipeline and inbox batches alike; one budget and one rate
    limit for every model and sample."""
    return grade_with_teachers(
        conn,
        pairs,
        runs=settings.teacher_runs,
        clients=[llm.client(model=model) for model in llm.teacher_models()],
        samples_per_model=llm.samples_per_model,
        sample_temperature=llm.sample_temperature,
        use_logprobs=llm.use_logprobs,
        max_doc_chars=settings.max_doc_chars,
        policy=llm.policy(),
        fallback=settings.teacher_runs_fallback,
        progress=None if log is None else lambda model, n: n % 25 == 0 and log(f"{model}: graded {n}/{len(pairs)}"),
    )


@dg.asset(
    deps=["candidate_pools", "human_benchmark"], kinds={"duckdb", "litellm"}, pool=WRITER_POOL, group_name="labeling"
)
def teacher_labels(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, llm: LLMGateway, settings: PipelineSettings
) -> dg.MaterializeResult:
    """NIST-style 0-3 grades from the teacher (prompt file ``grade_nist``) for every candidate-pool pair and
    every human-judged pair. With logprobs the four grade-token probabilities and the expected grade are
    stored; otherwise the answer is parsed strictly. Unparseable answers are kept as ``unparsed``, failed
    calls as ``failed`` and budget stops as ``skipped_budget``, never as a grade. Several teacher models or
    samples (or recorded labelings, ``RELABEL_TEACHER_RUNS``) are combined by vote, members kept in
    ``teacher_label_votes``. Answers are cached in DuckDB and every call is logged in ``llm_calls``."""
    started = time.perf_counter()
    guard_full_rebuild(duckdb, settings.rebootstrap, "teacher_labels")
    with duckdb.get_connection() as conn:
        pairs = conn.execute(PAIRS_SQL).df().to_dict("records")
        grades = teacher_grades(conn, pairs, llm, settings, context.log.info)
        calls, rows = grades.calls, grades.rows
        votes = pd.DataFrame(grades.votes, columns=LABEL_COLUMNS)
        replace_table(conn, "teacher_label_votes", votes)
        # training_set also reads the teacher's labels of inbox batches: make sure that table exists
        conn.execute(TABLES_DDL["inbox_teacher_labels"])
    frame = pd.DataFrame(rows, columns=[*LABEL_COLUMNS, "votes", "agreement"])
    status = frame["status"].value_counts().to_dict()
    return write_asset_table(
        duckdb,
        "teacher_labels",
        frame,
        started,
        llm_calls=dg.MetadataValue.int(calls),
        teachers=dg.MetadataValue.json(sorted(votes["labeler_id"].unique())),
        status_counts=dg.MetadataValue.json(status),
        parse_failure_rate=dg.MetadataValue.float(round(status.get("unparsed", 0) / max(len(frame), 1), 4)),
        mean_vote_agreement=dg.MetadataValue.float(
            round(float(frame["agreement"].mean()), 4) if frame["agreement"].notna().any() else 1.0
        ),
        grade_distribution=dg.MetadataValue.json(
            frame.loc[frame.status == "ok", "grade"].astype(int).value_counts().sort_index().to_dict()
        ),
    )
