"""The label store: the incremental pipeline's versioned DuckDB tables (one schema each), and every SQL
statement that reads or writes them, each taking a connection. Rows are retired, never deleted."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from relabel.incremental.rules import (
    CurrentVersion,
    PairKey,
    VersionChange,
    label_signature,
    merge_labels,
    plan_label_reimport,
    plan_versions,
    queries_to_retire,
)
from relabel.retrieval import version_key
from relabel.warehouse import table_exists

TABLES_DDL = {
    "inbox_batches": """
        create table if not exists inbox_batches (
            batch_id varchar primary key, sequence integer, created_at timestamp, ingested_at timestamp,
            new_documents integer, changed_documents integer, deleted_documents integer,
            unchanged_documents integer, quarantined_documents integer)""",
    "inbox_quarantine": """
        create table if not exists inbox_quarantine (
            batch_id varchar, doc_id varchar, content_hash varchar, reason varchar, seen_at timestamp)""",
    "document_versions": """
        create table if not exists document_versions (
            doc_id varchar, version integer, content_hash varchar, batch_id varchar, change varchar,
            is_tombstone boolean, title varchar, author varchar, path varchar, modified varchar, doc_type varchar,
            format varchar, text varchar, created_at timestamp, retired_at timestamp, retired_by_batch varchar,
            encoding varchar, source_bytes bigint, truncated boolean, primary key (doc_id, version))""",
    "label_queries": """
        create table if not exists label_queries (
            qid varchar primary key, doc_id varchar, content_hash varchar, query_type varchar, query_text varchar,
            model varchar, prompt_version varchar, batch_id varchar, created_at timestamp, retired_at timestamp,
            retired_by_batch varchar, retired_reason varchar, retired_detail varchar)""",
    "inbox_query_rejects": """
        create table if not exists inbox_query_rejects (
            batch_id varchar, doc_id varchar, query_type varchar, query_text varchar, reason varchar,
            detail varchar, model varchar, prompt_version varchar)""",
    "label_pairs": """
        create table if not exists label_pairs (
            qid varchar, doc_id varchar, content_hash varchar, role varchar, bm25_rank integer, bm25_score double,
            batch_id varchar, created_at timestamp, primary key (qid, doc_id, content_hash))""",
    "inbox_bm25_index": """
        create table if not exists inbox_bm25_index (
            batch_id varchar primary key, index_id varchar, path varchar, sha256 varchar, n_docs integer,
            n_passages integer, update_mode varchar, tokenized_passages integer, build_seconds double,
            built_at timestamp)""",
    "inbox_teacher_labels": """
        create table if not exists inbox_teacher_labels (
            qid varchar, doc_id varchar, content_hash varchar, query_text varchar, title varchar, doc_text varchar,
            labeler_id varchar, model varchar, prompt_id varchar, prompt_version varchar, status varchar,
            grade integer, expected_grade double, p0 double, p1 double, p2 double, p3 double, raw_answer varchar,
            error varchar, batch_id varchar,
            labeled_at timestamp, primary key (qid, doc_id, content_hash))""",
    "inbox_routing": """
        create table if not exists inbox_routing (
            qid varchar, doc_id varchar, content_hash varchar, batch_id varchar, policy varchar, variant varchar,
            to_teacher boolean, routing_reason varchar, routing_score double, student_grade integer,
            student_expected_grade double, routed_at timestamp, primary key (qid, doc_id, content_hash))""",
    "relevance_labels": """
        create table if not exists relevance_labels (
            qid varchar, doc_id varchar, content_hash varchar, labeler_kind varchar, labeler_id varchar,
            labeler_version varchar, grade integer, expected_grade double, batch_id varchar, labeled_at timestamp,
            retired_at timestamp, retired_by_batch varchar, retired_reason varchar)""",
    "baseline_imports": """
        create table if not exists baseline_imports (
            import_id varchar primary key, status varchar, requested_at timestamp, completed_at timestamp,
            inbox_batches integer, documents_changed integer, queries_added integer, queries_retired integer,
            labels_added integer, labels_retired integer, detail varchar)""",
    "query_top_k": """
        create table if not exists query_top_k (
            qid varchar primary key, doc_ids varchar, k integer, batch_id varchar, updated_at timestamp)""",
    "student_checkpoint_registry": """
        create table if not exists student_checkpoint_registry (
            checkpoint_id varchar primary key, path varchar, sha256 varchar, created_at timestamp,
            first_used_batch varchar, stale_at timestamp, stale_reason varchar, retrain_requested_by varchar)""",
}


def ensure_tables(conn: Any) -> None:
    """Create every table of the incremental path that is missing (a DuckDB connection)."""
    for ddl in TABLES_DDL.values():
        conn.execute(ddl)
    for column, kind in (("encoding", "varchar"), ("source_bytes", "bigint"), ("truncated", "boolean")):
        conn.execute(f"alter table document_versions add column if not exists {column} {kind}")
    for column, kind in (("routing_reason", "varchar"), ("routing_score", "double")):
        conn.execute(f"alter table relevance_labels add column if not exists {column} {kind}")
    for column in (
        "retired_at timestamp",
        "retired_by_batch varchar",
        "retired_reason varchar",
        "retired_detail varchar",
    ):
        conn.execute(f"alter table label_queries add column if not exists {column}")


def insert_rows(conn: Any, table: str, frame: pd.DataFrame) -> int:
    """Append a frame's rows to ``table`` by column name; in a keyed table, keys already present are skipped.
    Returns the number of rows added."""
    if frame.empty:
        return 0
    conn.register("_rows", frame)
    try:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        before = conn.execute(f'select count(*) from "{table}"').fetchall()[0][0]
        conflict = " on conflict do nothing" if "primary key" in TABLES_DDL[table] else ""
        conn.execute(f'insert into "{table}" ({columns}) select {columns} from _rows{conflict}')
        return conn.execute(f'select count(*) from "{table}"').fetchall()[0][0] - before
    finally:
        conn.unregister("_rows")


def merge_into_labels(
    conn: Any, rows: Sequence[Mapping[str, Any]], batch_id: str, now: pd.Timestamp
) -> tuple[int, int]:
    """Merge label rows into ``relevance_labels`` (see ``merge_labels``); returns (inserted, retired)."""
    current = {
        (q, d, h): kind
        for q, d, h, kind in conn.execute(
            "select qid, doc_id, content_hash, labeler_kind from relevance_labels where retired_at is null"
        ).fetchall()
    }
    merge = merge_labels(current, rows)
    if merge.insert:
        frame = pd.DataFrame(merge.insert).assign(batch_id=batch_id, labeled_at=now)
        frame["grade"] = frame["grade"].astype("Int64")
        insert_rows(conn, "relevance_labels", frame)
    for (qid, doc_id, content_hash), kind in merge.retire:
        conn.execute(
            "update relevance_labels set retired_at = ?, retired_by_batch = ?, "
            "retired_reason = 'superseded_by_teacher' "
            "where qid = ? and doc_id = ? and content_hash = ? and labeler_kind = ? and retired_at is null",
            [now, batch_id, qid, doc_id, content_hash, kind],
        )
    return len(merge.insert), len(merge.retire)


BASELINE_BATCH = "baseline"


REBOOTSTRAP_ENV = "RELABEL_REBOOTSTRAP"


# the full pipeline's pool labels on the current document versions of seed_corpus: the student's where the
# teacher did not grade the pair, the teacher's (ok status) otherwise; one home for the baseline's label join
BASELINE_STUDENT_LABELS_SQL = """
select s.qid, s.doc_id, d.content_hash, 'student' as labeler_kind, s.labeler_id,
       (select sha256 from student_checkpoint order by created_at desc limit 1) as labeler_version,
       s.grade, s.expected_grade
from student_labels s join seed_corpus d using (doc_id) where s.pair_source = 'pool'
"""


BASELINE_TEACHER_LABELS_SQL = """
select t.qid, t.doc_id, d.content_hash, 'teacher' as labeler_kind, t.labeler_id,
       t.model || ' ' || coalesce(t.prompt_id, '') || '@' || coalesce(t.prompt_version, '') as labeler_version,
       t.grade, t.expected_grade
from teacher_labels t join seed_corpus d using (doc_id) where t.pair_source = 'pool' and t.status = 'ok'
"""


def baseline_label_rows(conn: Any) -> list[dict[str, Any]]:
    """The full pipeline's pool labels, student rows first, then teacher rows (merge order)."""
    frames = []
    if table_exists(conn, "student_labels") and table_exists(conn, "student_checkpoint"):
        frames.append(conn.execute(BASELINE_STUDENT_LABELS_SQL).df())
    if table_exists(conn, "teacher_labels"):
        frames.append(conn.execute(BASELINE_TEACHER_LABELS_SQL).df())
    return [row for frame in frames for row in frame.to_dict("records")]


def require_full_tables(conn: Any) -> None:
    """Fail with the reason when the full pipeline's tables are missing."""
    if not table_exists(conn, "seed_corpus") or not table_exists(conn, "synthetic_queries"):
        raise RuntimeError(
            "incremental relabeling starts from the full pipeline's tables: run `relabel run` (relabel_job) once first"
        )


def import_queries_and_pools(conn: Any, batch_id: str, now: pd.Timestamp) -> int:
    """The full pipeline's queries and pool pairs into ``label_queries`` and ``label_pairs`` under ``batch_id``
    (rows already there are kept); returns the queries added."""
    before = conn.execute("select count(*) from label_queries").fetchall()[0][0]
    conn.execute(
        "insert into label_queries (qid, doc_id, content_hash, query_type, query_text, model, prompt_version, "
        "batch_id, created_at) select q.qid, q.doc_id, d.content_hash, q.query_type, q.query_text, q.model, "
        "q.prompt_version, ?, ? from synthetic_queries q join seed_corpus d using (doc_id) on conflict do nothing",
        [batch_id, now],
    )
    if table_exists(conn, "candidate_pools"):
        conn.execute(
            "insert into label_pairs select p.qid, p.doc_id, d.content_hash, p.role, p.bm25_rank, p.bm25_score, "
            "?, ? from candidate_pools p join seed_corpus d using (doc_id) on conflict do nothing",
            [batch_id, now],
        )
    return int(conn.execute("select count(*) from label_queries").fetchall()[0][0] - before)


def import_baseline(conn: Any, now: pd.Timestamp) -> None:
    """First import: the full pipeline's documents, queries, pools and labels become version 1 / batch
    ``baseline`` (the teacher's label is current where it graded the pair, the student's otherwise)."""
    require_full_tables(conn)
    run = conn.execute
    seed_columns = {
        c
        for (c,) in run(
            "select column_name from information_schema.columns where table_name = 'seed_corpus'"
        ).fetchall()
    }
    read_as = ", ".join(c if c in seed_columns else "null" for c in ("encoding", "source_bytes", "truncated"))
    run(
        "insert into document_versions select doc_id, 1, content_hash, 'baseline', 'baseline', false, title, author, "
        f"path, modified, doc_type, format, text, ?, null, null, {read_as} from seed_corpus",
        [now],
    )
    import_queries_and_pools(conn, BASELINE_BATCH, now)
    merge_into_labels(conn, baseline_label_rows(conn), BASELINE_BATCH, now)


def reimport_baseline(conn: Any, import_id: str, now: pd.Timestamp) -> dict[str, int]:
    """Re-bootstrap after ``relabel_job`` rebuilt the full tables: documents that differ from ``seed_corpus``
    get a new version (or a tombstone when gone), queries the rebuilt baseline no longer holds are retired,
    new ones added, and every current label becomes the baseline's (``plan_label_reimport``); everything
    replaced is retired with reason ``rebootstrap`` and batch ``import_id``, nothing is deleted."""
    require_full_tables(conn)
    run = conn.execute
    current_versions = {
        doc_id: CurrentVersion(version, content_hash, tombstone)
        for doc_id, version, content_hash, tombstone in run(
            "select doc_id, version, content_hash, is_tombstone from document_versions where retired_at is null"
        ).fetchall()
    }
    seed = run("select * from seed_corpus").df()
    seed_rows = {str(r["doc_id"]): r for r in seed.to_dict("records")}
    gone = [d for d, v in current_versions.items() if not v.is_tombstone and d not in seed_rows]
    plan = plan_versions(current_versions, {d: str(r["content_hash"]) for d, r in seed_rows.items()}, gone)
    versions = []
    for step in plan:
        if step.change in ("unchanged", "missing"):
            continue
        if step.previous_version is not None:
            run(
                "update document_versions set retired_at = ?, retired_by_batch = ? where doc_id = ? and version = ?",
                [now, import_id, step.doc_id, step.previous_version],
            )
        doc = seed_rows.get(step.doc_id) or {"doc_id": step.doc_id, "path": step.doc_id}
        versions.append(
            {
                **{k: doc.get(k) for k in DOCUMENT_VERSION_FIELDS},
                "version": step.version,
                "batch_id": import_id,
                "change": step.change,
                "is_tombstone": step.change == "deleted",
                "created_at": now,
            }
        )
    insert_rows(conn, "document_versions", pd.DataFrame(versions))
    queries_retired = run(
        "update label_queries set retired_at = ?, retired_by_batch = ?, retired_reason = 'rebootstrap', "
        "retired_detail = 'not in the rebuilt synthetic_queries' "
        "where retired_at is null and qid not in (select qid from synthetic_queries)",
        [now, import_id],
    ).fetchall()[0][0]
    queries_added = import_queries_and_pools(conn, import_id, now)
    everything = baseline_label_rows(conn)
    rows, current = _live_baseline_and_current(conn, everything)
    plan_labels = plan_label_reimport(current, rows)
    if plan_labels.retire:
        conn.register("_retire", pd.DataFrame(plan_labels.retire, columns=["qid", "doc_id", "content_hash"]))
        run(
            "update relevance_labels r set retired_at = ?, retired_by_batch = ?, retired_reason = 'rebootstrap' "
            "from _retire x where r.qid = x.qid and r.doc_id = x.doc_id and r.content_hash = x.content_hash "
            "and r.retired_at is null",
            [now, import_id],
        )
        conn.unregister("_retire")
    if plan_labels.insert:
        frame = pd.DataFrame(plan_labels.insert).assign(batch_id=import_id, labeled_at=now)
        frame["grade"] = frame["grade"].astype("Int64")
        insert_rows(conn, "relevance_labels", frame)
    return {
        "documents_changed": len(versions),
        "queries_added": int(queries_added),
        "queries_retired": int(queries_retired),
        "labels_added": len(plan_labels.insert),
        "labels_retired": len(plan_labels.retire),
        "labels_kept": plan_labels.kept,
        "labels_skipped_retired_query": len(everything) - len(rows),
    }


DOCUMENT_VERSION_FIELDS = (
    "doc_id",
    "content_hash",
    "title",
    "author",
    "path",
    "modified",
    "doc_type",
    "format",
    "text",
    "encoding",
    "source_bytes",
    "truncated",
)


def inbox_batch_count(conn: Any) -> int:
    """How many inbox batches the warehouse has ingested (0 without the incremental tables)."""
    return (
        int(conn.execute("select count(*) from inbox_batches").fetchall()[0][0])
        if table_exists(conn, "inbox_batches")
        else 0
    )


def pending_rebootstrap(conn: Any) -> str | None:
    """The id of a re-bootstrap that ``relabel_job`` requested and has not finished, if any."""
    if not table_exists(conn, "baseline_imports"):
        return None
    rows = conn.execute(
        "select import_id from baseline_imports where status = 'pending' order by requested_at"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def guard_full_rebuild(conn: Any, allow_rebootstrap: bool, asset: str, now: pd.Timestamp) -> str | None:
    """Called by the full pipeline before it rewrites a table the incremental baseline came from. Without inbox
    batches: nothing to guard (``None``). With inbox batches: refuses with the reason unless a re-bootstrap
    is allowed (``RELABEL_REBOOTSTRAP=1``), in which case a pending re-bootstrap is registered (inbox batches
    wait for it) and its id returned; the ``baseline_imports`` asset at the end of ``relabel_job`` completes it."""
    batches = inbox_batch_count(conn)
    if not batches:
        return None
    pending = pending_rebootstrap(conn)
    if pending is not None:
        return pending
    if not allow_rebootstrap:
        latest = conn.execute("select max(batch_id) from inbox_batches").fetchall()[0][0]
        raise RuntimeError(
            f"{asset}: the warehouse holds {batches} inbox batches (latest {latest}) labeled incrementally on top "
            "of the previous baseline; rebuilding the full pipeline now would leave two diverging label sets. "
            f"Set {REBOOTSTRAP_ENV}=1 to rebuild and re-bootstrap relevance_labels from the rebuilt baseline "
            "(what differs is retired with reason 'rebootstrap', nothing is deleted), or keep relabeling through "
            "the inbox"
        )
    ensure_tables(conn)
    import_id = f"baseline-{now.strftime('%Y%m%dT%H%M%S%f')}"
    conn.execute(
        "insert into baseline_imports (import_id, status, requested_at, inbox_batches) values (?, 'pending', ?, ?)",
        [import_id, now, batches],
    )
    return import_id


def baseline_divergence(conn: Any) -> dict[str, int]:
    """How far the current labels are from the full pipeline's (``plan_label_reimport`` of the current state):
    labels the baseline would add and current labels it would retire; both 0 right after an import."""
    plan = plan_label_reimport(*reversed(_live_baseline_and_current(conn, baseline_label_rows(conn))))
    return {"missing": len(plan.insert), "extra": len(plan.retire), "baseline_labels": plan.kept + len(plan.insert)}


def _live_baseline_and_current(
    conn: Any, baseline_rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[PairKey, tuple[str, str, str, int | None]]]:
    """The baseline's label rows of current queries, and the signature of every current label."""
    live = {q for (q,) in conn.execute("select qid from label_queries where retired_at is null").fetchall()}
    current = {
        (q, d, h): label_signature({"labeler_kind": k, "labeler_id": i, "labeler_version": v, "grade": g})
        for q, d, h, k, i, v, g in conn.execute(
            "select qid, doc_id, content_hash, labeler_kind, labeler_id, labeler_version, grade "
            "from relevance_labels where retired_at is null"
        ).fetchall()
    }
    return [r for r in baseline_rows if r["qid"] in live], current


def load_top_k(conn: Any, k: int) -> dict[str, list[str]]:
    """The stored top-k of every current query (stored with the same k; another k is not a valid bound)."""
    rows = conn.execute(
        "select t.qid, t.doc_ids from query_top_k t join label_queries q using (qid) "
        "where q.retired_at is null and t.k = ?",
        [k],
    ).fetchall()
    return {qid: json.loads(doc_ids) for qid, doc_ids in rows}


def store_top_k(conn: Any, top_k: Mapping[str, Sequence[str]], k: int, batch_id: str, now: pd.Timestamp) -> None:
    """Keep the new top-k of the queries searched in this batch (replacing what was stored for them)."""
    if not top_k:
        return
    frame = pd.DataFrame(
        [
            {"qid": q, "doc_ids": json.dumps(list(d)), "k": k, "batch_id": batch_id, "updated_at": now}
            for q, d in top_k.items()
        ]
    )
    conn.register("_top_k", frame)
    try:
        conn.execute("insert or replace into query_top_k select qid, doc_ids, k, batch_id, updated_at from _top_k")
    finally:
        conn.unregister("_top_k")


# ---------------------------------------------------------------- one inbox batch's reads and writes

# the batch's document versions that need queries and pairs: new or changed, still current
NEW_VERSIONS_SQL = (
    "select {columns} from document_versions where batch_id = ? and change in ('new', 'changed') "
    "and retired_at is null order by doc_id"
)
CURRENT_DOCS_SQL = "select * from document_versions where retired_at is null and not is_tombstone order by doc_id"
# one home for the batch's pair join: pairs x current queries x current document versions
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


def ingested_batch(conn: Any, batch_id: str) -> dict[str, Any] | None:
    """The ``inbox_batches`` row of a batch already ingested (None when it is not)."""
    done = conn.execute("select * from inbox_batches where batch_id = ?", [batch_id]).df()
    return None if done.empty else done.iloc[0].to_dict()


def later_batch(conn: Any, sequence: int) -> str | None:
    """A batch with a later sequence number that was ingested already (batches are ingested in order)."""
    rows = conn.execute("select batch_id from inbox_batches where sequence > ?", [sequence]).fetchall()
    return str(rows[0][0]) if rows else None


def current_versions(conn: Any) -> dict[str, CurrentVersion]:
    """Every document's current version (tombstones included)."""
    return {
        doc_id: CurrentVersion(version, content_hash, tombstone)
        for doc_id, version, content_hash, tombstone in conn.execute(
            "select doc_id, version, content_hash, is_tombstone from document_versions where retired_at is null"
        ).fetchall()
    }


def queries_to_retire_on(
    conn: Any, step: VersionChange, new_doc: Mapping[str, Any] | None, min_coverage: float
) -> list[dict]:
    """The current queries of a changed or deleted document that no longer hold (``rules.queries_to_retire``)."""
    queries = conn.execute(
        "select qid, query_text from label_queries where doc_id = ? and retired_at is null", [step.doc_id]
    ).df()
    if queries.empty:
        return []
    old = conn.execute(
        "select * from document_versions where doc_id = ? and version = ?", [step.doc_id, step.previous_version]
    ).df()
    return queries_to_retire(
        queries.to_dict("records"), step.change, old.iloc[0].to_dict() if len(old) else None, new_doc, min_coverage
    )


def retire_version(conn: Any, step: VersionChange, batch_id: str, now: pd.Timestamp) -> None:
    """Retire a document's superseded version and its current labels (reason ``document_<change>``)."""
    conn.execute(
        "update document_versions set retired_at = ?, retired_by_batch = ? where doc_id = ? and version = ?",
        [now, batch_id, step.doc_id, step.previous_version],
    )
    conn.execute(
        "update relevance_labels set retired_at = ?, retired_by_batch = ?, retired_reason = ? "
        "where doc_id = ? and retired_at is null",
        [now, batch_id, f"document_{step.change}", step.doc_id],
    )


def retire_queries(conn: Any, retired: list[dict], batch_id: str, now: pd.Timestamp) -> int:
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


def record_batch(
    conn: Any, batch_id: str, sequence: int, created_at: pd.Timestamp, now: pd.Timestamp, counts: Mapping[str, int]
) -> None:
    """The batch's row in ``inbox_batches``: when it was made and ingested, and its documents by change."""
    conn.execute(
        "insert into inbox_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [batch_id, sequence, created_at, now, *(counts[c] for c in ("new", "changed", "deleted", "unchanged"))]
        + [counts["quarantined"]],
    )


def new_versions(conn: Any, batch_id: str, columns: str = "*") -> pd.DataFrame:
    """The batch's new and changed document versions that are still current."""
    return conn.execute(NEW_VERSIONS_SQL.format(columns=columns), [batch_id]).df()


def current_documents(conn: Any, doc_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Current, non-deleted document versions (all, or those of ``doc_ids``), by doc id."""
    if doc_ids is None:
        return conn.execute(CURRENT_DOCS_SQL).df()
    conn.register("_wanted", pd.DataFrame({"doc_id": list(doc_ids)}))
    try:
        sql = CURRENT_DOCS_SQL.replace("order by", "and doc_id in (select doc_id from _wanted) order by")
        return conn.execute(sql).df()
    finally:
        conn.unregister("_wanted")


def documents_to_index(conn: Any, cached_keys: Iterable[str]) -> list[dict[str, Any]]:
    """Every current document version for the BM25 index: only the keys (doc id, content hash) of versions whose
    passage tokens are cached, the full row of the others (their text is tokenized)."""
    cached = set(cached_keys)
    keys = conn.execute(CURRENT_DOCS_SQL.replace("select *", "select doc_id, content_hash", 1)).df()
    documents = keys.to_dict("records")
    pending = [d["doc_id"] for d in documents if version_key(d) not in cached]
    full = {r["doc_id"]: r for r in current_documents(conn, pending).to_dict("records")} if pending else {}
    return [full.get(d["doc_id"], d) for d in documents]


def previous_index_path(conn: Any, batch_id: str) -> Path | None:
    """The BM25 index of the latest batch before this one."""
    rows = conn.execute(
        "select path from inbox_bm25_index where batch_id < ? order by batch_id desc limit 1", [batch_id]
    ).fetchall()
    return Path(rows[0][0]) if rows else None


def batch_index_path(conn: Any, batch_id: str) -> Path:
    """The BM25 index built for this batch."""
    return Path(conn.execute("select path from inbox_bm25_index where batch_id = ?", [batch_id]).fetchall()[0][0])


def replace_batch_rows(conn: Any, table: str, batch_id: str, frame: pd.DataFrame) -> int:
    """Replace this batch's rows of ``table`` (a re-run of the step writes them again)."""
    conn.execute(f'delete from "{table}" where batch_id = ?', [batch_id])
    return insert_rows(conn, table, frame)


def current_queries(conn: Any, other_than_batch: str) -> pd.DataFrame:
    """qid, doc_id and query_text of every current query of the other batches, by qid."""
    return conn.execute(
        "select qid, doc_id, query_text from label_queries where retired_at is null and batch_id <> ? order by qid",
        [other_than_batch],
    ).df()


def batch_queries(conn: Any, batch_id: str) -> pd.DataFrame:
    """The queries written for this batch, by qid."""
    return conn.execute("select * from label_queries where batch_id = ? order by qid", [batch_id]).df()


def current_label_keys(conn: Any) -> list[PairKey]:
    """(qid, doc_id, content_hash) of every current label."""
    return conn.execute("select qid, doc_id, content_hash from relevance_labels where retired_at is null").fetchall()


def batch_pairs(conn: Any, batch_id: str) -> pd.DataFrame:
    """The batch's pairs with query text and document fields (``BATCH_PAIRS_SQL``)."""
    return conn.execute(BATCH_PAIRS_SQL, [batch_id]).df()


def drop_failed_teacher_rows(conn: Any, batch_id: str) -> int:
    """Delete this batch's teacher rows whose call failed (outage, budget stop), so that a re-run tries those
    pairs again (answers already paid for come from the LLM cache). Returns the rows deleted."""
    deleted = conn.execute(
        "delete from inbox_teacher_labels where batch_id = ? and status not in ('ok', 'unparsed')", [batch_id]
    )
    return int(deleted.fetchone()[0])  # DuckDB answers a delete with its row count


def teacher_graded_keys(conn: Any) -> list[PairKey]:
    """Pairs the teacher has answered (graded or unparsed), in any batch."""
    return conn.execute("select qid, doc_id, content_hash from inbox_teacher_labels").fetchall()


def record_routing(conn: Any, batch_id: str, routed: Sequence[Mapping[str, Any]], now: pd.Timestamp) -> None:
    """Every pair's routing (policy, reason, score, the student's grade when it routed) in ``inbox_routing``."""
    frame = pd.DataFrame([{k: r.get(k) for k in ROUTING_COLUMNS} for r in routed])
    insert_rows(conn, "inbox_routing", frame.assign(batch_id=batch_id, routed_at=now))


def batch_routing(conn: Any, batch_id: str) -> dict[PairKey, tuple[str, float | None]]:
    """(routing reason, score) of each of the batch's routed pairs."""
    rows = conn.execute(
        "select qid, doc_id, content_hash, routing_reason, routing_score from inbox_routing where batch_id = ?",
        [batch_id],
    ).fetchall()
    return {(q, d, h): (reason, score) for q, d, h, reason, score in rows}


def teacher_labels_to_merge(conn: Any, batch_id: str) -> pd.DataFrame:
    """The batch's ok teacher grades not yet in ``relevance_labels``, as label rows with their routing."""
    return conn.execute(
        "select t.qid, t.doc_id, t.content_hash, 'teacher' as labeler_kind, t.labeler_id, "
        "t.model || ' ' || t.prompt_id || '@' || t.prompt_version as labeler_version, t.grade, t.expected_grade, "
        "coalesce(r.routing_reason, 'random') as routing_reason, r.routing_score "
        "from inbox_teacher_labels t left join inbox_routing r using (qid, doc_id, content_hash) "
        "where t.batch_id = ? and t.status = 'ok' and not exists (select 1 from "
        "relevance_labels r where r.qid = t.qid and r.doc_id = t.doc_id and r.content_hash = t.content_hash "
        "and r.labeler_kind = 'teacher')",
        [batch_id],
    ).df()


def latest_checkpoint(conn: Any) -> dict[str, Any] | None:
    """The newest ``student_checkpoint`` row (id, path, sha256, created_at); None when there is none."""
    if not table_exists(conn, "student_checkpoint"):
        return None
    frame = conn.execute(
        "select checkpoint_id, path, sha256, created_at from student_checkpoint order by created_at desc limit 1"
    ).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def register_checkpoint(conn: Any, checkpoint: Mapping[str, Any], batch_id: str) -> None:
    """Register the checkpoint in ``student_checkpoint_registry`` with the first batch it labels."""
    conn.execute(
        "insert into student_checkpoint_registry (checkpoint_id, path, sha256, created_at, first_used_batch) "
        "values (?, ?, ?, ?, ?) on conflict do nothing",
        [checkpoint["checkpoint_id"], checkpoint["path"], checkpoint["sha256"], checkpoint["created_at"], batch_id],
    )


def staleness_inputs(conn: Any, checkpoint: Mapping[str, Any], labeler_id: str) -> tuple[int, list[tuple[int, int]]]:
    """Teacher labels made since the checkpoint, and (student, teacher) grades of the pairs both labeled where
    the teacher's pair was routed at random (an unbiased sample for the agreement)."""
    new_teacher = conn.execute(
        "select count(*) from inbox_teacher_labels where status = 'ok' and labeled_at > ?",
        [checkpoint["created_at"]],
    ).fetchall()[0][0]
    compared = conn.execute(
        "select s.grade, t.grade from relevance_labels s join relevance_labels t using (qid, doc_id, content_hash) "
        "where s.labeler_id = ? and s.labeler_kind = 'student' and t.labeler_kind = 'teacher' "
        "and coalesce(t.routing_reason, 'random') in ('random', 'random_slice')",
        [labeler_id],
    ).fetchall()
    return int(new_teacher), compared


def mark_stale(conn: Any, checkpoint_id: str, reason: str, batch_id: str, now: pd.Timestamp) -> None:
    """Mark the checkpoint stale (the retrain sensor picks it up), once."""
    conn.execute(
        "update student_checkpoint_registry set stale_at = ?, stale_reason = ?, retrain_requested_by = ? "
        "where checkpoint_id = ? and stale_at is null",
        [now, reason, batch_id, checkpoint_id],
    )


def current_label_count(conn: Any) -> int:
    """How many labels are current."""
    return int(conn.execute("select count(*) from relevance_labels where retired_at is null").fetchall()[0][0])
