"""Every ``.sql`` file of ``dbt_like_sql`` as a DuckDB table asset; upstream assets come from the SQL."""

import time
from importlib import resources
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from relabel.incremental import label_store
from relabel.shard_store import SHARDED_TABLES
from relabel.sql_models import SQLModel, discover_sql_models
from relabel_assets.common import WRITER_POOL, column_schema, ensure_label_views, table_metadata
from resources.settings import PipelineSettings


def sql_models_dir() -> Path:
    """The ``dbt_like_sql`` package folder."""
    return Path(str(resources.files("dbt_like_sql")))


def build_sql_asset(model: SQLModel) -> dg.AssetsDefinition:
    """A table asset named after the file, depending on the tables its SQL reads; the code version is
    the file's hash, so editing the SQL marks the asset changed in the UI. A model that reads the sharded label
    tables also takes the settings resource, to (re)make their views over the shard files first."""
    spec = {
        "name": model.name,
        "deps": list(model.upstream),
        "code_version": model.code_version,
        "kinds": {"duckdb", "sql"},
        "pool": WRITER_POOL,
        "group_name": model.group,
        "description": f"SQL model `{model.path.name}` (select-only, materialized as table `{model.name}`).",
    }

    def materialize(duckdb: DuckDBResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        with duckdb.get_connection() as conn:
            for table in set(model.upstream) & set(label_store.TABLES_DDL):
                conn.execute(label_store.TABLES_DDL[table])  # an inbox table no batch has created yet reads as empty
            conn.execute(f'create or replace table "{model.name}" as {model.sql}')
            frame = conn.execute(f'select * from "{model.name}"').df()
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                started,
                sql=dg.MetadataValue.md(f"```sql\n{model.sql}\n```"),
                **{"dagster/column_schema": column_schema(duckdb, model.name)},
            )
        )

    if not set(model.upstream) & set(SHARDED_TABLES):

        @dg.asset(**spec)
        def _sql_asset(duckdb: DuckDBResource) -> dg.MaterializeResult:
            return materialize(duckdb)

        return _sql_asset

    @dg.asset(**spec)
    def _sql_asset_over_labels(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
        ensure_label_views(duckdb, settings)
        return materialize(duckdb)

    return _sql_asset_over_labels


def sql_assets(directory: Path | None = None) -> list[dg.AssetsDefinition]:
    """One asset per SQL file."""
    return [build_sql_asset(m) for m in discover_sql_models(directory or sql_models_dir())]
