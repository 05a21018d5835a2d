"""DuckDB helpers shared by the assets: replace a table from a DataFrame, read one back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import tenacity


def replace_table(conn: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """``create or replace table <name>`` with the frame's rows (atomic in one transaction)."""
    conn.register("_incoming", frame)
    try:
        conn.execute(f'create or replace table "{name}" as select * from _incoming')
    finally:
        conn.unregister("_incoming")


def read_table(conn: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """All rows of a table as a DataFrame."""
    return conn.execute(f'select * from "{name}"').df()


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the table is in the main schema."""
    return bool(
        conn.execute("select count(*) from information_schema.tables where table_name = ?", [name]).fetchall()[0][0]
    )


def table_columns(conn: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    """(column name, DuckDB type) of a table, in table order."""
    return [
        (str(column), str(data_type))
        for column, data_type in conn.execute(
            "select column_name, data_type from information_schema.columns where table_name = ? "
            "order by ordinal_position",
            [name],
        ).fetchall()
    ]


class WarehouseBusy(RuntimeError):
    """The warehouse file stayed locked by another process's writer for longer than the reader would wait."""


READ_WAIT_S = 60.0  # how long a reader (``relabel report``) waits for a writer to let go of the file


def connect_read_only(path: str | Path, wait_s: float = READ_WAIT_S) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse. DuckDB lets one process write *or* several read, so while a run
    writes, a reader retries with exponential backoff for up to ``wait_s`` seconds, then raises
    ``WarehouseBusy`` naming the file (and DuckDB's reason, which gives the writer's PID)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_lock_error),
        wait=tenacity.wait_exponential(multiplier=0.1, max=5.0),
        stop=tenacity.stop_after_delay(wait_s),
        reraise=True,
    )
    try:
        return retrying(duckdb.connect, str(path), read_only=True)
    except duckdb.IOException as error:
        if not _is_lock_error(error):
            raise
        raise WarehouseBusy(
            f"{path} is being written by another process and stayed locked for {wait_s:.0f} s ({error}); "
            "try again when that run has finished"
        ) from error


def _is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()
