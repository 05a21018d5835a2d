"""Small helpers every asset uses: DuckDB writes with metadata the UI shows."""

import time
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.incremental import label_store
from relabel.warehouse import replace_table, table_columns

WRITER_POOL = "duckdb_writer"


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
