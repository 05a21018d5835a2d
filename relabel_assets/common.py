"""Small helpers every asset uses: DuckDB writes with metadata the UI shows, and the shards of the label assets."""

import time
from contextlib import ExitStack
from typing import Any

import dagster as dg
import duckdb as duckdb_module
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.incremental import label_store
from relabel.shard_store import absorb_logs, new_log_rows, register_views, shard_keys, shard_workspace, write_logs
from relabel.warehouse import replace_table, table_columns
from resources.settings import PipelineSettings

WRITER_POOL = "duckdb_writer"
PAIRS_TABLE = "pairs_to_grade"  # the pairs the teacher and the student grade: dbt_like_sql/pairs_to_grade.sql


def column_schema(duckdb: DuckDBResource, table: str) -> dg.TableSchemaMetadataValue:
    """The table's columns with their DuckDB types, as ``dagster/column_schema`` (the asset page's columns)."""
    with duckdb.get_connection() as conn:
        columns = table_columns(conn, table)
    return dg.MetadataValue.table_schema(
        dg.TableSchema(columns=[dg.TableColumn(name=name, type=data_type) for name, data_type in columns])
    )


def table_metadata(frame: pd.DataFrame, started: float, **extra: Any) -> dict[str, Any]:
    """Row count, a five-row preview and the elapsed seconds."""
    preview = frame.head(5).copy()
    for column in preview.columns:
        if preview[column].dtype == object:
            preview[column] = preview[column].astype(str).str.slice(0, 60)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
        "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 2)),
        **extra,
    }


def write_asset_table(
    duckdb: DuckDBResource, name: str, frame: pd.DataFrame, started: float, **extra: Any
) -> dg.MaterializeResult:
    """Replace the table named after the asset and report its metadata (column schema included)."""
    with duckdb.get_connection() as conn:
        replace_table(conn, name, frame)
    return dg.MaterializeResult(
        metadata=table_metadata(frame, started, **{"dagster/column_schema": column_schema(duckdb, name), **extra})
    )


def read_sql(duckdb: DuckDBResource, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame."""
    with duckdb.get_connection() as conn:
        return conn.execute(sql, params or []).df()


def guard_full_rebuild(duckdb: DuckDBResource, rebootstrap: bool, asset: str) -> str | None:
    """Before a full-pipeline asset rewrites a table the incremental baseline came from: refuse when inbox batches
    were labeled on top of it, unless ``RELABEL_REBOOTSTRAP`` asks to rebuild
    (``label_store.guard_full_rebuild``); returns
    the pending re-bootstrap's id, if any. The refusal is raised after the connection is closed (the resource's
    connection is not closed when an exception leaves it)."""
    refused: RuntimeError | None = None
    with duckdb.get_connection() as conn:
        try:
            pending = label_store.guard_full_rebuild(conn, rebootstrap, asset, pd.Timestamp.now())
        except RuntimeError as error:
            refused, pending = error, None
    if refused is not None:
        raise refused
    return pending


def shard_partitions(shards: int) -> dg.StaticPartitionsDefinition | None:
    """One static partition per shard of the label assets; none with one shard (the unpartitioned default)."""
    return dg.StaticPartitionsDefinition(shard_keys(shards)) if shards > 1 else None


class ShardWork:
    """One shard of a label asset, as a context manager. Unpartitioned (one shard): ``conn`` is the warehouse,
    written as before, and the table's view is (re)made at the end. A partition: ``conn`` is an in-memory DuckDB
    with the warehouse attached read-only (``label_store.shard_workspace``), so shards run in parallel; its new
    LLM cache entries and call-log rows go to the label store for the next DuckDB writer to absorb. Either way
    ``write`` puts the shard's rows in its Parquet file."""

    def __init__(
        self, context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings, asset: str
    ) -> None:
        self.asset = asset
        self.duckdb = duckdb
        self.settings = settings
        self.store = settings.label_store()
        partitions = context.assets_def.partitions_def
        if context.has_partition_key and partitions is not None:
            keys = list(partitions.get_partition_keys())
            self.shard, self.shards = keys.index(context.partition_key), len(keys)
        else:
            self.shard, self.shards = 0, 1
        self.written: list[str] = []
        self.files: list[str] = []
        self._stack = ExitStack()

    @property
    def partitioned(self) -> bool:
        return self.shards > 1

    def __enter__(self) -> "ShardWork":
        if self.partitioned:
            self.conn = self._stack.enter_context(shard_workspace(self.duckdb.database))
            label_store.guard_full_rebuild(
                self.conn, False, self.asset, pd.Timestamp.now()
            )  # read-only: refuse or pass
        else:
            guard_full_rebuild(self.duckdb, self.settings.rebootstrap, self.asset)
            self.conn = self._stack.enter_context(self.duckdb.get_connection())
        return self

    def write(self, table: str, frame: pd.DataFrame) -> None:
        """Replace this shard's file of ``table`` with ``frame``."""
        self.files.append(self.store.write_shard(table, frame, self.shard, self.shards))
        self.written.append(table)

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if kind is None:
                if self.partitioned:
                    write_logs(self.store, new_log_rows(self.conn), f"{self.asset}-{self.shard:04d}")
                else:
                    register_views(self.conn, self.store, 1, self.written)
        finally:
            self._stack.close()


def write_label_shard(work: ShardWork, frame: pd.DataFrame, started: float, **extra: Any) -> dg.MaterializeResult:
    """Metadata of one shard: rows, preview, column schema, the shard and its file."""
    with duckdb_module.connect() as conn:
        relation = conn.from_df(frame.head(0))
        columns = [dg.TableColumn(name=n, type=str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]
    return dg.MaterializeResult(
        metadata=table_metadata(
            frame,
            started,
            **{
                "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
                "shard": dg.MetadataValue.text(f"{work.shard} of {work.shards}"),
                "files": dg.MetadataValue.json(work.files),
                **extra,
            },
        )
    )


def ensure_label_views(duckdb: DuckDBResource, settings: PipelineSettings) -> dict[str, int]:
    """Before a DuckDB writer reads the label tables: views over the current shard files, and the LLM cache
    entries and call-log rows that teacher shards left in the label store absorbed into the warehouse."""
    store = settings.label_store()
    with duckdb.get_connection() as conn:
        register_views(conn, store, settings.shards)
        return absorb_logs(conn, store)
