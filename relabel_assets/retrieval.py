"""bm25_index and candidate_pools: BM25 over the corpus and per-query pools with hard negatives."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.retrieval import BM25Index, build_pools, near_duplicates
from relabel.warehouse import read_table
from relabel_assets.common import WRITER_POOL, read_sql, write_asset_table
from resources.model_store import ModelStore
from resources.settings import PipelineSettings


def current_index_path(duckdb: DuckDBResource) -> Path:
    """Folder of the most recently registered BM25 index."""
    frame = read_sql(duckdb, "select path from bm25_index order by built_at desc limit 1")
    return Path(frame["path"].iloc[0])


@dg.asset(deps=["seed_corpus"], kinds={"duckdb", "bm25s"}, pool=WRITER_POOL, group_name="retrieval")
def bm25_index(duckdb: DuckDBResource, model_store: ModelStore) -> dg.MaterializeResult:
    """BM25 index (bm25s, English stemming and stopwords; title, author, path and body) saved on disk
    under its content hash and registered in DuckDB with path, hash and size."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        documents = read_table(conn, "seed_corpus").to_dict("records")
    staging = model_store.staging_dir("bm25")
    BM25Index.build(documents).save(staging)
    path, digest = model_store.commit("bm25", staging)
    frame = pd.DataFrame(
        [
            {
                "index_id": digest[:16],
                "path": str(path),
                "sha256": digest,
                "n_docs": len(documents),
                "tokenizer": "bm25s regex + english stopwords + snowball stemmer",
                "built_at": pd.Timestamp.now(),
            }
        ]
    )
    return write_asset_table(duckdb, "bm25_index", frame, started, path=dg.MetadataValue.path(str(path)))


@dg.asset(deps=["synthetic_queries", "bm25_index"], kinds={"duckdb", "bm25s"}, pool=WRITER_POOL, group_name="retrieval")
def candidate_pools(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Per synthetic query: its seed document, the top-k BM25 hard negatives (excluding the seed and its
    near-duplicates) and random negatives, with BM25 rank and score. Deterministic for a given seed."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        queries = read_table(conn, "synthetic_queries").to_dict("records")
        texts = dict(conn.execute("select doc_id, text from seed_corpus").fetchall())
    index = BM25Index.load(current_index_path(duckdb))
    rows = (
        build_pools(
            queries,
            index,
            near_duplicates(texts),
            bm25_negatives=settings.bm25_negatives,
            random_negatives=settings.random_negatives,
            seed=settings.seed,
        )
        if queries
        else []
    )
    frame = pd.DataFrame(rows, columns=["qid", "doc_id", "role", "bm25_rank", "bm25_score"])
    seed_top1 = frame[(frame.role == "seed") & (frame.bm25_rank == 1)].shape[0]
    return write_asset_table(
        duckdb,
        "candidate_pools",
        frame,
        started,
        queries=dg.MetadataValue.int(len(queries)),
        roles=dg.MetadataValue.json(frame["role"].value_counts().to_dict()),
        seed_ranked_first_share=dg.MetadataValue.float(round(seed_top1 / max(len(queries), 1), 3)),
    )
