"""The inbox: what the sensor sees in the watched folder, and the batch it snapshots.

A batch is a folder ``<data dir>/inbox_batches/<batch id>/`` holding ``manifest.json`` and a copy of every
new or changed file (staging-table rows are written there as files too), so a run ingests exactly what the
sensor saw, and the raw bytes of every ingested version stay on disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relabel.corpus.documents import SUPPORTED_SUFFIXES, Document, DocumentError, iter_source_files, read_document
from relabel.paths import file_sha256

MANIFEST_FILE = "manifest.json"


FILES_DIR = "files"


INBOX_PREFIX = "inbox/"


STAGING_PREFIX = "staging/"


UNREADABLE = "unreadable:"


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


def read_batch_file(folder: Path, doc_id: str, expected_hash: str, max_bytes: int) -> Document:
    """One file of a batch snapshot, checked against the manifest's hash; ``DocumentError`` with the reason when
    it was unreadable at scan time, is missing, or differs from the hash."""
    reason = unreadable_reason(expected_hash)
    if reason is not None:
        raise DocumentError(reason)
    path = folder / FILES_DIR / doc_id
    if not path.exists():
        raise DocumentError("snapshot file is missing from the batch folder")
    if file_sha256(path) != expected_hash:
        raise DocumentError("snapshot content does not match the hash in the manifest")
    return read_document(path, doc_id, max_bytes)


def read_batch_documents(
    folder: Path, manifest: BatchManifest, max_bytes: int, now: dt.datetime
) -> tuple[dict[str, Document], list[dict]]:
    """Every incoming file of the batch, parsed; the ones that cannot be read become ``inbox_quarantine`` rows
    with their reason (one bad file never fails the batch)."""
    parsed: dict[str, Document] = {}
    quarantine: list[dict] = []
    for doc_id, content_hash in sorted(manifest.incoming.items()):
        try:
            parsed[doc_id] = read_batch_file(folder, doc_id, content_hash, max_bytes)
        except (DocumentError, OSError) as error:
            quarantine.append(
                {
                    "batch_id": folder.name,
                    "doc_id": doc_id,
                    "content_hash": None if unreadable_reason(content_hash) else content_hash,
                    "reason": str(error),
                    "seen_at": now,
                }
            )
    return parsed, quarantine
