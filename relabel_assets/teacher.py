"""teacher_labels: the teacher LLM's 0-3 grade for every candidate-pool pair and every judged pair."""

import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.llm.prompts import load_prompt
from relabel.progress import ProgressBars
from relabel.shard_store import in_shard
from relabel.teacher.labels import LABEL_COLUMNS, TeacherGrades, grade_with_teachers
from relabel.warehouse import read_table
from relabel_assets.common import PAIRS_TABLE, WRITER_POOL, ShardWork, shard_partitions, write_label_shard
from relabel_assets.run_config import TeacherLabelsConfig, positive
from resources.llm import LLMGateway
from resources.settings import PipelineSettings


def teacher_grades(
    conn: duckdb.DuckDBPyConnection,
    pairs: list[dict],
    llm: LLMGateway,
    settings: PipelineSettings,
    progress: Callable[[str, int, int], Any] | None = None,
    config: TeacherLabelsConfig | None = None,
) -> TeacherGrades:
    """The teacher the settings choose (recorded runs, with or without the LLM fallback; the LLM teacher with
    ensemble members and samples), for the full pipeline and inbox batches alike; one budget and one rate
    limit for every model and sample. A launchpad ``config`` overrides the model (then it is the only teacher
    and recorded runs are not used), the prompt and the samples."""
    config = config or TeacherLabelsConfig()
    models = [config.model] if config.model else llm.teacher_models()
    return grade_with_teachers(
        conn,
        pairs,
        runs=[] if config.model else settings.teacher_runs,
        clients=[llm.client(model=model) for model in models],
        samples_per_model=positive("samples", config.samples) or llm.samples_per_model,
        sample_temperature=llm.sample_temperature,
        use_logprobs=llm.use_logprobs,
        max_doc_chars=settings.max_doc_chars,
        policy=llm.policy(),
        fallback=settings.teacher_runs_fallback,
        progress=progress,
        prompt_id=load_prompt(config.prompt_id or settings.teacher_prompt_id).prompt_id,
    )


def build_teacher_labels(shards: int = 1) -> dg.AssetsDefinition:
    """The ``teacher_labels`` asset: unpartitioned with one shard (it holds the DuckDB writer pool), else one
    partition per shard, which reads the warehouse read-only and writes only its Parquet files."""

    @dg.asset(
        name="teacher_labels",
        deps=[PAIRS_TABLE],
        kinds={"duckdb", "litellm", "parquet"},
        pool=WRITER_POOL if shards == 1 else None,
        partitions_def=shard_partitions(shards),
        group_name="labeling",
    )
    def _teacher_labels(
        context: dg.AssetExecutionContext,
        config: TeacherLabelsConfig,
        duckdb: DuckDBResource,
        llm: LLMGateway,
        settings: PipelineSettings,
    ) -> dg.MaterializeResult:
        """NIST-style 0-3 grades from the teacher (prompt file ``grade_nist`` by default) for every candidate-pool
        pair and every human-judged pair. With logprobs the four grade-token probabilities and the expected grade
        are stored; otherwise the answer is parsed strictly. Unparseable answers are kept as ``unparsed``, failed
        calls as ``failed`` and budget stops as ``skipped_budget``, never as a grade. Several teacher models or
        samples (or recorded labelings, ``RELABEL_TEACHER_RUNS``) are combined by vote, members kept in
        ``teacher_label_votes``. Model, prompt and samples can be chosen in the launchpad; each row keeps them
        and the run id. Answers are cached in DuckDB and every call is logged in ``llm_calls``. Rows are written
        as Parquet shards (``RELABEL_SHARDS``, under ``RELABEL_LABEL_STORE_URL``) that DuckDB reads through a
        view named ``teacher_labels``."""
        started = time.perf_counter()
        recorded = [] if config.model else settings.teacher_runs
        samples = 1 if recorded else positive("samples", config.samples) or llm.samples_per_model
        prompt = load_prompt(config.prompt_id or settings.teacher_prompt_id)
        with ShardWork(context, duckdb, settings, "teacher_labels") as work:
            pairs = in_shard(read_table(work.conn, PAIRS_TABLE), work.shard, work.shards).to_dict("records")
            grading_started = time.perf_counter()
            with ProgressBars("calls", context.log.info) as bars:
                grades = teacher_grades(work.conn, pairs, llm, settings, bars, config)
            grading_s = time.perf_counter() - grading_started
            votes = pd.DataFrame(grades.votes, columns=LABEL_COLUMNS)
            work.write("teacher_label_votes", votes)
            frame = pd.DataFrame(grades.rows, columns=[*LABEL_COLUMNS, "votes", "agreement"]).assign(
                samples=samples, run_id=context.run_id
            )
            work.write("teacher_labels", frame)
        status = frame["status"].value_counts().to_dict()
        asked = int((~votes["from_cache"].fillna(True).astype(bool)).sum())
        models = [config.model] if config.model else llm.teacher_models()
        return write_label_shard(
            work,
            frame,
            started,
            teacher_model=dg.MetadataValue.text(", ".join(recorded) if recorded else ", ".join(models)),
            prompt_id=dg.MetadataValue.text("recorded" if recorded else prompt.prompt_id),
            prompt_version=dg.MetadataValue.text("recorded" if recorded else prompt.version),
            samples=dg.MetadataValue.int(samples),
            llm_calls=dg.MetadataValue.int(grades.calls),
            usd=dg.MetadataValue.float(round(grades.usd, 6)),
            # the teacher's speed on the pairs it was asked now (cached answers cost no time)
            labels_per_s=dg.MetadataValue.float(
                round(asked / grading_s, 2) if asked and grading_s > 0 else float("nan")
            ),
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

    return _teacher_labels


teacher_labels = build_teacher_labels()
