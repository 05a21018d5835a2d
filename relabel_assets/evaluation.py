"""human_benchmark and agreement_report: human judgments and every labeler's agreement with them."""

import base64
import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.evaluation.cost import cost_table
from relabel.evaluation.judgments import folder_runs, load_judgments
from relabel.evaluation.report import build_report, cost_markdown, headline_kappas, to_markdown, write_report
from relabel.warehouse import replace_table, table_exists
from relabel_assets.common import WRITER_POOL, ensure_label_views, read_sql, write_asset_table
from resources.settings import PipelineSettings

LABEL_SELECT = (
    "select pair_source, qid, doc_id, labeler_id, {role} as role, {model} as model, {prompt} as prompt_id, status, "
    "grade, expected_grade, latency_s from {table}"
)
LABELS_SQL = " union all ".join(
    [
        LABEL_SELECT.format(role="'teacher'", model="model", prompt="prompt_id", table="teacher_labels"),
        LABEL_SELECT.format(role="'student'", model="'student'", prompt="null", table="student_labels"),
    ]
)
VOTES_SQL = (
    LABEL_SELECT.format(role="'teacher_member'", model="model", prompt="prompt_id", table="teacher_label_votes")
    + " where labeler_id not in (select distinct labeler_id from teacher_labels)"
)
TOKENS_SQL = """
select model, prompt_id, count(*) as calls, sum(prompt_tokens) as prompt_tokens,
       sum(completion_tokens) as completion_tokens
from llm_cache group by model, prompt_id
"""


@dg.asset(kinds={"duckdb", "python"}, pool=WRITER_POOL, group_name="judgments")
def human_benchmark(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Human relevance judgments (query, document, grade 0-3) with the texts: the reference judgments
    authored with the demo corpus, or any judgments folder (``RELABEL_JUDGMENTS``; TREC or BEIR layout,
    detected from its files), sampled to at most ``judgments_max_pairs`` pairs stratified by grade."""
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


def _image(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG embedded in Markdown metadata (the Dagster UI renders data URIs)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _labels(duckdb: DuckDBResource, judgments: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Teacher, teacher vote-member, student and imported labels (``<judgments>/runs/`` label files), and
    the retrieval runs found there."""
    with duckdb.get_connection() as conn:
        labels = conn.execute(LABELS_SQL).df()
        if table_exists(conn, "teacher_label_votes"):
            labels = pd.concat([labels, conn.execute(VOTES_SQL).df()], ignore_index=True)
    imported, systems = folder_runs(judgments)
    frames = [
        run.assign(
            pair_source="benchmark",
            labeler_id=f"imported:{name}",
            role="imported",
            model=name,
            prompt_id=None,
            status="ok",
            expected_grade=float("nan"),
            latency_s=float("nan"),
        )
        for name, run in imported.items()
    ]
    return pd.concat([labels, *frames], ignore_index=True) if frames else labels, systems


STUDENT_PROBS_SQL = (
    "select pair_source, qid, doc_id, grade, expected_grade, p0, p1, p2, p3 from student_labels "
    "where status = 'ok' and pair_source = 'benchmark'"
)


def _cascade(
    duckdb: DuckDBResource, labels: pd.DataFrame, human: pd.DataFrame, cost: pd.DataFrame, settings: PipelineSettings
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The cost dial on the judged pairs: the cascade at ``RELABEL_TEACHER_SAMPLE_RATE`` with
    ``RELABEL_TEACHER_ROUTING`` as one more labeler (its cost row: teacher share x teacher + student), and its
    curve by teacher share. Unchanged inputs and an empty curve when student or teacher labels are missing."""
    from relabel.teacher.routing import cascade_curve, cascade_frame

    with duckdb.get_connection() as conn:
        if not (table_exists(conn, "student_labels") and table_exists(conn, "student_checkpoint")):
            return labels, cost, pd.DataFrame()
        student = conn.execute(STUDENT_PROBS_SQL).df()
        thresholds = json.loads(
            conn.execute("select thresholds from student_checkpoint order by created_at desc limit 1").fetchall()[0][0]
        )
    benchmark = labels[(labels["status"] == "ok") & (labels["pair_source"] == "benchmark")]
    teachers = benchmark[benchmark["role"] == "teacher"]
    if student.empty or teachers.empty:
        return labels, cost, pd.DataFrame()
    teacher_id = sorted(teachers["labeler_id"].unique())[0]
    teacher = teachers[teachers["labeler_id"] == teacher_id]
    share, policy = settings.teacher_sample_rate, settings.teacher_routing
    rows = cascade_frame(
        student,
        teacher,
        share,
        policy,
        settings.teacher_uncertainty,
        settings.teacher_random_slice,
        settings.seed,
        thresholds,
    )
    curve = cascade_curve(
        human,
        student,
        teacher,
        variant=settings.teacher_uncertainty,
        random_share=settings.teacher_random_slice,
        thresholds=thresholds,
    )
    price = cost.set_index("labeler_id")["usd_per_1k_labels"] if len(cost) else pd.Series(dtype=float)
    student_ids = sorted(labels[labels["role"] == "student"]["labeler_id"].unique())
    student_id = str(student_ids[0]) if student_ids else ""
    teacher_share = float((rows["labeler_kind"] == "teacher").mean())
    usd = teacher_share * price.get(teacher_id, float("nan")) + price.get(student_id, 0.0)
    cascade_cost = {
        "labeler_id": rows["labeler_id"].iloc[0],
        "role": "cascade",
        "model": f"{teacher_id} + {student_id}",
        "labels": len(rows),
        "usd_per_1k_labels": usd,
        "price_basis": f"teacher share {teacher_share:.1%} x teacher + student",
    }
    return (
        pd.concat([labels, rows.drop(columns=["labeler_kind", "routing_reason", "routing_score"])], ignore_index=True),
        pd.concat([cost, pd.DataFrame([cascade_cost])], ignore_index=True),
        curve,
    )


def _tokens(duckdb: DuckDBResource) -> pd.DataFrame | None:
    with duckdb.get_connection() as conn:
        return conn.execute(TOKENS_SQL).df() if table_exists(conn, "llm_cache") else None


@dg.asset(
    deps=["teacher_labels", "student_labels", "human_benchmark"],
    kinds={"duckdb", "python"},
    pool=WRITER_POOL,
    group_name="evaluation",
)
def agreement_report(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Agreement of every labeler (each teacher, the student, label files in the judgments folder's
    ``runs/``) with the human judgments, and of the student with the teacher: Cohen's, quadratic and binary
    kappa, exact accuracy, Krippendorff's alpha, nDCG@10 and pairwise accuracy of the labeler's ranking,
    each with a query-bootstrap 95% interval; confusion matrices, grade distributions, per-query table,
    cost and speed; the cost dial (the student-teacher cascade at the inbox's teacher share and routing, and its
    curve by teacher share). Written to ``<data>/reports`` as Markdown, HTML and JSON with PNG plots; the per-query
    and cost tables are also stored as ``agreement_per_query`` and ``labeler_cost``. Headline metadata: Cohen's
    kappa of the teacher, the student and the cascade against the human judgments (``teacher_kappa``, ...)."""
    from relabel.evaluation.plots import report_plots  # matplotlib loads only when the report is built

    started = time.perf_counter()
    ensure_label_views(duckdb, settings)
    human = read_sql(duckdb, "select qid, doc_id, grade from human_benchmark")
    labels, systems = _labels(duckdb, settings.judgments)
    timed = labels[labels["role"].isin(["teacher", "teacher_member", "student"])]
    cost = cost_table(timed, _tokens(duckdb), settings.hourly_rate_usd)
    labels, cost, curve = _cascade(duckdb, labels, human, cost, settings)
    report = build_report(human, labels, runs=systems or None, cost=cost, seed=settings.seed)
    report.cascade = curve
    plots = report_plots(report)
    written = write_report(report, Path(settings.data_dir) / "reports", plots)
    with duckdb.get_connection() as conn:
        for name, frame in (("agreement_per_query", report.per_query), ("labeler_cost", cost)):
            if len(frame.columns):
                replace_table(conn, name, frame)
    per_query = report.per_query[report.per_query["reference"] == "human"] if len(report.per_query) else None
    return write_asset_table(
        duckdb,
        "agreement_report",
        report.table,
        started,
        report=dg.MetadataValue.md(to_markdown(report.table) + "\n" + "\n".join(f"- {n}" for n in report.notes)),
        cost_and_speed=dg.MetadataValue.md(cost_markdown(cost) if len(cost) else "no timed labelers"),
        confusion_matrices=_image(plots["confusion_matrices"], "confusion matrices"),
        grade_distributions=_image(plots["grade_distributions"], "grade distributions"),
        per_query_kappa=_image(plots["per_query_kappa"], "per-query kappa"),
        per_query=dg.MetadataValue.md(
            per_query.head(200).round(3).to_markdown(index=False) if per_query is not None else "no per-query rows"
        ),
        report_path=dg.MetadataValue.path(str(written["markdown"])),
        report_html=dg.MetadataValue.path(str(written["html"])),
        report_json=dg.MetadataValue.path(str(written["json"])),
        **{name: dg.MetadataValue.float(round(value, 4)) for name, value in headline_kappas(report.table).items()},
    )
