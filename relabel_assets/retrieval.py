"""bm25_index and candidate_pools: BM25 over the corpus and per-query pools with hard negatives."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.retrieval import BM25Index, query_pools
from relabel.synthesis.query_stats import difficulty, difficulty_by_type
from relabel.warehouse import read_table
from relabel_assets.common import WRITER_POOL, guard_full_rebuild, read_sql, write_asset_table
from resources.model_store import ModelStore
from resources.settings import PipelineSettings


def current_index_path(duckdb: DuckDBResource) -> Path:
    """Folder of the most recently registered BM25 index."""
    frame = read_sql(duckdb, "select path from bm25_index order by built_at desc limit 1")
    return Path(frame["path"].iloc[0])


@dg.asset(deps=["seed_corpus"], kinds={"duckdb", "bm25s"}, pool=WRITER_POOL, group_name="retrieval")
def bm25_index(duckdb: DuckDBResource, model_store: ModelStore) -> dg.MaterializeResult:
    """BM25 index (bm25s, English stemming and stopwords) over passages of every document, each carrying
    title, author, path, type and date; a document scores as its best passage (maxP). Saved on disk under
    its content hash and registered in DuckDB with path, hash and size; reloaded memory-mapped."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        documents = read_table(conn, "seed_corpus").to_dict("records")
    staging = model_store.staging_dir("bm25")
    index = BM25Index.build(documents)
    index.save(staging)
    path, digest = model_store.commit("bm25", staging)
    frame = pd.DataFrame(
        [
            {
                "index_id": digest[:16],
                "path": str(path),
                "sha256": digest,
                "n_docs": len(documents),
                "n_passages": index.n_passages,
                "passage_words": index.passage_words,
                "passage_stride": index.passage_stride,
                "tokenizer": "bm25s regex + english stopwords + snowball stemmer",
                "fields": "title x2 + author, path, type, modified (+ month, year) + body passage; doc = max passage",
                "built_at": pd.Timestamp.now(),
            }
        ]
    )
    return write_asset_table(
        duckdb,
        "bm25_index",
        frame,
        started,
        path=dg.MetadataValue.path(str(path)),
        n_passages=dg.MetadataValue.int(index.n_passages),
    )


@dg.asset(deps=["synthetic_queries", "bm25_index"], kinds={"duckdb", "bm25s"}, pool=WRITER_POOL, group_name="retrieval")
def candidate_pools(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Per synthetic query: its seed document, the top-k BM25 hard negatives (excluding the seed and its
    near-duplicates) and random negatives, with exact BM25 rank and score. Deterministic for a given seed.
    Metadata: the queries' difficulty (share whose seed ranks 1st, in the top 10, in the top 100)."""
    started = time.perf_counter()
    guard_full_rebuild(duckdb, settings.rebootstrap, "candidate_pools")
    with duckdb.get_connection() as conn:
        queries = read_table(conn, "synthetic_queries").to_dict("records")
        texts = dict(conn.execute("select doc_id, text from seed_corpus").fetchall())
    index = BM25Index.load(current_index_path(duckdb))
    rows = query_pools(
        queries,
        index,
        texts,
        bm25_negatives=settings.bm25_negatives,
        random_negatives=settings.random_negatives,
        seed=settings.seed,
    )
    frame = pd.DataFrame(rows, columns=["qid", "doc_id", "role", "bm25_rank", "bm25_score"])
    seed_ranks = [row["bm25_rank"] for row in rows if row["role"] == "seed"]
    hardness = difficulty(seed_ranks)
    types = [q.get("query_type") for q in queries]
    return write_asset_table(
        duckdb,
        "candidate_pools",
        frame,
        started,
        queries=dg.MetadataValue.int(len(queries)),
        roles=dg.MetadataValue.json(frame["role"].value_counts().to_dict()),
        seed_ranked_first_share=dg.MetadataValue.float(hardness["seed_rank_1"]),
        seed_top_10_share=dg.MetadataValue.float(hardness["seed_top_10"]),
        seed_top_100_share=dg.MetadataValue.float(hardness["seed_top_100"]),
        difficulty=dg.MetadataValue.json(hardness),
        difficulty_by_type=dg.MetadataValue.json(difficulty_by_type(seed_ranks, types) if rows else {}),
    )
