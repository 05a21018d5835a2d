"""The DuckDB warehouse resource: dagster-duckdb's resource, whose file's folder is made when a run starts."""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource


class WarehouseResource(DuckDBResource):
    """``DuckDBResource`` that creates the database file's folder before a run uses it (DuckDB creates the file,
    not its folder), so that loading the code location needs no folder to exist and creates none."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
