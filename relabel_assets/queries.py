"""synthetic_queries: realistic enterprise search queries written by the LLM for each seed document."""

import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.progress import ProgressBars
from relabel.retrieval import BM25Index, seed_ranks
from relabel.synthesis.queries import synthesize_queries
from relabel.synthesis.query_stats import candidate_diversity, difficulty, difficulty_by_type, query_set_stats
from relabel.warehouse import read_table, replace_table
from relabel_assets.common import WRITER_POOL, guard_full_rebuild, write_asset_table
from relabel_assets.run_config import SyntheticQueriesConfig, positive
from resources.llm import LLMGateway
from resources.settings import PipelineSettings

QUERY_COLUMNS = ["qid", "doc_id", "query_type", "query_text", "model", "prompt_version"]
REJECT_COLUMNS = ["doc_id", "query_type", "query_text", "reason", "detail", "model", "prompt_version"]


@dg.asset(deps=["seed_corpus"], kinds={"duckdb", "litellm"}, pool=WRITER_POOL, group_name="synthesis")
def synthetic_queries(
    context: dg.AssetExecutionContext,
    config: SyntheticQueriesConfig,
    duckdb: DuckDBResource,
    llm: LLMGateway,
    settings: PipelineSettings,
) -> dg.MaterializeResult:
    """Search queries an employee would type for each seed document, of rotating kinds (keyword, question,
    metadata, acronym, partial recall; JSON answer, strictly parsed). Too short or long, wrong-language,
    title or document copies, duplicates and near-duplicates go to ``synthetic_query_rejects`` with the
    reason. Metadata: diversity, length, type mix and BM25 difficulty (from an in-memory index built like
    ``bm25_index``). Queries per document can be chosen in the launchpad. LLM answers are cached in DuckDB, so
    re-runs cost nothing."""
    started = time.perf_counter()
    guard_full_rebuild(duckdb, settings.rebootstrap, "synthetic_queries")
    queries_per_doc = positive("queries_per_doc", config.queries_per_doc) or settings.queries_per_doc
    client = llm.client("queries")
    with duckdb.get_connection() as conn, ProgressBars("documents", context.log.info, log_every=10) as bars:
        documents = read_table(conn, "seed_corpus").to_dict("records")
        accepted, rejects = synthesize_queries(
            conn,
            client,
            documents,
            queries_per_doc=queries_per_doc,
            max_doc_chars=settings.max_doc_chars,
            progress=lambda n: bars("query writing", n, len(documents)),
            policy=llm.policy(),
        )
        replace_table(conn, "synthetic_query_rejects", pd.DataFrame(rejects, columns=REJECT_COLUMNS))
    frame = pd.DataFrame(accepted, columns=QUERY_COLUMNS)
    stats = query_set_stats(accepted)
    diversity = candidate_diversity(accepted + [r for r in rejects if r["query_text"]])
    ranks = seed_ranks(accepted, BM25Index.build(documents)) if accepted else []
    hardness = difficulty(ranks)
    reasons = pd.Series([r["reason"] for r in rejects], dtype=object).value_counts().to_dict()
    return write_asset_table(
        duckdb,
        "synthetic_queries",
        frame,
        started,
        queries_per_doc=dg.MetadataValue.int(queries_per_doc),
        query_model=dg.MetadataValue.text(client.model),
        llm_calls=dg.MetadataValue.int(client.calls_made),
        usd=dg.MetadataValue.float(round(client.spent_usd, 6)),
        rejected=dg.MetadataValue.int(len(rejects)),
        reject_reasons=dg.MetadataValue.json(reasons),
        documents_without_query=dg.MetadataValue.int(len(documents) - frame["doc_id"].nunique()),
        distinct_1=dg.MetadataValue.float(float(stats["distinct_1"] or 0.0)),
        distinct_2=dg.MetadataValue.float(float(stats["distinct_2"] or 0.0)),
        near_duplicate_share=dg.MetadataValue.float(stats["near_duplicate_share"]),
        query_length=dg.MetadataValue.json(stats["length"]),
        query_types=dg.MetadataValue.json(stats["types"]),
        candidate_diversity=dg.MetadataValue.json(diversity),
        seed_rank_1_share=dg.MetadataValue.float(hardness["seed_rank_1"]),
        seed_top_10_share=dg.MetadataValue.float(hardness["seed_top_10"]),
        seed_top_100_share=dg.MetadataValue.float(hardness["seed_top_100"]),
        difficulty_by_type=dg.MetadataValue.json(difficulty_by_type(ranks, [q["query_type"] for q in accepted])),
    )
