"""DuckDB helpers shared by the assets: replace a table from a DataFrame, read one back."""

from __future__ import annotations

import duckdb
import pandas as pd


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
