"""Incremental relabeling without Dagster: inbox snapshots and batch manifests, document versions by content
hash (tombstones for deleted files), which (query, document version) pairs are new, which of them the
teacher samples, how new labels merge into ``relevance_labels`` (retire, never delete) and when the
student is stale.

A batch is a folder ``<data dir>/inbox_batches/<batch id>/`` holding ``manifest.json`` and a copy of every
new or changed file (staging-table rows are written there as files too), so a run ingests exactly what the
sensor saw, and the raw bytes of every ingested version stay on disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import pandas as pd

from relabel.documents import SUPPORTED_SUFFIXES, iter_source_files
from relabel.paths import file_sha256
from relabel.query_stats import content_terms
from relabel.retrieval import BM25Index, passage_texts, tokenize, top_indices
from relabel.routing import random_order, route

MANIFEST_FILE = "manifest.json"
FILES_DIR = "files"
INBOX_PREFIX = "inbox/"
STAGING_PREFIX = "staging/"
UNREADABLE = "unreadable:"

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


# ---------------------------------------------------------------- inbox state, batches and manifests


@dataclass(frozen=True)
class SourceState:
    """What the sensor knows of one inbox document: size and mtime (to skip re-hashing) and content hash."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass
class InboxCursor:
    """The sensor's cursor: the batch sequence and the state of every inbox file and staging row."""

    sequence: int = 0
    files: dict[str, SourceState] = field(default_factory=dict)
    staging: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> InboxCursor:
        """Read a cursor string; an empty or unknown (older) cursor starts fresh."""
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict) or "sequence" not in data:
            return cls()
        files = {name: SourceState(*state) for name, state in data.get("files", {}).items()}
        return cls(int(data["sequence"]), files, dict(data.get("staging", {})))

    def dump(self) -> str:
        """The cursor as a compact JSON string."""
        files = {name: [s.size, s.mtime_ns, s.sha256] for name, s in sorted(self.files.items())}
        return json.dumps({"sequence": self.sequence, "files": files, "staging": dict(sorted(self.staging.items()))})


def scan_inbox(folder: Path, previous: Mapping[str, SourceState]) -> dict[str, SourceState]:
    """``doc id -> state`` of every supported file under ``folder``; a file whose size and mtime match the
    previous state keeps its hash without being read again. An entry that cannot be read (symlink loop,
    no read permission, undecodable name, FIFO) gets the hash ``unreadable:<reason>``: it travels through
    the batch to ``inbox_quarantine`` with that reason, and is tried again at every scan."""
    states: dict[str, SourceState] = {}
    for entry in iter_source_files(folder):
        if not entry.problem and entry.path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        doc_id = INBOX_PREFIX + entry.doc_id
        if entry.problem:
            states[doc_id] = SourceState(0, 0, UNREADABLE + entry.problem)
            continue
        try:
            stat = entry.path.stat()
            known = previous.get(doc_id)
            if (
                known is not None
                and not known.sha256.startswith(UNREADABLE)
                and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            ):
                states[doc_id] = known
            else:
                states[doc_id] = SourceState(stat.st_size, stat.st_mtime_ns, file_sha256(entry.path))
        except OSError as error:
            states[doc_id] = SourceState(0, 0, f"{UNREADABLE}cannot read: {error.strerror or error}")
    return states


def unreadable_reason(content_hash: str | None) -> str | None:
    """The reason carried by an ``unreadable:`` hash, ``None`` for a real content hash."""
    if content_hash and content_hash.startswith(UNREADABLE):
        return content_hash.removeprefix(UNREADABLE)
    return None


def staging_doc_id(name: str) -> str:
    """Doc id of a staging-table row (its ``name`` carries the format's suffix, e.g. ``crm/note-7.md``)."""
    return STAGING_PREFIX + name.lstrip("/")


@dataclass(frozen=True)
class BatchChanges:
    """Doc ids that are new, changed (new content hash) or deleted since the previous state."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deleted)

    def __add__(self, other: BatchChanges) -> BatchChanges:
        return BatchChanges(
            tuple(sorted(self.added + other.added)),
            tuple(sorted(self.changed + other.changed)),
            tuple(sorted(self.deleted + other.deleted)),
        )


def diff_hashes(current: Mapping[str, str], previous: Mapping[str, str]) -> BatchChanges:
    """New, changed and deleted doc ids between two ``doc id -> content hash`` maps."""
    return BatchChanges(
        tuple(sorted(d for d in current if d not in previous)),
        tuple(sorted(d for d in current if d in previous and current[d] != previous[d])),
        tuple(sorted(d for d in previous if d not in current)),
    )


def next_sequence(cursor_sequence: int, existing_batch_ids: Iterable[str]) -> int:
    """The next batch's sequence: after the cursor's and after every registered batch (so a reset cursor
    cannot reuse an older sequence number)."""
    registered = [int(key[1:7]) for key in existing_batch_ids if len(key) > 7 and key[0] == "b" and key[1:7].isdigit()]
    return max([cursor_sequence, *registered]) + 1


def make_batch_id(sequence: int, changes: BatchChanges, hashes: Mapping[str, str]) -> str:
    """``b<sequence, 6 digits>-<hash of the changes>``: sorts in arrival order and names its content."""
    blob = json.dumps(
        {
            "added": {d: hashes[d] for d in changes.added},
            "changed": {d: hashes[d] for d in changes.changed},
            "deleted": list(changes.deleted),
        },
        sort_keys=True,
    )
    return f"b{sequence:06d}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class BatchManifest:
    """What one batch holds: doc id -> content hash for new and changed documents, deleted doc ids."""

    batch_id: str
    sequence: int
    created_at: str
    added: dict[str, str]
    changed: dict[str, str]
    deleted: list[str]

    @property
    def incoming(self) -> dict[str, str]:
        """New and changed documents with their content hash."""
        return {**self.added, **self.changed}

    def save(self, folder: Path) -> None:
        """Write ``manifest.json`` into the batch folder."""
        (folder / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: Path) -> BatchManifest:
        """Read a batch folder's manifest; a missing one is a clear error."""
        path = folder / MANIFEST_FILE
        if not path.exists():
            raise FileNotFoundError(f"batch manifest {path} is missing: was the batch registered by the inbox sensor?")
        return cls(**json.loads(path.read_text()))


def snapshot_batch(
    batches_dir: Path,
    batch_id: str,
    sequence: int,
    changes: BatchChanges,
    hashes: Mapping[str, str],
    sources: Mapping[str, Path | str],
) -> Path:
    """Copy the batch's new and changed documents (a file path, or a staging row's text) into
    ``<batches_dir>/<batch_id>/files/<doc id>`` and write the manifest; returns the batch folder.
    Idempotent: an existing complete snapshot is kept."""
    folder = batches_dir / batch_id
    if (folder / MANIFEST_FILE).exists():
        return folder
    staging = batches_dir / f".{batch_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for doc_id in (*changes.added, *changes.changed):
        if unreadable_reason(hashes[doc_id]) is not None:
            continue  # nothing to copy: the manifest carries the reason to the quarantine
        target = staging / FILES_DIR / doc_id
        target.parent.mkdir(parents=True, exist_ok=True)
        source = sources[doc_id]
        try:
            if isinstance(source, Path):
                shutil.copy2(source, target)
            else:
                target.write_text(source, encoding="utf-8")
        except OSError:
            continue  # gone or unreadable since the scan: the batch quarantines it as a missing snapshot
    staging.mkdir(parents=True, exist_ok=True)
    BatchManifest(
        batch_id,
        sequence,
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        {d: hashes[d] for d in changes.added},
        {d: hashes[d] for d in changes.changed},
        list(changes.deleted),
    ).save(staging)
    staging.rename(folder)
    return folder


def text_sha256(text: str) -> str:
    """Content hash of a staging row (the bytes its snapshot file will hold)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- document versions


@dataclass(frozen=True)
class CurrentVersion:
    """The current version of a document in ``document_versions``."""

    version: int
    content_hash: str
    is_tombstone: bool


@dataclass(frozen=True)
class VersionChange:
    """What ingesting one document of a batch does: ``new``, ``changed``, ``deleted`` (a tombstone),
    ``unchanged`` (same content as the current version: nothing to do) or ``missing`` (deleted but unknown)."""

    doc_id: str
    change: str
    version: int | None
    previous_version: int | None


def plan_versions(
    current: Mapping[str, CurrentVersion], incoming: Mapping[str, str], deleted: Iterable[str]
) -> list[VersionChange]:
    """Version changes for a batch: ``incoming`` maps doc id -> content hash of new or changed files."""
    plan: list[VersionChange] = []
    for doc_id, content_hash in sorted(incoming.items()):
        known = current.get(doc_id)
        if known is None:
            plan.append(VersionChange(doc_id, "new", 1, None))
        elif known.content_hash == content_hash and not known.is_tombstone:
            plan.append(VersionChange(doc_id, "unchanged", None, known.version))
        else:
            # a file that comes back after deletion is a new version of the same document
            plan.append(VersionChange(doc_id, "changed", known.version + 1, known.version))
    for doc_id in sorted(set(deleted)):
        known = current.get(doc_id)
        if known is None or known.is_tombstone:
            plan.append(VersionChange(doc_id, "missing", None, None))
        else:
            plan.append(VersionChange(doc_id, "deleted", known.version + 1, known.version))
    return plan


# ---------------------------------------------------------------- pairs, sampling, labels


PairKey = tuple[str, str, str]  # (qid, doc_id, content_hash)


def pair_key(row: Mapping[str, Any]) -> PairKey:
    """The identity of a label: query, document and the document version's content hash."""
    return (str(row["qid"]), str(row["doc_id"]), str(row["content_hash"]))


def unlabeled_pairs(candidates: Iterable[Mapping[str, Any]], labeled: Iterable[PairKey]) -> list[dict[str, Any]]:
    """Candidates that have no current label yet, each once (first occurrence wins)."""
    done = set(labeled)
    out: list[dict[str, Any]] = []
    for row in candidates:
        key = pair_key(row)
        if key not in done:
            done.add(key)
            out.append(dict(row))
    return out


def entering_pairs(
    results: Sequence[Sequence[tuple[str, float]]],
    qids: Sequence[str],
    new_docs: Mapping[str, str],
) -> list[dict[str, Any]]:
    """(existing query, new document version) pairs whose document is in the query's top-k ``results``
    (one ranked ``(doc_id, score)`` list per query); ``new_docs`` maps doc id -> content hash."""
    rows: list[dict[str, Any]] = []
    for qid, hits in zip(qids, results, strict=True):
        for rank, (doc_id, score) in enumerate(hits, start=1):
            if doc_id in new_docs:
                rows.append(
                    {
                        "qid": qid,
                        "doc_id": doc_id,
                        "content_hash": new_docs[doc_id],
                        "role": "entered_top_k",
                        "bm25_rank": rank,
                        "bm25_score": score,
                    }
                )
    return rows


def sample_size(n_pairs: int, rate: float) -> int:
    """How many of ``n_pairs`` new pairs the teacher grades: ``ceil(rate * n)``, within [0, n]."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"teacher sample rate must be within [0, 1], got {rate}")
    return min(n_pairs, math.ceil(rate * n_pairs - 1e-9))


def teacher_sample(pairs: Sequence[Mapping[str, Any]], rate: float, seed: int) -> list[dict[str, Any]]:
    """A deterministic sample of ``sample_size(len(pairs), rate)`` pairs: the smallest seeded hashes of the
    pair keys, so the same pairs are chosen on every re-run and a pair's chance does not depend on order."""
    order = random_order(len(pairs), seed, [pair_key(r) for r in pairs])
    return [dict(pairs[i]) for i in order[: sample_size(len(pairs), rate)]]


ROUTING_POLICIES = ("random", "uncertainty")


def route_teacher_pairs(
    pairs: Sequence[Mapping[str, Any]],
    rate: float,
    seed: int,
    policy: str = "random",
    variant: str = "entropy",
    random_share: float = 0.1,
    probabilities: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Every pair with its routing: ``to_teacher``, ``routing_reason`` and ``routing_score``.

    The budget is ``sample_size(len(pairs), rate)`` pairs. ``random`` picks the same pairs as ``teacher_sample``;
    ``uncertainty`` keeps ``random_share`` of the budget on those seeded-random pairs (so student–teacher
    agreement on them stays unbiased) and fills the rest with the pairs the student is least sure of
    (``probabilities``: entropy; ``expected`` + ``thresholds``: margin), see ``relabel.routing``."""
    if policy not in ROUTING_POLICIES:
        raise ValueError(f"RELABEL_TEACHER_ROUTING must be one of {ROUTING_POLICIES}, got {policy!r}")
    routing = route(
        len(pairs),
        sample_size(len(pairs), rate),
        policy,
        variant,
        random_share=random_share,
        seed=seed,
        probabilities=probabilities,
        expected=expected,
        thresholds=thresholds,
        keys=[pair_key(r) for r in pairs],
    )
    return [
        {
            **dict(row),
            "policy": routing.policy,
            "variant": routing.variant,
            "to_teacher": bool(routing.teacher[i]),
            "routing_reason": str(routing.reason[i]),
            "routing_score": None if np.isnan(routing.score[i]) else float(routing.score[i]),
        }
        for i, row in enumerate(pairs)
    ]


LABEL_KIND_PRECEDENCE = {"teacher": 2, "student": 1}


@dataclass(frozen=True)
class LabelMerge:
    """Rows to insert into ``relevance_labels`` and current rows to retire (by pair key and labeler kind)."""

    insert: list[dict[str, Any]]
    retire: list[tuple[PairKey, str]]


def merge_labels(current: Mapping[PairKey, str], new_labels: Sequence[Mapping[str, Any]]) -> LabelMerge:
    """Merge new labels into the current ones (``current`` maps pair key -> labeler kind of its current
    label), in the order given. A pair gets a label only when it has none; a teacher label supersedes a
    student label of the same pair (the student's row is retired, not deleted, so student-teacher agreement
    stays measurable); anything else already labeled is left alone."""
    state = dict(current)
    insert: list[dict[str, Any]] = []
    retire: list[tuple[PairKey, str]] = []
    for row in new_labels:
        key, kind = pair_key(row), str(row["labeler_kind"])
        held = state.get(key)
        if held is None:
            insert.append(dict(row))
            state[key] = kind
        elif LABEL_KIND_PRECEDENCE[kind] > LABEL_KIND_PRECEDENCE[held]:
            retire.append((key, held))
            insert.append(dict(row))
            state[key] = kind
    return LabelMerge(insert, retire)


@dataclass(frozen=True)
class RetrainDecision:
    """Whether the current student checkpoint is stale, and why."""

    stale: bool
    reason: str
    new_teacher_labels: int
    agreement: float | None
    compared_pairs: int


def retrain_decision(
    new_teacher_labels: int,
    student_grades: Sequence[int],
    teacher_grades: Sequence[int],
    *,
    min_teacher_labels: int,
    min_agreement: float,
    min_compared_pairs: int,
) -> RetrainDecision:
    """Stale when at least ``min_teacher_labels`` teacher labels arrived since the checkpoint was made, or
    when the student's exact agreement with the teacher on the sampled new pairs (at least
    ``min_compared_pairs`` of them) is below ``min_agreement``."""
    if len(student_grades) != len(teacher_grades):
        raise ValueError("student and teacher grades must be paired")
    compared = len(student_grades)
    agreement = (
        sum(int(s) == int(t) for s, t in zip(student_grades, teacher_grades, strict=True)) / compared
        if compared
        else None
    )
    if new_teacher_labels >= min_teacher_labels:
        reason = f"{new_teacher_labels} new teacher labels (threshold {min_teacher_labels})"
        return RetrainDecision(True, reason, new_teacher_labels, agreement, compared)
    if agreement is not None and compared >= min_compared_pairs and agreement < min_agreement:
        reason = f"student-teacher agreement {agreement:.3f} on {compared} new pairs < {min_agreement}"
        return RetrainDecision(True, reason, new_teacher_labels, agreement, compared)
    return RetrainDecision(False, "fresh", new_teacher_labels, agreement, compared)


# ---------------------------------------------------------------- BM25 update: rebuild or reuse tokens

TOKENS_FILE = "passage_tokens.json"


def version_key(doc: Mapping[str, Any]) -> str:
    """Key of a document version in the token cache (its doc id changes the indexed path words)."""
    return f"{doc['doc_id']}@{doc['content_hash']}"


def build_bm25(
    documents: Sequence[Mapping[str, Any]], cached_tokens: Mapping[str, list[list[str]]] | None = None
) -> tuple[BM25Index, dict[str, list[list[str]]], int]:
    """A BM25 index over ``documents`` (same passages and tokens as ``BM25Index.build``). With
    ``cached_tokens`` (version key -> passage tokens of a previous index) only versions not in the cache are
    tokenized: the incremental update. Returns the index, the tokens per version and how many passages
    were tokenized now."""
    if not documents:
        raise ValueError("cannot build a BM25 index over an empty corpus")
    cached = cached_tokens or {}
    pending = [doc for doc in documents if version_key(doc) not in cached]
    texts = [passage_texts(doc) for doc in pending]
    flat = tokenize([t for doc_texts in texts for t in doc_texts]) if pending else []
    tokens: dict[str, list[list[str]]] = {}
    at = 0
    for doc, doc_texts in zip(pending, texts, strict=True):
        tokens[version_key(doc)] = [list(t) for t in flat[at : at + len(doc_texts)]]
        at += len(doc_texts)
    corpus: list[list[str]] = []
    starts: list[int] = []
    for doc in documents:
        key = version_key(doc)
        doc_tokens = tokens.get(key) or cached[key]
        tokens[key] = doc_tokens
        starts.append(len(corpus))
        corpus.extend(doc_tokens)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    index = BM25Index(retriever, [str(d["doc_id"]) for d in documents], np.asarray(starts))
    return index, tokens, sum(len(t) for t in texts)


def save_tokens(directory: Path, tokens: Mapping[str, list[list[str]]]) -> None:
    """Store the passage tokens next to an index, for the next incremental update."""
    (directory / TOKENS_FILE).write_text(json.dumps(tokens, sort_keys=True))


def load_tokens(directory: Path | None) -> dict[str, list[list[str]]]:
    """The passage tokens stored with an index (empty when there is none)."""
    if directory is None or not (directory / TOKENS_FILE).exists():
        return {}
    return json.loads((directory / TOKENS_FILE).read_text())


def terms_overlap(queries: Sequence[str], docs_tokens: Iterable[list[list[str]]]) -> list[bool]:
    """For each query, whether it shares a stemmed term with the new documents' passages: only those
    queries can rank a new document above score 0, so only they are retrieved again."""
    vocabulary = {token for doc in docs_tokens for passage in doc for token in passage}
    return [bool(vocabulary.intersection(tokens)) for tokens in tokenize(queries)] if queries else []


# ---------------------------------------------------------------- label merge into relevance_labels


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


# ---------------------------------------------------------------- the full pipeline's tables as the baseline

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


def _table_exists(conn: Any, name: str) -> bool:
    return bool(
        conn.execute("select count(*) from information_schema.tables where table_name = ?", [name]).fetchall()[0][0]
    )


def baseline_label_rows(conn: Any) -> list[dict[str, Any]]:
    """The full pipeline's pool labels, student rows first, then teacher rows (merge order)."""
    frames = []
    if _table_exists(conn, "student_labels") and _table_exists(conn, "student_checkpoint"):
        frames.append(conn.execute(BASELINE_STUDENT_LABELS_SQL).df())
    if _table_exists(conn, "teacher_labels"):
        frames.append(conn.execute(BASELINE_TEACHER_LABELS_SQL).df())
    return [row for frame in frames for row in frame.to_dict("records")]


def require_full_tables(conn: Any) -> None:
    """Fail with the reason when the full pipeline's tables are missing."""
    if not _table_exists(conn, "seed_corpus") or not _table_exists(conn, "synthetic_queries"):
        raise RuntimeError(
            "incremental relabeling starts from the full pipeline's tables: run `relabel run` (relabel_job) once first"
        )


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
    run(
        "insert into label_queries (qid, doc_id, content_hash, query_type, query_text, model, prompt_version, "
        "batch_id, created_at) select q.qid, q.doc_id, d.content_hash, q.query_type, q.query_text, q.model, "
        "q.prompt_version, 'baseline', ? from synthetic_queries q join seed_corpus d using (doc_id) "
        "on conflict do nothing",
        [now],
    )
    if _table_exists(conn, "candidate_pools"):
        run(
            "insert into label_pairs select p.qid, p.doc_id, d.content_hash, p.role, p.bm25_rank, p.bm25_score, "
            "'baseline', ? from candidate_pools p join seed_corpus d using (doc_id) on conflict do nothing",
            [now],
        )
    merge_into_labels(conn, baseline_label_rows(conn), BASELINE_BATCH, now)


def label_signature(row: Mapping[str, Any]) -> tuple[str, str, str, int | None]:
    """What makes two labels of a pair the same label: labeler kind, id, version and grade."""
    grade = row.get("grade")
    grade = None if grade is None or (isinstance(grade, float) and math.isnan(grade)) else int(grade)
    return (str(row["labeler_kind"]), str(row["labeler_id"]), str(row["labeler_version"]), grade)


@dataclass(frozen=True)
class LabelReimport:
    """How ``relevance_labels`` becomes the rebuilt baseline: rows to insert, current pairs to retire."""

    insert: list[dict[str, Any]]
    retire: list[PairKey]
    kept: int


def plan_label_reimport(
    current: Mapping[PairKey, tuple[str, str, str, int | None]], baseline_rows: Sequence[Mapping[str, Any]]
) -> LabelReimport:
    """The current label of every pair becomes the baseline's (the teacher's where it graded the pair, the
    student's otherwise): an identical current label is kept, a different one retired and replaced, a current
    label of a pair the baseline lacks retired. So re-importing an unchanged baseline changes nothing."""
    wanted: dict[PairKey, dict[str, Any]] = {}
    for row in baseline_rows:
        key = pair_key(row)
        held = wanted.get(key)
        if (
            held is None
            or LABEL_KIND_PRECEDENCE[str(row["labeler_kind"])] >= LABEL_KIND_PRECEDENCE[held["labeler_kind"]]
        ):
            wanted[key] = dict(row)
    insert = [row for key, row in wanted.items() if current.get(key) != label_signature(row)]
    retire = sorted(
        key for key, signature in current.items() if key not in wanted or label_signature(wanted[key]) != signature
    )
    return LabelReimport(insert, retire, len(wanted) - len(insert))


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
    before = run("select count(*) from label_queries").fetchall()[0][0]
    run(
        "insert into label_queries (qid, doc_id, content_hash, query_type, query_text, model, prompt_version, "
        "batch_id, created_at) select q.qid, q.doc_id, d.content_hash, q.query_type, q.query_text, q.model, "
        "q.prompt_version, ?, ? from synthetic_queries q join seed_corpus d using (doc_id) on conflict do nothing",
        [import_id, now],
    )
    queries_added = run("select count(*) from label_queries").fetchall()[0][0] - before
    if _table_exists(conn, "candidate_pools"):
        run(
            "insert into label_pairs select p.qid, p.doc_id, d.content_hash, p.role, p.bm25_rank, p.bm25_score, "
            "?, ? from candidate_pools p join seed_corpus d using (doc_id) on conflict do nothing",
            [import_id, now],
        )
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
        if _table_exists(conn, "inbox_batches")
        else 0
    )


def pending_rebootstrap(conn: Any) -> str | None:
    """The id of a re-bootstrap that ``relabel_job`` requested and has not finished, if any."""
    if not _table_exists(conn, "baseline_imports"):
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


# ---------------------------------------------------------------- retiring queries that no longer hold

QUERY_FIT_MIN_COVERAGE = 0.5


def document_terms(doc: Mapping[str, Any]) -> frozenset[str]:
    """Stemmed content words of a document version: title, metadata and text (what a query can be written from)."""
    return content_terms(" ".join(passage_texts({**doc, "title": doc.get("title") or ""}, 10**9)))


def query_coverage(query: str, terms: frozenset[str]) -> float:
    """Share of the query's stemmed content words found in ``terms`` (1.0 for a query without any)."""
    words = content_terms(query)
    return len(words & terms) / len(words) if words else 1.0


def queries_to_retire(
    queries: Sequence[Mapping[str, Any]],
    change: str,
    old_doc: Mapping[str, Any] | None,
    new_doc: Mapping[str, Any] | None,
    min_coverage: float = QUERY_FIT_MIN_COVERAGE,
) -> list[dict[str, str]]:
    """``{qid, reason, detail}`` of the current queries written from a document (``queries``: qid and
    query_text) that no longer hold after ``change``: every one when it is ``deleted``; when it is ``changed``,
    a query whose stemmed content words the new version covers less than ``min_coverage`` and less than the
    old version did (``no_longer_fits``)."""
    if change == "deleted":
        return [{"qid": str(q["qid"]), "reason": "document_deleted", "detail": ""} for q in queries]
    if change != "changed" or new_doc is None:
        return []
    new_terms = document_terms(new_doc)
    old_terms = document_terms(old_doc) if old_doc is not None else frozenset()
    out = []
    for q in queries:
        now, before = query_coverage(str(q["query_text"]), new_terms), query_coverage(str(q["query_text"]), old_terms)
        if now < min_coverage and now < before:
            detail = f"new version covers {now:.2f} of its words (old {before:.2f}, minimum {min_coverage})"
            out.append({"qid": str(q["qid"]), "reason": "no_longer_fits", "detail": detail})
    return out


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


# ---------------------------------------------------------------- incremental re-retrieval


@dataclass
class Reretrieval:
    """What re-retrieving existing queries found: entering pairs, each retrieved query's new top-k (doc ids) to
    store, and how many queries were scored, ruled out by the bound, or searched in full."""

    entering: list[dict[str, Any]]
    top_k: dict[str, list[str]]
    scored: int
    ruled_out: int
    searched: int


def reretrieve(
    index: BM25Index,
    queries: Sequence[tuple[str, str]],
    new_docs: Mapping[str, str],
    new_tokens: Iterable[list[list[str]]],
    stored: Mapping[str, Sequence[str]],
    k: int,
) -> Reretrieval:
    """(existing query, new document) pairs whose document enters the query's top ``k`` in ``index``, exactly as
    a full search would find them, at a cost that does not grow with the corpus for most queries.

    ``queries``: (qid, text) of the existing queries; only those sharing a stemmed term with a new document
    (``new_tokens``: the new versions' passage tokens, as indexed) are scored (one sparse sum over the query's
    postings). ``stored`` holds each query's top-k doc ids from its last search: their scores in the new index
    are a lower bound on the query's k-th best score among the documents that were there before, so when every
    new document scores strictly below it none can enter and the full search (maxP over every document, top-k)
    is skipped. A query without a stored top-k (or whose stored documents are gone) is searched in full.
    Returns the entering pairs and the new top-k of every query searched in full."""
    position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    ends = np.append(index.starts[1:], index.n_passages)
    new_positions = [position[d] for d in new_docs if d in position]
    vocabulary = {token for doc in new_tokens for passage in doc for token in passage}
    out = Reretrieval([], {}, 0, 0, 0)
    if not new_positions:
        return out
    texts = [text for _, text in queries]
    for (qid, _), tokens in zip(queries, tokenize(texts) if texts else [], strict=True):
        if not tokens or vocabulary.isdisjoint(tokens):
            continue
        out.scored += 1
        passages = np.asarray(index.retriever.get_scores(tokens))

        def score(i: int, passages: np.ndarray = passages) -> float:
            return float(passages[index.starts[i] : ends[i]].max())

        best_new = max(score(i) for i in new_positions)
        if best_new <= 0:
            out.ruled_out += 1
            continue
        known = [position[d] for d in stored.get(qid, ()) if d in position and d not in new_docs]
        if len(known) >= k and best_new < sorted(score(i) for i in known)[-k]:
            out.ruled_out += 1
            continue
        out.searched += 1
        scores = np.maximum.reduceat(passages, index.starts)
        top = [int(i) for i in top_indices(scores, k) if scores[i] > 0]
        out.top_k[qid] = [index.doc_ids[i] for i in top]
        out.entering += entering_pairs([[(index.doc_ids[i], float(scores[i])) for i in top]], [qid], new_docs)
    return out


def top_k_of(index: BM25Index, queries: Sequence[tuple[str, str]], k: int) -> dict[str, list[str]]:
    """Each query's top-k doc ids (score > 0) in ``index`` by a full search."""
    if not queries:
        return {}
    results = index.search([text for _, text in queries], k)
    return {qid: [doc_id for doc_id, _ in hits] for (qid, _), hits in zip(queries, results, strict=True)}


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
