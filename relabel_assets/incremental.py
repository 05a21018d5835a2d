"""Incremental relabeling, one partition per inbox batch: ingest document versions, update BM25, write
queries for new documents, find new pairs, sample teacher labels, student-label every new pair and merge
everything into ``relevance_labels``. Each asset only touches what its batch added, so a batch costs in
proportion to the batch; LLM calls happen only for new items (and are cached, so re-runs are free)."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb as duckdb_lib
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel import incremental as inc
from relabel.documents import Document, DocumentError, read_document
from relabel.paths import file_sha256
from relabel.query_synthesis import synthesize_queries
from relabel.retrieval import BM25Index, near_duplicate_candidates, passage_texts, tokenize
from relabel.student import load_student, pair_text
from relabel.warehouse import table_exists
from relabel_assets.common import WRITER_POOL, column_schema, read_sql
from relabel_assets.partitions import inbox_batches
from relabel_assets.retrieval import query_pools
from relabel_assets.teacher import LABEL_COLUMNS, teacher_grades
from resources.llm import LLMGateway
from resources.model_store import ModelStore
from resources.settings import PipelineSettings

GROUP = "incremental"
DOC_FIELDS = list(Document.__dataclass_fields__)
NEW_VERSIONS_SQL = (
    "select {columns} from document_versions where batch_id = ? and change in ('new', 'changed') "
    "and retired_at is null order by doc_id"
)
CURRENT_DOCS_SQL = "select * from document_versions where retired_at is null and not is_tombstone order by doc_id"
CURRENT_KEYS_SQL = (
    "select doc_id, content_hash from document_versions where retired_at is null and not is_tombstone order by doc_id"
)


def _asset(**kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``dg.asset`` partitioned by inbox batch, in the ``incremental`` group, in the DuckDB writer pool."""
    return dg.asset(partitions_def=inbox_batches, pool=WRITER_POOL, group_name=GROUP, **kwargs)


def _read_batch_file(folder: Path, doc_id: str, expected_hash: str, max_bytes: int) -> Document:
    reason = inc.unreadable_reason(expected_hash)
    if reason is not None:
        raise DocumentError(reason)
    path = folder / inc.FILES_DIR / doc_id
    if not path.exists():
        raise DocumentError("snapshot file is missing from the batch folder")
    if file_sha256(path) != expected_hash:
        raise DocumentError("snapshot content does not match the hash in the manifest")
    return read_document(path, doc_id, max_bytes)


def _queries_to_retire(
    conn: duckdb_lib.DuckDBPyConnection, step: inc.VersionChange, new_doc: Document | None, settings: PipelineSettings
) -> list[dict]:
    """The current queries of a changed or deleted document that no longer hold (``inc.queries_to_retire``)."""
    queries = conn.execute(
        "select qid, query_text from label_queries where doc_id = ? and retired_at is null", [step.doc_id]
    ).df()
    if queries.empty:
        return []
    old = conn.execute(
        "select * from document_versions where doc_id = ? and version = ?", [step.doc_id, step.previous_version]
    ).df()
    return inc.queries_to_retire(
        queries.to_dict("records"),
        step.change,
        old.iloc[0].to_dict() if len(old) else None,
        new_doc.as_row() if new_doc else None,
        settings.query_fit_min_coverage,
    )


def _retire_queries(conn: duckdb_lib.DuckDBPyConnection, retired: list[dict], batch_id: str, now: pd.Timestamp) -> int:
    """Mark the queries retired (batch, reason, detail) and retire the current labels of every pair they are in
    (reason ``query_<reason>``); returns the number of labels retired. Nothing is deleted."""
    if not retired:
        return 0
    conn.register("_retired", pd.DataFrame(retired))
    try:
        conn.execute(
            "update label_queries q set retired_at = ?, retired_by_batch = ?, retired_reason = x.reason, "
            "retired_detail = x.detail from _retired x where q.qid = x.qid and q.retired_at is null",
            [now, batch_id],
        )
        return int(
            conn.execute(
                "update relevance_labels r set retired_at = ?, retired_by_batch = ?, "
                "retired_reason = 'query_' || x.reason from _retired x where r.qid = x.qid and r.retired_at is null",
                [now, batch_id],
            ).fetchall()[0][0]
        )
    finally:
        conn.unregister("_retired")


@_asset(kinds={"duckdb", "python"})
def inbox_documents(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings
) -> dg.MaterializeResult:
    """Ingest one inbox batch into ``document_versions``: a new file is version 1, a changed file (new content
    hash) a new version, a deleted file a tombstone; superseded versions and their labels in
    ``relevance_labels`` are retired (never deleted), and so are the document's queries that no longer hold
    (all of them when it is deleted; when changed, those the new version no longer covers) with the labels
    of every pair they are in, each with batch and reason. Unreadable files go to ``inbox_quarantine`` with the
    reason. The first batch imports the full pipeline's tables as batch ``baseline``."""
    started = time.perf_counter()
    batch_id = context.partition_key
    folder = settings.batches_path() / batch_id
    manifest = inc.BatchManifest.load(folder)
    now = pd.Timestamp.now()
    with duckdb.get_connection() as conn:
        inc.ensure_tables(conn)
        pending = inc.pending_rebootstrap(conn)
    if pending is not None:  # raised outside the connection, which an exception would leave open
        raise RuntimeError(
            f"relabel_job is rebuilding the baseline (re-bootstrap {pending} pending): run this batch again "
            "once relabel_job has finished"
        )
    with duckdb.get_connection() as conn:
        done = conn.execute("select * from inbox_batches where batch_id = ?", [batch_id]).df()
        if len(done):
            return dg.MaterializeResult(
                metadata={"already_ingested": True, **done.iloc[0].drop("batch_id").astype(str).to_dict()}
            )
        later = conn.execute("select batch_id from inbox_batches where sequence > ?", [manifest.sequence]).fetchall()
        if later:
            raise RuntimeError(f"batch {batch_id} arrives after the later batch {later[0][0]} was ingested")
        conn.execute("begin transaction")
        if not conn.execute("select count(*) from document_versions").fetchall()[0][0]:
            inc.import_baseline(conn, now)
        parsed: dict[str, Document] = {}
        quarantine = []
        for doc_id, content_hash in sorted(manifest.incoming.items()):
            try:
                parsed[doc_id] = _read_batch_file(folder, doc_id, content_hash, settings.max_doc_bytes)
            except (DocumentError, OSError) as error:
                quarantine.append(
                    {
                        "batch_id": batch_id,
                        "doc_id": doc_id,
                        "content_hash": None if inc.unreadable_reason(content_hash) else content_hash,
                        "reason": str(error),
                        "seen_at": now,
                    }
                )
                context.log.warning(f"quarantined {doc_id}: {error}")
        current = {
            doc_id: inc.CurrentVersion(version, content_hash, tombstone)
            for doc_id, version, content_hash, tombstone in conn.execute(
                "select doc_id, version, content_hash, is_tombstone from document_versions where retired_at is null"
            ).fetchall()
        }
        plan = inc.plan_versions(current, {d: doc.content_hash for d, doc in parsed.items()}, manifest.deleted)
        versions = []
        retired_queries: list[dict] = []
        for step in plan:
            if step.change in ("unchanged", "missing"):
                continue
            if step.change in ("changed", "deleted"):
                retired_queries += _queries_to_retire(conn, step, parsed.get(step.doc_id), settings)
            if step.previous_version is not None:
                conn.execute(
                    "update document_versions set retired_at = ?, retired_by_batch = ? "
                    "where doc_id = ? and version = ?",
                    [now, batch_id, step.doc_id, step.previous_version],
                )
                conn.execute(
                    "update relevance_labels set retired_at = ?, retired_by_batch = ?, retired_reason = ? "
                    "where doc_id = ? and retired_at is null",
                    [now, batch_id, f"document_{step.change}", step.doc_id],
                )
            doc = parsed.get(step.doc_id)
            fields = doc.as_row() if doc else {**dict.fromkeys(DOC_FIELDS), "doc_id": step.doc_id, "path": step.doc_id}
            versions.append(
                {
                    **fields,
                    "version": step.version,
                    "batch_id": batch_id,
                    "change": step.change,
                    "is_tombstone": step.change == "deleted",
                    "created_at": now,
                }
            )
        inc.insert_rows(conn, "document_versions", pd.DataFrame(versions))
        inc.insert_rows(conn, "inbox_quarantine", pd.DataFrame(quarantine))
        labels_of_retired_queries = _retire_queries(conn, retired_queries, batch_id, now)
        counts = {c: sum(s.change == c for s in plan) for c in ("new", "changed", "deleted", "unchanged")}
        conn.execute(
            "insert into inbox_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch_id,
                manifest.sequence,
                pd.Timestamp(manifest.created_at).tz_localize(None),
                now,
                counts["new"],
                counts["changed"],
                counts["deleted"],
                counts["unchanged"],
                len(quarantine),
            ],
        )
        conn.execute("commit")
    return dg.MaterializeResult(
        metadata={
            **{f"{k}_documents": dg.MetadataValue.int(v) for k, v in counts.items()},
            "quarantined": dg.MetadataValue.int(len(quarantine)),
            "queries_retired": dg.MetadataValue.int(len(retired_queries)),
            "queries_retired_by_reason": dg.MetadataValue.json(
                pd.Series([q["reason"] for q in retired_queries], dtype=object).value_counts().to_dict()
            ),
            "labels_retired_with_their_query": dg.MetadataValue.int(labels_of_retired_queries),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "document_versions", batch_id),
        }
    )


def batch_table_metadata(duckdb: DuckDBResource, table: str, batch_id: str) -> dict[str, Any]:
    """The rows this batch holds in ``table`` (``dagster/row_count``) and the table's columns."""
    rows = read_sql(duckdb, f'select count(*) as n from "{table}" where batch_id = ?', [batch_id])["n"].iloc[0]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/column_schema": column_schema(duckdb, table),
        "table": dg.MetadataValue.text(table),
    }


def _batch_index_path(duckdb: DuckDBResource, batch_id: str) -> Path:
    frame = read_sql(duckdb, "select path from inbox_bm25_index where batch_id = ?", [batch_id])
    return Path(frame["path"].iloc[0])


@_asset(deps=[inbox_documents], kinds={"duckdb", "bm25s"})
def inbox_bm25_index(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings, model_store: ModelStore
) -> dg.MaterializeResult:
    """BM25 index over the current document versions after this batch, built like ``bm25_index``.
    ``RELABEL_BM25_UPDATE=incremental`` (default) tokenizes only the batch's new versions and reuses the
    previous index's stored passage tokens; ``rebuild`` tokenizes everything. Saved under its content hash."""
    started = time.perf_counter()
    batch_id = context.partition_key
    if settings.bm25_update not in ("incremental", "rebuild"):
        raise ValueError(f"bm25_update must be 'incremental' or 'rebuild', got {settings.bm25_update!r}")
    with duckdb.get_connection() as conn:
        previous = conn.execute(
            "select path from inbox_bm25_index where batch_id < ? order by batch_id desc limit 1", [batch_id]
        ).fetchall()
        cached = inc.load_tokens(Path(previous[0][0])) if previous and settings.bm25_update == "incremental" else {}
        # only versions without stored tokens are read in full (their text is tokenized)
        documents = conn.execute(CURRENT_KEYS_SQL).df().to_dict("records")
        pending = pd.DataFrame({"doc_id": [d["doc_id"] for d in documents if inc.version_key(d) not in cached]})
        full = {}
        if len(pending):
            conn.register("_pending", pending)
            sql = CURRENT_DOCS_SQL.replace("order by", "and doc_id in (select doc_id from _pending) order by")
            full = {r["doc_id"]: r for r in conn.execute(sql).df().to_dict("records")}
            conn.unregister("_pending")
    documents = [full.get(d["doc_id"], d) for d in documents]
    build_started = time.perf_counter()
    index, tokens, tokenized = inc.build_bm25(documents, cached)
    build_seconds = time.perf_counter() - build_started
    staging = model_store.staging_dir("bm25")
    index.save(staging)
    inc.save_tokens(staging, tokens)
    path, digest = model_store.commit("bm25", staging)
    row = pd.DataFrame(
        [
            {
                "batch_id": batch_id,
                "index_id": digest[:16],
                "path": str(path),
                "sha256": digest,
                "n_docs": len(documents),
                "n_passages": index.n_passages,
                "update_mode": settings.bm25_update if cached else "rebuild",
                "tokenized_passages": tokenized,
                "build_seconds": build_seconds,
                "built_at": pd.Timestamp.now(),
            }
        ]
    )
    with duckdb.get_connection() as conn:
        conn.execute("delete from inbox_bm25_index where batch_id = ?", [batch_id])
        inc.insert_rows(conn, "inbox_bm25_index", row)
    return dg.MaterializeResult(
        metadata={
            "n_docs": dg.MetadataValue.int(len(documents)),
            "tokenized_passages": dg.MetadataValue.int(tokenized),
            "update_mode": dg.MetadataValue.text(str(row["update_mode"].iloc[0])),
            "build_seconds": dg.MetadataValue.float(round(build_seconds, 4)),
            "path": dg.MetadataValue.path(str(path)),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "inbox_bm25_index", batch_id),
        }
    )


@_asset(deps=[inbox_documents], kinds={"duckdb", "litellm"})
def inbox_queries(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, llm: LLMGateway, settings: PipelineSettings
) -> dg.MaterializeResult:
    """Synthetic queries for the batch's new and changed documents only (same prompt and filters as
    ``synthetic_queries``), appended to ``label_queries``; rejects go to ``inbox_query_rejects``. Duplicates and
    near-duplicates (stemmed-term Jaccard, inverted index) are tested against every current query of every
    batch, not only this one's."""
    started = time.perf_counter()
    batch_id = context.partition_key
    client = llm.client("queries")
    with duckdb.get_connection() as conn:
        documents = (
            conn.execute(
                NEW_VERSIONS_SQL.format(columns="*"),
                [batch_id],
            )
            .df()
            .to_dict("records")
        )
        existing = conn.execute(
            "select doc_id, query_text from label_queries where retired_at is null and batch_id <> ? order by qid",
            [batch_id],
        ).fetchall()
        accepted, rejects = synthesize_queries(
            conn,
            client,
            documents,
            queries_per_doc=settings.queries_per_doc,
            max_doc_chars=settings.max_doc_chars,
            policy=llm.policy(),
            existing=existing,
        )
        hashes = {d["doc_id"]: d["content_hash"] for d in documents}
        frame = pd.DataFrame(accepted, columns=["qid", "doc_id", "query_type", "query_text", "model", "prompt_version"])
        frame = frame.assign(content_hash=frame["doc_id"].map(hashes), batch_id=batch_id, created_at=pd.Timestamp.now())
        added = inc.insert_rows(conn, "label_queries", frame)
        conn.execute("delete from inbox_query_rejects where batch_id = ?", [batch_id])
        inc.insert_rows(
            conn, "inbox_query_rejects", pd.DataFrame(rejects).assign(batch_id=batch_id) if rejects else pd.DataFrame()
        )
    return dg.MaterializeResult(
        metadata={
            "documents": dg.MetadataValue.int(len(documents)),
            "queries_added": dg.MetadataValue.int(added),
            "rejected": dg.MetadataValue.int(len(rejects)),
            "current_queries_compared": dg.MetadataValue.int(len(existing)),
            "llm_calls": dg.MetadataValue.int(client.calls_made),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "label_queries", batch_id),
        }
    )


@_asset(deps=[inbox_queries, inbox_bm25_index], kinds={"duckdb", "bm25s"})
def inbox_candidate_pairs(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings
) -> dg.MaterializeResult:
    """New (query, document version) pairs of the batch in ``label_pairs``: pools (seed, BM25 hard and
    random negatives) for the new queries, and every (existing query, new document) pair that enters the
    existing query's BM25 top-k (``RELABEL_INCREMENTAL_TOP_K``); only queries sharing a term with the new
    documents are scored again, and only those a new document could enter (bound from the top-k stored in
    ``query_top_k``) are searched in full, with the same result as a full search. Pairs already labeled are not
    added again."""
    started = time.perf_counter()
    batch_id = context.partition_key
    index_path = _batch_index_path(duckdb, batch_id)
    index = BM25Index.load(index_path)
    with duckdb.get_connection() as conn:
        current = conn.execute(CURRENT_DOCS_SQL).df()
        new_queries = conn.execute("select * from label_queries where batch_id = ? order by qid", [batch_id]).df()
        existing = conn.execute(
            "select qid, query_text from label_queries where batch_id <> ? and retired_at is null order by qid",
            [batch_id],
        ).df()
        new_docs = dict(
            conn.execute(
                NEW_VERSIONS_SQL.format(columns="doc_id, content_hash"),
                [batch_id],
            ).fetchall()
        )
        labeled = conn.execute(
            "select qid, doc_id, content_hash from relevance_labels where retired_at is null"
        ).fetchall()
        stored_top_k = inc.load_top_k(conn, settings.incremental_top_k)
    hashes = dict(zip(current["doc_id"], current["content_hash"], strict=True))
    texts = dict(zip(current["doc_id"], current["text"], strict=True))
    queries = new_queries.to_dict("records")
    # near-copies of the new queries' seeds are looked for among the documents BM25 ranks near each seed
    seeds = {q["doc_id"] for q in queries}
    pools = query_pools(queries, index, near_duplicate_candidates(index, texts, seeds), settings)
    for row in pools:
        row["content_hash"] = hashes[row["doc_id"]]
    entering: list[dict] = []
    # every current query keeps its top-k: the new queries' now, the existing ones' when they are searched again
    top_k = inc.top_k_of(
        index, list(zip(new_queries["qid"], new_queries["query_text"], strict=True)), settings.incremental_top_k
    )
    retrieved_queries = ruled_out = searched = 0
    if new_docs and len(existing):
        # the new versions' passage tokens, as the index has them (tokenizing them beats loading every token)
        new_rows = current[current["doc_id"].isin(list(new_docs))].to_dict("records")
        new_tokens = [tokenize(passage_texts(doc)) for doc in new_rows]
        found = inc.reretrieve(
            index,
            list(zip(existing["qid"], existing["query_text"], strict=True)),
            new_docs,
            new_tokens,
            stored_top_k,
            settings.incremental_top_k,
        )
        entering = found.entering
        top_k.update(found.top_k)
        retrieved_queries, ruled_out, searched = found.scored, found.ruled_out, found.searched
    # a query without a stored top-k (imported with the baseline, or stored with another k) is searched once
    first_time = [
        (q, t)
        for q, t in zip(existing["qid"], existing["query_text"], strict=True)
        if q not in stored_top_k and q not in top_k
    ]
    top_k.update(inc.top_k_of(index, first_time, settings.incremental_top_k))
    pairs = inc.unlabeled_pairs([*pools, *entering], labeled)
    frame = pd.DataFrame(pairs, columns=["qid", "doc_id", "content_hash", "role", "bm25_rank", "bm25_score"])
    with duckdb.get_connection() as conn:
        added = inc.insert_rows(conn, "label_pairs", frame.assign(batch_id=batch_id, created_at=pd.Timestamp.now()))
        inc.store_top_k(conn, top_k, settings.incremental_top_k, batch_id, pd.Timestamp.now())
    return dg.MaterializeResult(
        metadata={
            "pairs_added": dg.MetadataValue.int(added),
            "existing_queries_ruled_out_by_bound": dg.MetadataValue.int(ruled_out),
            "existing_queries_searched_in_full": dg.MetadataValue.int(searched),
            "queries_top_k_stored_first_time": dg.MetadataValue.int(len(first_time)),
            "pool_pairs": dg.MetadataValue.int(len(pools)),
            "entered_top_k": dg.MetadataValue.int(len(entering)),
            "existing_queries": dg.MetadataValue.int(len(existing)),
            "existing_queries_retrieved": dg.MetadataValue.int(retrieved_queries),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "label_pairs", batch_id),
        }
    )


BATCH_PAIRS_SQL = """
select 'pool' as pair_source, p.qid, q.query_text, p.doc_id, p.content_hash, d.title, d.author, d.path, d.modified,
       d.doc_type, d.text
from label_pairs p join label_queries q on q.qid = p.qid and q.retired_at is null
join document_versions d on d.doc_id = p.doc_id and d.content_hash = p.content_hash and d.retired_at is null
where p.batch_id = ? order by p.qid, p.doc_id
"""


ROUTING_COLUMNS = [
    "qid",
    "doc_id",
    "content_hash",
    "policy",
    "variant",
    "to_teacher",
    "routing_reason",
    "routing_score",
    "student_grade",
    "student_expected_grade",
]


def _latest_checkpoint(conn: duckdb_lib.DuckDBPyConnection) -> pd.Series | None:
    """The newest row of ``student_checkpoint`` (None when there is none)."""
    if not table_exists(conn, "student_checkpoint"):
        return None
    frame = conn.execute(
        "select checkpoint_id, path, sha256, created_at from student_checkpoint order by created_at desc limit 1"
    ).df()
    return None if frame.empty else frame.iloc[0]


def _route(conn: duckdb_lib.DuckDBPyConnection, pairs: list[dict], settings: PipelineSettings) -> list[dict]:
    """The batch's pairs with their routing (``RELABEL_TEACHER_ROUTING``); under ``uncertainty`` the current
    student grades them first (its grade distribution and expected grade are kept with the routing)."""
    if settings.teacher_routing != "uncertainty" or not pairs:
        return inc.route_teacher_pairs(pairs, settings.teacher_sample_rate, settings.seed, settings.teacher_routing)
    ckpt = _latest_checkpoint(conn)
    if ckpt is None:
        raise RuntimeError("uncertainty routing needs a student checkpoint: run relabel_job once first")
    labeler = load_student(Path(ckpt["path"]))
    scores, grades, probabilities = labeler.predict_with_probabilities(
        [p["query_text"] for p in pairs], [pair_text({"title": p["title"], "doc_text": p["text"]}) for p in pairs]
    )
    routed = inc.route_teacher_pairs(
        pairs,
        settings.teacher_sample_rate,
        settings.seed,
        "uncertainty",
        settings.teacher_uncertainty,
        random_share=settings.teacher_random_slice,
        probabilities=probabilities,
        expected=scores,
        thresholds=labeler.thresholds,
    )
    return [
        {**r, "student_grade": int(g), "student_expected_grade": float(s)}
        for r, g, s in zip(routed, grades, scores, strict=True)
    ]


@_asset(deps=[inbox_candidate_pairs], kinds={"duckdb", "litellm"})
def inbox_teacher_labels(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, llm: LLMGateway, settings: PipelineSettings
) -> dg.MaterializeResult:
    """Teacher grades for ``RELABEL_TEACHER_SAMPLE_RATE`` of the batch's new pairs, chosen by
    ``RELABEL_TEACHER_ROUTING`` (a deterministic random sample, or the student's least sure pairs plus a random
    slice); every pair's routing lands in ``inbox_routing``. The teacher is chosen from settings exactly as for
    ``teacher_labels``: recorded runs (``RELABEL_TEACHER_RUNS``, LLM fallback with
    ``RELABEL_TEACHER_RUNS_FALLBACK=llm``), the LLM teacher, ensembles and samples combined by vote. Training
    data for the next student and a drift probe. Pairs graded already are not sent again."""
    started = time.perf_counter()
    batch_id = context.partition_key
    with duckdb.get_connection() as conn:
        pairs = conn.execute(BATCH_PAIRS_SQL, [batch_id]).df().to_dict("records")
        # failed calls (outage, budget) are tried again on a re-run; answers come from the LLM cache
        conn.execute(
            "delete from inbox_teacher_labels where batch_id = ? and status not in ('ok', 'unparsed')", [batch_id]
        )
        graded = conn.execute("select qid, doc_id, content_hash from inbox_teacher_labels").fetchall()
        routed = _route(conn, pairs, settings)
        inc.insert_rows(
            conn,
            "inbox_routing",
            pd.DataFrame([{k: r.get(k) for k in ROUTING_COLUMNS} for r in routed]).assign(
                batch_id=batch_id, routed_at=pd.Timestamp.now()
            ),
        )
        sample = [r for r in routed if r["to_teacher"]]
        pending = inc.unlabeled_pairs(sample, graded)
        grading_started = time.perf_counter()
        grades = teacher_grades(conn, pending, llm, settings)
        grading_s = time.perf_counter() - grading_started
        rows = grades.rows
        asked = sum(not r.get("from_cache", True) and r.get("raw_answer") is not None for r in grades.votes)
        by_key = {(p["qid"], p["doc_id"]): p for p in pending}
        frame = pd.DataFrame(
            [
                {
                    **{k: r[k] for k in LABEL_COLUMNS if k not in ("pair_source", "from_cache", "latency_s")},
                    "content_hash": by_key[(r["qid"], r["doc_id"])]["content_hash"],
                    "query_text": by_key[(r["qid"], r["doc_id"])]["query_text"],
                    "title": by_key[(r["qid"], r["doc_id"])]["title"],
                    "doc_text": by_key[(r["qid"], r["doc_id"])]["text"],
                    "batch_id": batch_id,
                    "labeled_at": pd.Timestamp.now(),
                }
                for r in rows
            ]
        )
        if len(frame):
            frame["grade"] = frame["grade"].astype("Int64")
        added = inc.insert_rows(conn, "inbox_teacher_labels", frame)
    status = frame["status"].value_counts().to_dict() if len(frame) else {}
    return dg.MaterializeResult(
        metadata={
            "new_pairs": dg.MetadataValue.int(len(pairs)),
            "sampled": dg.MetadataValue.int(len(sample)),
            "routing": dg.MetadataValue.text(settings.teacher_routing),
            "random_slice": dg.MetadataValue.int(
                sum(r["routing_reason"] in ("random", "random_slice") for r in sample)
            ),
            "labels_added": dg.MetadataValue.int(added),
            "llm_calls": dg.MetadataValue.int(grades.calls),
            "usd": dg.MetadataValue.float(round(grades.usd, 6)),
            "labels_per_s": dg.MetadataValue.float(round(asked / grading_s, 2) if asked else float("nan")),
            "teachers": dg.MetadataValue.json(sorted({str(r["labeler_id"]) for r in rows})),
            "status_counts": dg.MetadataValue.json(status),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "inbox_teacher_labels", batch_id),
        }
    )


@_asset(deps=[inbox_teacher_labels, inbox_candidate_pairs], kinds={"duckdb", "pytorch"})
def relevance_labels(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings
) -> dg.MaterializeResult:
    """The production label table: one current label per (query, document version) with provenance
    (labeler kind, id and version, batch, time). The current student checkpoint labels every new pair of the
    batch; the teacher's sampled labels supersede the student's (whose rows are retired, not deleted). Then
    the checkpoint is marked stale in ``student_checkpoint_registry`` when enough new teacher labels arrived
    or agreement with the teacher on the randomly routed pairs fell (the retrain sensor picks that up). Every
    row carries its pair's routing reason and score (``inbox_routing``)."""
    started = time.perf_counter()
    batch_id = context.partition_key
    with duckdb.get_connection() as conn:
        ckpt = _latest_checkpoint(conn)
    if ckpt is None:
        raise RuntimeError("no student checkpoint: run relabel_job once first")
    labeler_id = f"student:{ckpt['checkpoint_id']}"
    now = pd.Timestamp.now()
    with duckdb.get_connection() as conn:
        conn.execute(
            "insert into student_checkpoint_registry (checkpoint_id, path, sha256, created_at, first_used_batch) "
            "values (?, ?, ?, ?, ?) on conflict do nothing",
            [ckpt["checkpoint_id"], ckpt["path"], ckpt["sha256"], ckpt["created_at"], batch_id],
        )
        pairs = conn.execute(BATCH_PAIRS_SQL, [batch_id]).df()
        labeled = conn.execute(
            "select qid, doc_id, content_hash from relevance_labels where retired_at is null"
        ).fetchall()
        teacher = conn.execute(
            "select t.qid, t.doc_id, t.content_hash, 'teacher' as labeler_kind, t.labeler_id, "
            "t.model || ' ' || t.prompt_id || '@' || t.prompt_version as labeler_version, t.grade, t.expected_grade, "
            "coalesce(r.routing_reason, 'random') as routing_reason, r.routing_score "
            "from inbox_teacher_labels t left join inbox_routing r using (qid, doc_id, content_hash) "
            "where t.batch_id = ? and t.status = 'ok' and not exists (select 1 from "
            "relevance_labels r where r.qid = t.qid and r.doc_id = t.doc_id and r.content_hash = t.content_hash "
            "and r.labeler_kind = 'teacher')",
            [batch_id],
        ).df()
        routing = {
            (q, d, h): (reason, score)
            for q, d, h, reason, score in conn.execute(
                "select qid, doc_id, content_hash, routing_reason, routing_score from inbox_routing where batch_id = ?",
                [batch_id],
            ).fetchall()
        }
    pending = pd.DataFrame(inc.unlabeled_pairs(pairs.to_dict("records"), labeled), columns=pairs.columns)
    label_seconds = 0.0
    student_rows: list[dict] = []
    if len(pending):
        labeler = load_student(Path(ckpt["path"]))
        label_started = time.perf_counter()
        docs = [pair_text({"title": r["title"], "doc_text": r["text"]}) for r in pending.to_dict("records")]
        scores, grades = labeler.predict(pending["query_text"].tolist(), docs)
        label_seconds = time.perf_counter() - label_started
        student_rows = [
            {
                "qid": r["qid"],
                "doc_id": r["doc_id"],
                "content_hash": r["content_hash"],
                "labeler_kind": "student",
                "labeler_id": labeler_id,
                "labeler_version": ckpt["sha256"],
                "grade": int(g),
                "expected_grade": float(s),
                "routing_reason": routing.get(inc.pair_key(r), ("student", None))[0],
                "routing_score": routing.get(inc.pair_key(r), ("student", None))[1],
            }
            for r, s, g in zip(pending.to_dict("records"), scores, grades, strict=True)
        ]
    with duckdb.get_connection() as conn:
        inserted, retired = inc.merge_into_labels(conn, [*student_rows, *teacher.to_dict("records")], batch_id, now)
        decision = _staleness(conn, ckpt, labeler_id, settings)
        if decision.stale:
            conn.execute(
                "update student_checkpoint_registry set stale_at = ?, stale_reason = ?, retrain_requested_by = ? "
                "where checkpoint_id = ? and stale_at is null",
                [now, decision.reason, batch_id, ckpt["checkpoint_id"]],
            )
        current = conn.execute("select count(*) from relevance_labels where retired_at is null").fetchall()[0][0]
    return dg.MaterializeResult(
        metadata={
            "student_labels": dg.MetadataValue.int(len(student_rows)),
            "teacher_labels": dg.MetadataValue.int(len(teacher)),
            "rows_inserted": dg.MetadataValue.int(inserted),
            "student_rows_superseded": dg.MetadataValue.int(retired),
            "current_labels": dg.MetadataValue.int(current),
            "student_checkpoint": dg.MetadataValue.text(labeler_id),
            "student_labels_per_s": dg.MetadataValue.float(round(len(student_rows) / max(label_seconds, 1e-9), 1)),
            "new_teacher_labels_since_checkpoint": dg.MetadataValue.int(decision.new_teacher_labels),
            "student_teacher_agreement": dg.MetadataValue.float(
                float("nan") if decision.agreement is None else round(decision.agreement, 4)
            ),
            "checkpoint_stale": dg.MetadataValue.bool(decision.stale),
            "stale_reason": dg.MetadataValue.text(decision.reason),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **batch_table_metadata(duckdb, "relevance_labels", batch_id),
        }
    )


def _staleness(
    conn: duckdb_lib.DuckDBPyConnection, ckpt: pd.Series, labeler_id: str, settings: PipelineSettings
) -> inc.RetrainDecision:
    """Teacher labels made since the checkpoint, and its agreement with the teacher on the sampled pairs."""
    run = conn.execute
    new_teacher = run(
        "select count(*) from inbox_teacher_labels where status = 'ok' and labeled_at > ?", [ckpt["created_at"]]
    ).fetchall()[0][0]
    compared = run(
        "select s.grade, t.grade from relevance_labels s join relevance_labels t using (qid, doc_id, content_hash) "
        "where s.labeler_id = ? and s.labeler_kind = 'student' and t.labeler_kind = 'teacher' "
        "and coalesce(t.routing_reason, 'random') in ('random', 'random_slice')",
        [labeler_id],
    ).fetchall()
    return inc.retrain_decision(
        new_teacher,
        [s for s, _ in compared],
        [t for _, t in compared],
        min_teacher_labels=settings.retrain_min_teacher_labels,
        min_agreement=settings.retrain_min_agreement,
        min_compared_pairs=settings.retrain_min_compared_pairs,
    )


INCREMENTAL_ASSETS = [
    inbox_documents,
    inbox_bm25_index,
    inbox_queries,
    inbox_candidate_pairs,
    inbox_teacher_labels,
    relevance_labels,
]
