"""Incremental relabeling, one partition per inbox batch: ingest document versions, update BM25, write
queries for new documents, find new pairs, sample teacher labels, student-label every new pair and merge
everything into ``relevance_labels``. Each asset only touches what its batch added, so a batch costs in
proportion to the batch; LLM calls happen only for new items (and are cached, so re-runs are free). The
tables and their SQL live in ``relabel.incremental.label_store``, the rules in ``relabel.incremental``."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel import retrieval
from relabel.corpus.documents import Document
from relabel.incremental import batches, label_store, rules
from relabel.incremental.candidates import PAIR_COLUMNS, batch_candidates
from relabel.incremental.labeling import route_batch, student_label_rows, teacher_label_frame
from relabel.retrieval import BM25Index
from relabel.synthesis.queries import synthesize_queries
from relabel_assets.common import WRITER_POOL, column_schema, read_sql
from relabel_assets.partitions import inbox_batches
from relabel_assets.teacher import teacher_grades
from resources.llm import LLMGateway
from resources.model_store import ModelStore
from resources.settings import PipelineSettings

GROUP = "incremental"
DOC_FIELDS = list(Document.__dataclass_fields__)


def _asset(**kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``dg.asset`` partitioned by inbox batch, in the ``incremental`` group, in the DuckDB writer pool."""
    return dg.asset(partitions_def=inbox_batches, pool=WRITER_POOL, group_name=GROUP, **kwargs)


def batch_table_metadata(duckdb: DuckDBResource, table: str, batch_id: str) -> dict[str, Any]:
    """The rows this batch holds in ``table`` (``dagster/row_count``) and the table's columns."""
    rows = read_sql(duckdb, f'select count(*) as n from "{table}" where batch_id = ?', [batch_id])["n"].iloc[0]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/column_schema": column_schema(duckdb, table),
        "table": dg.MetadataValue.text(table),
    }


def _elapsed(started: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(time.perf_counter() - started, 3))


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
    manifest = batches.BatchManifest.load(folder)
    now = pd.Timestamp.now()
    with duckdb.get_connection() as conn:
        label_store.ensure_tables(conn)
        pending = label_store.pending_rebootstrap(conn)
        done = label_store.ingested_batch(conn, batch_id)
        later = label_store.later_batch(conn, manifest.sequence)
    # raised outside the connection, which an exception would leave open
    if pending is not None:
        raise RuntimeError(
            f"relabel_job is rebuilding the baseline (re-bootstrap {pending} pending): run this batch again "
            "once relabel_job has finished"
        )
    if done is not None:
        return dg.MaterializeResult(
            metadata={"already_ingested": True, **{k: str(v) for k, v in done.items() if k != "batch_id"}}
        )
    if later is not None:
        raise RuntimeError(f"batch {batch_id} arrives after the later batch {later} was ingested")
    parsed, quarantine = batches.read_batch_documents(folder, manifest, settings.max_doc_bytes, now)
    for row in quarantine:
        context.log.warning(f"quarantined {row['doc_id']}: {row['reason']}")
    with duckdb.get_connection() as conn:
        conn.execute("begin transaction")
        if not conn.execute("select count(*) from document_versions").fetchall()[0][0]:
            label_store.import_baseline(conn, now)
        plan = rules.plan_versions(
            label_store.current_versions(conn), {d: doc.content_hash for d, doc in parsed.items()}, manifest.deleted
        )
        versions, retired_queries = [], []
        for step in (s for s in plan if s.change not in ("unchanged", "missing")):
            doc = parsed.get(step.doc_id)
            if step.change in ("changed", "deleted"):
                retired_queries += label_store.queries_to_retire_on(
                    conn, step, doc.as_row() if doc else None, settings.query_fit_min_coverage
                )
            if step.previous_version is not None:
                label_store.retire_version(conn, step, batch_id, now)
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
        label_store.insert_rows(conn, "document_versions", pd.DataFrame(versions))
        label_store.insert_rows(conn, "inbox_quarantine", pd.DataFrame(quarantine))
        labels_of_retired_queries = label_store.retire_queries(conn, retired_queries, batch_id, now)
        counts = {c: sum(s.change == c for s in plan) for c in ("new", "changed", "deleted", "unchanged")}
        created = pd.Timestamp(manifest.created_at).tz_localize(None)
        label_store.record_batch(
            conn, batch_id, manifest.sequence, created, now, {**counts, "quarantined": len(quarantine)}
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
            "elapsed_s": _elapsed(started),
            **batch_table_metadata(duckdb, "document_versions", batch_id),
        }
    )


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
        previous = label_store.previous_index_path(conn, batch_id)
        cached = retrieval.load_tokens(previous) if settings.bm25_update == "incremental" else {}
        # only versions without stored tokens are read in full (their text is tokenized)
        documents = label_store.documents_to_index(conn, cached)
    build_started = time.perf_counter()
    index, tokens, tokenized = retrieval.build_bm25(documents, cached)
    build_seconds = time.perf_counter() - build_started
    staging = model_store.staging_dir("bm25")
    index.save(staging)
    retrieval.save_tokens(staging, tokens)
    path, digest = model_store.commit("bm25", staging)
    update_mode = settings.bm25_update if cached else "rebuild"
    row = {
        "batch_id": batch_id,
        "index_id": digest[:16],
        "path": str(path),
        "sha256": digest,
        "n_docs": len(documents),
        "n_passages": index.n_passages,
        "update_mode": update_mode,
        "tokenized_passages": tokenized,
        "build_seconds": build_seconds,
        "built_at": pd.Timestamp.now(),
    }
    with duckdb.get_connection() as conn:
        label_store.replace_batch_rows(conn, "inbox_bm25_index", batch_id, pd.DataFrame([row]))
    return dg.MaterializeResult(
        metadata={
            "n_docs": dg.MetadataValue.int(len(documents)),
            "tokenized_passages": dg.MetadataValue.int(tokenized),
            "update_mode": dg.MetadataValue.text(update_mode),
            "build_seconds": dg.MetadataValue.float(round(build_seconds, 4)),
            "path": dg.MetadataValue.path(str(path)),
            "elapsed_s": _elapsed(started),
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
        documents = label_store.new_versions(conn, batch_id).to_dict("records")
        existing = list(label_store.current_queries(conn, batch_id)[["doc_id", "query_text"]].itertuples(index=False))
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
        added = label_store.insert_rows(conn, "label_queries", frame)
        label_store.replace_batch_rows(
            conn, "inbox_query_rejects", batch_id, pd.DataFrame(rejects).assign(batch_id=batch_id)
        )
    return dg.MaterializeResult(
        metadata={
            "documents": dg.MetadataValue.int(len(documents)),
            "queries_added": dg.MetadataValue.int(added),
            "rejected": dg.MetadataValue.int(len(rejects)),
            "current_queries_compared": dg.MetadataValue.int(len(existing)),
            "llm_calls": dg.MetadataValue.int(client.calls_made),
            "elapsed_s": _elapsed(started),
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
    with duckdb.get_connection() as conn:
        index = BM25Index.load(label_store.batch_index_path(conn, batch_id))
        new_queries = label_store.batch_queries(conn, batch_id)
        existing = label_store.current_queries(conn, batch_id)
        found = batch_candidates(
            index,
            label_store.current_documents(conn),
            new_queries,
            existing,
            dict(label_store.new_versions(conn, batch_id, "doc_id, content_hash").itertuples(index=False)),
            label_store.current_label_keys(conn),
            label_store.load_top_k(conn, settings.incremental_top_k),
            top_k=settings.incremental_top_k,
            bm25_negatives=settings.bm25_negatives,
            random_negatives=settings.random_negatives,
            seed=settings.seed,
        )
        now = pd.Timestamp.now()
        frame = pd.DataFrame(found.pairs, columns=PAIR_COLUMNS).assign(batch_id=batch_id, created_at=now)
        added = label_store.insert_rows(conn, "label_pairs", frame)
        label_store.store_top_k(conn, found.top_k, settings.incremental_top_k, batch_id, now)
    return dg.MaterializeResult(
        metadata={
            "pairs_added": dg.MetadataValue.int(added),
            "existing_queries_ruled_out_by_bound": dg.MetadataValue.int(found.stats["ruled_out"]),
            "existing_queries_searched_in_full": dg.MetadataValue.int(found.stats["searched"]),
            "queries_top_k_stored_first_time": dg.MetadataValue.int(found.stats["first_time"]),
            "pool_pairs": dg.MetadataValue.int(found.stats["pool_pairs"]),
            "entered_top_k": dg.MetadataValue.int(found.stats["entered_top_k"]),
            "existing_queries": dg.MetadataValue.int(len(existing)),
            "existing_queries_retrieved": dg.MetadataValue.int(found.stats["existing_queries_retrieved"]),
            "elapsed_s": _elapsed(started),
            **batch_table_metadata(duckdb, "label_pairs", batch_id),
        }
    )


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
        pairs = label_store.batch_pairs(conn, batch_id).to_dict("records")
        label_store.drop_failed_teacher_rows(conn, batch_id)
        graded = label_store.teacher_graded_keys(conn)
        checkpoint = label_store.latest_checkpoint(conn)
        routed = route_batch(
            pairs,
            routing=settings.teacher_routing,
            sample_rate=settings.teacher_sample_rate,
            seed=settings.seed,
            uncertainty=settings.teacher_uncertainty,
            random_slice=settings.teacher_random_slice,
            checkpoint_path=None if checkpoint is None else Path(checkpoint["path"]),
        )
        label_store.record_routing(conn, batch_id, routed, pd.Timestamp.now())
        sample = [r for r in routed if r["to_teacher"]]
        pending = rules.unlabeled_pairs(sample, graded)
        grading_started = time.perf_counter()
        grades = teacher_grades(conn, pending, llm, settings)
        grading_s = time.perf_counter() - grading_started
        frame = teacher_label_frame(grades.rows, pending, batch_id, pd.Timestamp.now())
        added = label_store.insert_rows(conn, "inbox_teacher_labels", frame)
    asked = sum(not r.get("from_cache", True) and r.get("raw_answer") is not None for r in grades.votes)
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
            "teachers": dg.MetadataValue.json(sorted({str(r["labeler_id"]) for r in grades.rows})),
            "status_counts": dg.MetadataValue.json(frame["status"].value_counts().to_dict() if len(frame) else {}),
            "elapsed_s": _elapsed(started),
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
        checkpoint = label_store.latest_checkpoint(conn)
    if checkpoint is None:
        raise RuntimeError("no student checkpoint: run relabel_job once first")
    labeler_id = f"student:{checkpoint['checkpoint_id']}"
    now = pd.Timestamp.now()
    with duckdb.get_connection() as conn:
        label_store.register_checkpoint(conn, checkpoint, batch_id)
        pairs = label_store.batch_pairs(conn, batch_id).to_dict("records")
        pending = rules.unlabeled_pairs(pairs, label_store.current_label_keys(conn))
        teacher = label_store.teacher_labels_to_merge(conn, batch_id).to_dict("records")
        routing = label_store.batch_routing(conn, batch_id)
    student_rows, label_seconds = student_label_rows(pending, checkpoint, labeler_id, routing)
    with duckdb.get_connection() as conn:
        inserted, retired = label_store.merge_into_labels(conn, [*student_rows, *teacher], batch_id, now)
        new_teacher, compared = label_store.staleness_inputs(conn, checkpoint, labeler_id)
        decision = rules.retrain_decision(
            new_teacher,
            [s for s, _ in compared],
            [t for _, t in compared],
            min_teacher_labels=settings.retrain_min_teacher_labels,
            min_agreement=settings.retrain_min_agreement,
            min_compared_pairs=settings.retrain_min_compared_pairs,
        )
        if decision.stale:
            label_store.mark_stale(conn, checkpoint["checkpoint_id"], decision.reason, batch_id, now)
        current = label_store.current_label_count(conn)
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
            "elapsed_s": _elapsed(started),
            **batch_table_metadata(duckdb, "relevance_labels", batch_id),
        }
    )


INCREMENTAL_ASSETS = [
    inbox_documents,
    inbox_bm25_index,
    inbox_queries,
    inbox_candidate_pairs,
    inbox_teacher_labels,
    relevance_labels,
]
