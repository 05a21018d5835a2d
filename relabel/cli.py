"""The ``relabel`` command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from relabel import paths

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``<data dir>/dagster_home``) with a dagster.yaml that serializes DuckDB writers."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.data_dir() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    return home


@click.group()
def main() -> None:
    """relabel: distil a fast relevance labeler from your own documents (Dagster + DuckDB)."""


@main.command()
def run() -> None:
    """Materialize every asset and check, then print rows per table, time per asset and the agreement table."""
    _dagster_home()
    import dagster as dg

    from relabel_assets.definitions import defs

    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("relabel_job").execute_in_process(instance=instance, raise_on_error=False)
    wall = time.perf_counter() - started
    click.echo(f"\nrun {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {wall:.0f} s\n")
    click.echo(f"{'asset':<22}{'rows':>8}{'seconds':>10}")
    for node in result.job_def.graph.nodes_in_topological_order:
        for event in result.asset_materializations_for_node(node.name):
            meta = event.metadata
            rows = meta.get("dagster/row_count")
            elapsed = meta.get("elapsed_s")
            click.echo(
                f"{event.asset_key.to_user_string():<22}{rows.value if rows else '':>8}"
                f"{elapsed.value if elapsed else '':>10}"
            )
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed:
        click.echo(
            f"check failed: {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {evaluation.description}"
        )
    _print_report()
    click.echo(f"\nDuckDB: {paths.duckdb_path()}\nReport: {paths.data_dir() / 'reports' / 'agreement_report.md'}")
    sys.exit(0 if result.success else 1)


def _print_report() -> None:
    import duckdb

    from relabel.report import to_markdown
    from relabel.warehouse import table_exists

    with duckdb.connect(str(paths.duckdb_path()), read_only=True) as conn:
        if not table_exists(conn, "agreement_report"):
            click.echo("no agreement report yet: run `relabel run` first")
            return
        click.echo("\n" + to_markdown(conn.execute("select * from agreement_report").df()))


@main.command()
def report() -> None:
    """Print the stored agreement table."""
    _print_report()


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the Dagster UI and daemon on 127.0.0.1 (lineage graph, checks, sensor)."""
    _dagster_home()
    os.execvp("dagster", ["dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "relabel_assets.definitions"])
