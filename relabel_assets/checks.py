"""Data-quality checks on every table asset (great-expectations expectations, surfaced as asset checks).
Blocking checks stop downstream assets in the same run when bad data would poison them."""

import json
from collections.abc import Callable

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.checks import expectations as quality
from relabel.checks.custom import failure_rate_below, pools_hold_seed_and_negative
from relabel.checks.expectations import CheckOutcome
from relabel.shard_store import SHARDED_TABLES
from relabel.synthesis.query_stats import diversity_outcome, near_duplicate_free, seed_retrieval_outcome
from relabel_assets.common import WRITER_POOL, read_sql
from resources.settings import PipelineSettings

Evaluate = Callable[[pd.DataFrame], CheckOutcome]


def _result(outcome: CheckOutcome, blocking: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.description,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={"check": outcome.name, "details": dg.MetadataValue.json(json.loads(json.dumps(outcome.details)))},
    )


def table_check(
    asset: str, name: str, evaluate: Evaluate, *, blocking: bool = True, sql: str | None = None, description: str = ""
) -> dg.AssetChecksDefinition:
    """An asset check that loads the asset's table (or ``sql``) and runs one expectation on it. The sharded label
    tables are read from their Parquet shards in the label store, not from the warehouse, so a shard's checks
    run beside other shards without opening the DuckDB file."""
    description = description or name.replace("_", " ")
    if asset in SHARDED_TABLES:

        @dg.asset_check(asset=asset, name=name, blocking=blocking, description=description)
        def _shard_check(settings: PipelineSettings) -> dg.AssetCheckResult:
            return _result(evaluate(settings.label_store().read(asset, settings.shards, sql)), blocking)

        return _shard_check

    @dg.asset_check(asset=asset, name=name, blocking=blocking, pool=WRITER_POOL, description=description)
    def _check(duckdb: DuckDBResource) -> dg.AssetCheckResult:
        return _result(evaluate(read_sql(duckdb, sql or f'select * from "{asset}"')), blocking)

    return _check


def table_checks() -> list[dg.AssetChecksDefinition]:
    """Every check of the pipeline's tables."""
    unique, non_empty, between = quality.expect_unique_key, quality.expect_non_empty_text, quality.expect_values_between
    rows_at_least = quality.expect_row_count_at_least
    ok_pool_labels = "select * from {t} where status = 'ok' and pair_source = 'pool'"
    return [
        table_check("seed_corpus", "unique_doc_id", lambda f: unique(f, ["doc_id"])),
        table_check("seed_corpus", "non_empty_text", lambda f: non_empty(f, "text")),
        table_check("seed_corpus", "has_documents", lambda f: rows_at_least(f, 1)),
        table_check("synthetic_queries", "unique_qid", lambda f: unique(f, ["qid"])),
        table_check("synthetic_queries", "non_empty_query", lambda f: non_empty(f, "query_text")),
        table_check("synthetic_queries", "has_queries", lambda f: rows_at_least(f, 1)),
        table_check("bm25_index", "index_registered", lambda f: non_empty(f, "sha256")),
        table_check("candidate_pools", "unique_pair", lambda f: unique(f, ["qid", "doc_id"])),
        table_check("candidate_pools", "pool_has_seed_and_negative", pools_hold_seed_and_negative),
        table_check("teacher_labels", "unique_label", lambda f: unique(f, ["pair_source", "qid", "doc_id"])),
        table_check("teacher_labels", "grades_in_range", lambda f: between(f, "grade", 0, 3, ignore_null=True)),
        table_check(
            "teacher_labels",
            "grade_distribution_not_degenerate",
            lambda f: quality.expect_no_dominant_value(f, "grade", 0.9),
            sql=ok_pool_labels.format(t="teacher_labels"),
            description="no grade holds more than 90% of the teacher's pool labels",
        ),
        table_check(
            "teacher_labels", "parse_failures_below_20_percent", lambda f: failure_rate_below(f, 0.2), blocking=False
        ),
        table_check("pairs_to_grade", "unique_pair", lambda f: unique(f, ["pair_source", "qid", "doc_id"])),
        table_check("pairs_to_grade", "non_empty_text", lambda f: non_empty(f, "text")),
        table_check("training_set", "unique_pair", lambda f: unique(f, ["qid", "doc_id"])),
        table_check("training_set", "non_empty_text", lambda f: non_empty(f, "doc_text")),
        table_check("training_set", "grades_in_range", lambda f: between(f, "grade", 0, 3)),
        table_check("training_set", "has_rows", lambda f: rows_at_least(f, 1)),
        table_check("student_checkpoint", "checkpoint_registered", lambda f: non_empty(f, "sha256")),
        table_check("student_labels", "unique_label", lambda f: unique(f, ["pair_source", "qid", "doc_id"])),
        table_check("student_labels", "grades_in_range", lambda f: between(f, "grade", 0, 3)),
        table_check(
            "student_labels",
            "grade_distribution_not_degenerate",
            lambda f: quality.expect_no_dominant_value(f, "grade", 0.9),
            blocking=False,
        ),
        table_check("human_benchmark", "unique_judgment", lambda f: unique(f, ["qid", "doc_id"])),
        table_check("human_benchmark", "grades_in_range", lambda f: between(f, "grade", 0, 3)),
        table_check("human_benchmark", "non_empty_text", lambda f: non_empty(f, "text")),
        table_check("agreement_report", "has_rows", lambda f: rows_at_least(f, 1), blocking=False),
        table_check(
            "synthetic_queries",
            "query_diversity_not_collapsed",
            diversity_outcome,
            blocking=False,
            sql="select doc_id, query_text from synthetic_queries union all "
            "select doc_id, query_text from synthetic_query_rejects where query_text is not null",
            description="over every generated query (kept or rejected): at most half of the documents have mostly "
            "near-duplicate queries and at most half of the queries repeat another document's query",
        ),
        table_check(
            "synthetic_queries",
            "rejects_have_reasons",
            lambda f: non_empty(f, "reason") if len(f) else rows_at_least(f, 0),
            sql="select * from synthetic_query_rejects",
            description="every rejected query in synthetic_query_rejects has a reason",
        ),
        table_check(
            "candidate_pools",
            "seed_in_bm25_top_100",
            seed_retrieval_outcome,
            blocking=False,
            sql="select * from candidate_pools where role = 'seed'",
            description="at least half of the queries rank their seed document in the BM25 top 100",
        ),
    ]


def incremental_checks() -> list[dg.AssetChecksDefinition]:
    """Checks of the incremental (inbox batch) tables."""
    unique, between = quality.expect_unique_key, quality.expect_values_between
    return [
        table_check(
            "inbox_documents",
            "one_current_version_per_document",
            lambda f: unique(f, ["doc_id"]),
            sql="select doc_id from document_versions where retired_at is null",
        ),
        table_check(
            "inbox_bm25_index",
            "index_registered",
            lambda f: quality.expect_non_empty_text(f, "sha256"),
            sql="select sha256 from inbox_bm25_index",
        ),
        table_check(
            "inbox_queries",
            "non_empty_query",
            lambda f: quality.expect_non_empty_text(f, "query_text"),
            sql="select query_text from label_queries",
        ),
        table_check(
            "inbox_candidate_pairs",
            "pairs_reference_known_versions",
            lambda f: between(f, "unknown", 0, 0),
            sql="select count(*) filter (where d.doc_id is null) as unknown from label_pairs p left join "
            "document_versions d on d.doc_id = p.doc_id and d.content_hash = p.content_hash",
            description="every pair in label_pairs points at a stored document version",
        ),
        table_check(
            "inbox_teacher_labels",
            "grades_in_range",
            lambda f: between(f, "grade", 0, 3, ignore_null=True),
            sql="select grade from inbox_teacher_labels",
        ),
        table_check(
            "relevance_labels",
            "one_current_label_per_pair",
            lambda f: unique(f, ["qid", "doc_id", "content_hash"]),
            sql="select qid, doc_id, content_hash from relevance_labels where retired_at is null",
            description="every (query, document version) has at most one current label",
        ),
        table_check(
            "relevance_labels",
            "grades_in_range",
            lambda f: between(f, "grade", 0, 3),
            sql="select grade from relevance_labels",
        ),
        table_check(
            "relevance_labels",
            "no_current_label_on_a_retired_version",
            lambda f: between(f, "n", 0, 0),
            sql="select count(*) as n from relevance_labels r join document_versions d on d.doc_id = r.doc_id and "
            "d.content_hash = r.content_hash where r.retired_at is null and d.retired_at is not null",
            description="labels of superseded or deleted document versions are retired",
        ),
        table_check(
            "relevance_labels",
            "no_current_label_on_a_retired_query",
            lambda f: between(f, "n", 0, 0),
            sql="select count(*) as n from relevance_labels r left join label_queries q using (qid) "
            "where r.retired_at is null and (q.qid is null or q.retired_at is not null)",
            description="labels of pairs whose query was retired (document deleted, query no longer fits) are retired",
        ),
        table_check(
            "inbox_queries",
            "no_current_query_of_a_deleted_document",
            lambda f: between(f, "n", 0, 0),
            sql="select count(*) as n from label_queries q join document_versions d on d.doc_id = q.doc_id "
            "and d.retired_at is null where q.retired_at is null and d.is_tombstone",
            description="the queries of a deleted document are retired",
        ),
        table_check(
            "inbox_queries",
            "no_near_duplicate_current_queries",
            near_duplicate_free,
            blocking=False,
            sql="select qid, doc_id, query_text from label_queries where retired_at is null",
            description="no two current queries (any batch) are near-duplicates (stemmed-term Jaccard >= 0.75)",
        ),
    ]
