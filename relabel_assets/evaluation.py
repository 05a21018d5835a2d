"""human_benchmark and agreement_report: human judgments and every labeler's agreement with them."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.benchmarks import load_judgments
from relabel.report import agreement_table, to_markdown, write_report
from relabel_assets.common import WRITER_POOL, read_sql, write_asset_table
from resources.settings import PipelineSettings

LABELS_SQL = """
select pair_source, qid, doc_id, labeler_id, 'teacher' as role, status, grade, expected_grade, latency_s
from teacher_labels
union all
select pair_source, qid, doc_id, labeler_id, 'student', status, grade, expected_grade, latency_s
from student_labels
"""


@dg.asset(kinds={"duckdb", "python"}, pool=WRITER_POOL, group_name="evaluation")
def human_benchmark(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Human relevance judgments (query, document, grade 0-3) with the texts: the reference judgments
    authored with the demo corpus, or any TREC-layout folder (``RELABEL_JUDGMENTS``), sampled to at most
    ``judgments_max_pairs`` pairs stratified by grade."""
    started = time.perf_counter()
    frame = load_judgments(settings.judgments, settings.judgments_max_pairs, settings.seed)
    return write_asset_table(
        duckdb,
        "human_benchmark",
        frame,
        started,
        source=dg.MetadataValue.text(settings.judgments),
        queries=dg.MetadataValue.int(frame["qid"].nunique()),
        grade_distribution=dg.MetadataValue.json(frame["grade"].value_counts().sort_index().to_dict()),
    )


@dg.asset(
    deps=["teacher_labels", "student_labels", "human_benchmark"],
    kinds={"duckdb", "python"},
    pool=WRITER_POOL,
    group_name="evaluation",
)
def agreement_report(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Agreement of the teacher and the student with the human judgments (Cohen's, quadratic and binary
    kappa, exact accuracy, Krippendorff's alpha, nDCG@10 and pairwise accuracy of the labeler's ranking)
    and of the student with the teacher, plus labels/s; also written as Markdown and JSON."""
    started = time.perf_counter()
    human = read_sql(duckdb, "select qid, doc_id, grade from human_benchmark")
    table = agreement_table(human, read_sql(duckdb, LABELS_SQL))
    paths = write_report(table, Path(settings.data_dir) / "reports")
    return write_asset_table(
        duckdb,
        "agreement_report",
        table,
        started,
        report=dg.MetadataValue.md(to_markdown(table)),
        report_path=dg.MetadataValue.path(str(paths["markdown"])),
    )


def latest_report(duckdb: DuckDBResource) -> pd.DataFrame:
    """The stored agreement table."""
    return read_sql(duckdb, "select * from agreement_report")
