"""Sharded label tables: pairs split by a stable hash of the query id, each shard's rows written as one Parquet
file under a storage URL (a local folder, or any fsspec URL such as ``s3://`` or ``gs://``), and DuckDB views
over the shard files with the names the tables had before, so readers do not change and parallel shard writers
never open the DuckDB file for writing."""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# tables written as shards: the label tables and, for the teacher, its members' votes
SHARDED_TABLES = ("teacher_labels", "teacher_label_votes", "student_labels")
# what a teacher shard adds to the warehouse's LLM cache and call log, absorbed by the next DuckDB writer
LOG_TABLES = ("llm_cache", "llm_calls")


def shard_of(qid: str, shards: int) -> int:
    """The shard of a query id: the first 8 bytes of its sha256, modulo ``shards`` (stable across processes,
    machines and Python versions, unlike ``hash``)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return int.from_bytes(hashlib.sha256(str(qid).encode()).digest()[:8], "big") % shards


def shard_keys(shards: int) -> list[str]:
    """Partition keys of ``shards`` shards: zero-padded numbers, so they sort as numbers do."""
    width = len(str(max(shards - 1, 0)))
    return [str(i).zfill(width) for i in range(shards)]


def in_shard(frame: pd.DataFrame, shard: int, shards: int, column: str = "qid") -> pd.DataFrame:
    """The rows of ``frame`` whose query falls in ``shard`` (each distinct query id is hashed once)."""
    if shards == 1:
        return frame
    owner = {qid: shard_of(qid, shards) for qid in frame[column].unique()}
    return frame[frame[column].map(owner) == shard].reset_index(drop=True)


@dataclass(frozen=True)
class LabelStore:
    """Shard files of the label tables under ``url``: ``<url>/<table>/shard-<k>-of-<n>.parquet``. A shard is
    written under a temporary name and renamed into place, so a re-run replaces that shard's file only and a
    reader never sees half a file."""

    url: str

    def _fs(self) -> tuple[Any, str]:
        fs, root = fsspec.core.url_to_fs(self.url)
        return fs, root.rstrip("/")

    def shard_file(self, table: str, shard: int, shards: int) -> str:
        """The URL of one shard's file."""
        return f"{self.url.rstrip('/')}/{table}/{_shard_name(shard, shards)}"

    def pattern(self, table: str, shards: int) -> str:
        """A glob over the current sharding's files of ``table`` (files of another shard count are ignored)."""
        return f"{self.url.rstrip('/')}/{table}/shard-*-of-{shards:04d}.parquet"

    def write_shard(self, table: str, frame: pd.DataFrame, shard: int, shards: int) -> str:
        """Write ``frame`` as the shard's Parquet file (temporary name, then rename); returns its URL."""
        fs, root = self._fs()
        folder = posixpath.join(root, table)
        fs.makedirs(folder, exist_ok=True)
        final = posixpath.join(folder, _shard_name(shard, shards))
        temporary = posixpath.join(folder, f".tmp-{uuid.uuid4().hex}-{_shard_name(shard, shards)}")
        with fs.open(temporary, "wb") as handle:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), handle)
        fs.mv(temporary, final)
        return self.shard_file(table, shard, shards)

    def shard_files(self, table: str, shards: int) -> list[str]:
        """The shard files of ``table`` present now, in shard order."""
        fs, root = self._fs()
        return sorted(fs.glob(posixpath.join(root, table, f"shard-*-of-{shards:04d}.parquet")))

    def remove_table(self, table: str) -> None:
        """Delete every file of ``table`` (any shard count)."""
        fs, root = self._fs()
        if fs.exists(posixpath.join(root, table)):
            fs.rm(posixpath.join(root, table), recursive=True)

    def read(self, table: str, shards: int, sql: str | None = None) -> pd.DataFrame:
        """Rows of every shard of ``table`` (or of ``sql`` over a view named ``table``), read by an in-memory
        DuckDB: no warehouse connection is opened."""
        with duckdb.connect() as conn:
            create_view(conn, table, self.pattern(table, shards))
            return conn.execute(sql or f'select * from "{table}"').df()


def _shard_name(shard: int, shards: int) -> str:
    return f"shard-{shard:04d}-of-{shards:04d}.parquet"


def create_view(conn: duckdb.DuckDBPyConnection, name: str, pattern: str) -> None:
    """``create or replace view <name>`` over the Parquet files matching ``pattern`` (a table of that name from
    an earlier version is dropped first: DuckDB does not replace a table by a view)."""
    kind = conn.execute(
        "select table_type from information_schema.tables where table_schema = 'main' and table_name = ?", [name]
    ).fetchall()
    if kind and kind[0][0] != "VIEW":
        conn.execute(f'drop table "{name}"')
    escaped = pattern.replace("'", "''")
    conn.execute(f"create or replace view \"{name}\" as select * from read_parquet('{escaped}', union_by_name = true)")


def register_views(
    conn: duckdb.DuckDBPyConnection, store: LabelStore, shards: int, tables: Iterable[str] = SHARDED_TABLES
) -> list[str]:
    """A view per sharded table that has files for this shard count; returns the tables given views."""
    made = []
    for table in tables:
        if store.shard_files(table, shards):
            create_view(conn, table, store.pattern(table, shards))
            made.append(table)
    return made


def absorb_logs(conn: duckdb.DuckDBPyConnection, store: LabelStore) -> dict[str, int]:
    """Move the LLM cache entries and call-log rows that teacher shards wrote under ``<url>/<log table>/`` into
    the warehouse tables (cache: first answer wins; calls: appended once, then the file is deleted). Run by a
    DuckDB writer after the shards; returns the rows read per table."""
    from relabel.llm.client import ensure_cache
    from relabel.llm.runner import CALLS_DDL

    ensure_cache(conn)
    conn.execute(CALLS_DDL)
    fs, root = store._fs()
    counts = {}
    for table in LOG_TABLES:
        files = sorted(fs.glob(posixpath.join(root, table, "*.parquet")))
        counts[table] = 0
        for path in files:
            with fs.open(path, "rb") as handle:
                frame = pq.read_table(handle).to_pandas()
            if len(frame):
                conn.register("_absorbed", frame)
                columns = ", ".join(f'"{c}"' for c in frame.columns)
                conflict = " on conflict do nothing" if table == "llm_cache" else ""
                conn.execute(f"insert into {table} ({columns}) select {columns} from _absorbed{conflict}")
                conn.unregister("_absorbed")
            fs.rm(path)
            counts[table] += len(frame)
    return counts


def write_logs(store: LabelStore, frames: dict[str, pd.DataFrame], name: str) -> None:
    """Write a shard's new LLM cache entries and call-log rows under ``<url>/<log table>/<name>-<uuid>.parquet``
    (a unique name: an earlier run's file not yet absorbed is kept)."""
    fs, root = store._fs()
    for table, frame in frames.items():
        if table not in LOG_TABLES or not len(frame):
            continue
        folder = posixpath.join(root, table)
        fs.makedirs(folder, exist_ok=True)
        final = posixpath.join(folder, f"{name}-{uuid.uuid4().hex}.parquet")
        temporary = posixpath.join(folder, f".tmp-{posixpath.basename(final)}")
        with fs.open(temporary, "wb") as handle:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), handle)
        fs.mv(temporary, final)


def shard_workspace(warehouse: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for a shard: the warehouse attached read-only as ``wh`` (many shard
    processes may read it at once) and a copy of its LLM cache, so cached answers are reused; what the shard
    adds to ``llm_cache`` and ``llm_calls`` stays here until ``new_log_rows`` takes it out."""
    from relabel.llm.client import ensure_cache
    from relabel.llm.runner import CALLS_DDL

    conn = duckdb.connect()
    escaped = warehouse.replace("'", "''")
    conn.execute(f"attach '{escaped}' as wh (read_only)")
    ensure_cache(conn)
    conn.execute(CALLS_DDL)
    attached = _warehouse_tables(conn)
    if "llm_cache" in attached:
        columns = _common_columns(conn, "llm_cache")
        conn.execute(f"insert into llm_cache ({columns}) select {columns} from wh.llm_cache on conflict do nothing")
    # unqualified names: the shard's own tables first, then the warehouse's (candidate_pools, ...)
    conn.execute("set search_path = 'memory.main,wh.main'")
    return conn


def _warehouse_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in conn.execute("select table_name from duckdb_tables() where database_name = 'wh'").fetchall()}


def _common_columns(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    rows = conn.execute(
        "select column_name from duckdb_columns() where database_name = 'memory' and table_name = ? "
        "intersect select column_name from duckdb_columns() where database_name = 'wh' and table_name = ?",
        [table, table],
    ).fetchall()
    return ", ".join(f'"{r[0]}"' for r in sorted(rows))


def new_log_rows(conn: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The cache entries a shard workspace added (not in the attached warehouse) and its call-log rows."""
    attached = _warehouse_tables(conn)
    known = "select cache_key from wh.llm_cache" if "llm_cache" in attached else "select null::varchar where false"
    return {
        "llm_cache": conn.execute(f"select * from memory.llm_cache where cache_key not in ({known})").df(),
        "llm_calls": conn.execute("select * from memory.llm_calls").df(),
    }


def sorted_labels(frame: pd.DataFrame, keys: Sequence[str] = ("pair_source", "qid", "doc_id")) -> pd.DataFrame:
    """Rows in key order (shard files concatenate in shard order; comparisons want one order)."""
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)
