"""teacher_labels: the teacher LLM's 0-3 grade for every candidate-pool pair and every judged pair."""

import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.grading import label_pairs
from relabel_assets.common import WRITER_POOL, write_asset_table
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


@dg.asset(
    deps=["candidate_pools", "human_benchmark"], kinds={"duckdb", "litellm"}, pool=WRITER_POOL, group_name="labeling"
)
def teacher_labels(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, llm: LLMGateway, settings: PipelineSettings
) -> dg.MaterializeResult:
    """NIST-style 0-3 grades from the teacher LLM (prompt file ``grade_nist``) for every candidate-pool
    pair and every human-judged pair. With logprobs the four grade-token probabilities and the expected
    grade are stored; otherwise the answer is parsed strictly. Unparseable answers are kept as
    ``unparsed`` and failed calls as ``failed``, never as a grade. Answers are cached in DuckDB."""
    started = time.perf_counter()
    client = llm.client()
    with duckdb.get_connection() as conn:
        pairs = conn.execute(PAIRS_SQL).df().to_dict("records")
        context.log.info(f"grading {len(pairs)} pairs with {client.model}")
        rows = label_pairs(
            conn,
            client,
            pairs,
            use_logprobs=llm.use_logprobs,
            max_doc_chars=settings.max_doc_chars,
            progress=lambda n: n % 25 == 0 and context.log.info(f"graded {n}/{len(pairs)} pairs"),
        )
    frame = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    status = frame["status"].value_counts().to_dict()
    return write_asset_table(
        duckdb,
        "teacher_labels",
        frame,
        started,
        llm_calls=dg.MetadataValue.int(client.calls_made),
        status_counts=dg.MetadataValue.json(status),
        parse_failure_rate=dg.MetadataValue.float(round(status.get("unparsed", 0) / max(len(frame), 1), 4)),
        grade_distribution=dg.MetadataValue.json(
            frame.loc[frame.status == "ok", "grade"].astype(int).value_counts().sort_index().to_dict()
        ),
    )
