"""synthetic_queries: realistic enterprise search queries written by the LLM for each seed document."""

import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.query_synthesis import synthesize_queries
from relabel.warehouse import read_table, replace_table
from relabel_assets.common import WRITER_POOL, write_asset_table
from resources.llm import LLMGateway
from resources.settings import PipelineSettings

QUERY_COLUMNS = ["qid", "doc_id", "query_text", "model", "prompt_version"]
REJECT_COLUMNS = ["doc_id", "query_text", "reason", "model", "prompt_version"]


@dg.asset(deps=["seed_corpus"], kinds={"duckdb", "litellm"}, pool=WRITER_POOL, group_name="synthesis")
def synthetic_queries(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, llm: LLMGateway, settings: PipelineSettings
) -> dg.MaterializeResult:
    """Search queries an employee would type for each seed document (JSON answer, strictly parsed).
    Duplicates, title copies, verbatim spans and length outliers go to ``synthetic_query_rejects``
    with the reason. LLM answers are cached in DuckDB, so re-runs cost nothing."""
    started = time.perf_counter()
    client = llm.client("queries")
    with duckdb.get_connection() as conn:
        documents = read_table(conn, "seed_corpus").to_dict("records")
        accepted, rejects = synthesize_queries(
            conn,
            client,
            documents,
            queries_per_doc=settings.queries_per_doc,
            max_doc_chars=settings.max_doc_chars,
            progress=lambda n: n % 10 == 0 and context.log.info(f"queries written for {n} documents"),
        )
        replace_table(conn, "synthetic_query_rejects", pd.DataFrame(rejects, columns=REJECT_COLUMNS))
    frame = pd.DataFrame(accepted, columns=QUERY_COLUMNS)
    reasons = pd.Series([r["reason"].split(":")[0] for r in rejects], dtype=object).value_counts().to_dict()
    return write_asset_table(
        duckdb,
        "synthetic_queries",
        frame,
        started,
        llm_calls=dg.MetadataValue.int(client.calls_made),
        rejected=dg.MetadataValue.int(len(rejects)),
        reject_reasons=dg.MetadataValue.json(reasons),
        documents_without_query=dg.MetadataValue.int(len(documents) - frame["doc_id"].nunique()),
    )
