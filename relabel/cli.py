"""The ``relabel`` command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from relabel import paths

CODE_LOCATION = "relabel_assets.definitions"  # the module whose `defs` `relabel run` and `relabel ui` load

# one DuckDB writer at a time; inbox batches run one at a time, in the order the sensor requested them
DAGSTER_YAML = """concurrency:
  pools:
    default_limit: 1
  runs:
    tag_concurrency_limits:
      - key: relabel/queue
        value: inbox_batches
        limit: 1
telemetry:
  enabled: false
"""


# dagster.yaml files earlier versions of relabel wrote: replaced by the current one (the old file is kept)
OLD_DAGSTER_YAMLS = ("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n",)


def missing_limits(config: dict) -> list[str]:
    """What a parsed dagster.yaml lacks of the limits relabel needs (one DuckDB writer, one inbox batch)."""
    concurrency = (config or {}).get("concurrency") or {}
    missing = []
    if ((concurrency.get("pools") or {}).get("default_limit")) != 1:
        missing.append("concurrency.pools.default_limit: 1 (one DuckDB writer at a time)")
    limits = (concurrency.get("runs") or {}).get("tag_concurrency_limits") or []
    if not any(
        isinstance(x, dict)
        and x.get("key") == "relabel/queue"
        and x.get("value") == "inbox_batches"
        and x.get("limit") == 1
        for x in limits
    ):
        missing.append(
            "concurrency.runs.tag_concurrency_limits: relabel/queue=inbox_batches limit 1 (one batch at a time)"
        )
    return missing


def ensure_dagster_yaml(home: Path) -> str | None:
    """Write the current dagster.yaml into ``home`` when there is none, or replace one an earlier relabel
    wrote (kept as ``dagster.yaml.old``); a dagster.yaml edited by hand is left alone. Returns a warning
    when the file in place lacks the limits relabel needs, else ``None``."""
    import yaml

    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
        return None
    text = config.read_text()
    if text in OLD_DAGSTER_YAMLS:
        config.with_name("dagster.yaml.old").write_text(text)
        config.write_text(DAGSTER_YAML)
        return None
    try:
        missing = missing_limits(yaml.safe_load(text) or {})
    except yaml.YAMLError as error:
        return f"{config} is not valid YAML ({error}); relabel needs:\n{DAGSTER_YAML}"
    if not missing:
        return None
    return (
        f"{config} was edited by hand and lacks {'; '.join(missing)}: inbox batches may run at the same time and "
        f"collide on the DuckDB file. Merge this into it:\n{DAGSTER_YAML}"
    )


def _dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``<data dir>/dagster_home``) with a dagster.yaml that serializes DuckDB writers
    and inbox batches (an old one is upgraded, a hand-edited one lacking the limits gets a warning)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.data_dir() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    warning = ensure_dagster_yaml(home)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    return home


@click.group()
def main() -> None:
    """relabel: distil a fast relevance labeler from your own documents (Dagster + DuckDB)."""


@main.command()
@click.option(
    "--module",
    default=CODE_LOCATION,
    show_default=True,
    help="Python module of the code location (its `defs`)",
)
def run(module: str) -> None:
    """Materialize every asset and check: one line per asset as it finishes (rows, seconds), progress bars for
    LLM calls and training, then the agreement table; Dagster's full event stream goes to a log file. With
    RELABEL_SHARDS > 1 the label assets run one run per shard between the unpartitioned phases; RELABEL_EXECUTOR
    chooses how steps execute (in_process by default)."""
    _dagster_home()
    import importlib

    import dagster as dg

    from relabel_assets.console import asset_line, check_line, execute_with_console
    from resources.settings import PipelineSettings

    defs = importlib.import_module(module).defs

    settings = PipelineSettings.from_env()
    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    log_path = None
    if settings.shards > 1:
        from relabel_assets.scale_out import run_phases

        results = run_phases(module, instance, settings, log=click.echo)
    elif settings.executor != "in_process":
        from dagster._core.definitions.reconstruct import ReconstructableRepository

        job = ReconstructableRepository.for_module(module, "defs").get_reconstructable_job("relabel_job")
        results = [dg.execute_job(job, instance)]
    else:
        result, log_path = execute_with_console(
            defs.resolve_job_def("relabel_job"), instance, paths.data_dir() / "logs"
        )
        results = [result]
    wall = time.perf_counter() - started
    success = all(r.success for r in results)
    runs = ", ".join(r.run_id for r in results) if len(results) <= 3 else f"{len(results)} runs"
    click.echo(f"\nrun {runs}: {'succeeded' if success else 'FAILED'} in {wall:.0f} s")
    if log_path is None:  # runs outside this process: their per-asset lines, from the results
        for result in results:
            for event in result.get_asset_materialization_events():
                click.echo(asset_line(event.step_materialization_data.materialization))
        for evaluation in (e for r in results for e in r.get_asset_check_evaluations() if not e.passed):
            click.echo(check_line(evaluation))
    _print_report()
    click.echo(f"\nDuckDB: {paths.duckdb_path()}\nReport: {paths.data_dir() / 'reports' / 'agreement_report.md'}")
    if log_path is not None:
        click.echo(f"Event log: {log_path}")
    sys.exit(0 if success else 1)


def _print_report() -> None:
    """The stored summary table (metrics with 95% intervals) and the cost and speed table."""

    from relabel.evaluation.report import cost_markdown, to_markdown
    from relabel.warehouse import WarehouseBusy, connect_read_only, table_exists

    if not paths.duckdb_path().exists():
        click.echo("no warehouse yet: run `relabel run` first")
        return
    try:
        conn = connect_read_only(paths.duckdb_path())
    except WarehouseBusy as error:
        raise click.ClickException(str(error)) from error
    with conn:
        if not table_exists(conn, "agreement_report"):
            click.echo("no agreement report yet: run `relabel run` first")
            return
        click.echo("\n" + to_markdown(conn.execute("select * from agreement_report").df()))
        click.echo("Brackets: 95% bootstrap intervals over queries.")
        if table_exists(conn, "labeler_cost"):
            click.echo("\n## Cost and speed\n\n" + cost_markdown(conn.execute("select * from labeler_cost").df()))
    reports = paths.data_dir() / "reports"
    click.echo(f"\nFull report (plots, confusion matrices, per-query table): {reports / 'agreement_report.html'}")


@main.command()
def report() -> None:
    """Print the stored agreement table."""
    _print_report()


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option(
    "--module",
    default=CODE_LOCATION,
    show_default=True,
    help="Python module of the code location (its `defs`)",
)
def ui(port: int, module: str) -> None:
    """Start the Dagster UI and daemon on 127.0.0.1 (lineage graph, checks, sensors, launchpad). SIGTERM or
    Ctrl-C stops it and every process it started within 10 s."""
    from relabel.supervise import run_supervised

    _dagster_home()
    dagster = str(Path(sys.executable).with_name("dagster"))
    sys.exit(run_supervised([dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-m", module]))


@main.command("serve-llm")
@click.option("--model", default="qwen2.5-coder-1.5b", show_default=True, help="alias or path to a .gguf file")
@click.option("--port", default=8088, show_default=True)
def serve_llm(model: str, port: int) -> None:
    """Serve the embedded GGUF model as an OpenAI-compatible API on 127.0.0.1 (use it with
    RELABEL_LLM_MODEL=openai/<model> RELABEL_LLM_API_BASE=http://127.0.0.1:<port>/v1)."""
    from relabel.llm.server import serve

    click.echo(f"serving {model} on http://127.0.0.1:{port}/v1")
    serve(model, port)


@main.command()
@click.option(
    "--human",
    "human_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="human judgments, TREC qrels (qid 0 docid grade)",
)
@click.option(
    "--labels",
    "label_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="a labeler's grades in qrels format (qid 0|Q0 docid grade), or a folder of them; more may follow",
)
@click.argument("more_labels", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--runs",
    "run_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="TREC run files or folders (qid Q0 docid rank score tag): Kendall's tau of system orderings",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="write md, html, json and plots here")
@click.option("--bootstrap", "n_resamples", default=1000, show_default=True, help="query resamples for the CIs")
@click.option("--seed", default=0, show_default=True)
def agree(
    human_path: Path,
    label_path: Path,
    more_labels: tuple[Path, ...],
    run_paths: tuple[Path, ...],
    out: Path | None,
    n_resamples: int,
    seed: int,
) -> None:
    """Agreement of label files with human qrels from files alone (no Dagster state), computed by the same
    code as the agreement_report asset: `relabel agree --human QRELS --labels RUN [RUN ...] [--out DIR]`.
    The labeler id is the file name stem."""
    from relabel.evaluation.judgments import JudgmentError, read_label_file, read_runs
    from relabel.evaluation.report import build_report, to_markdown, write_report

    started = time.perf_counter()
    try:
        human = read_label_file(human_path)
        labelers, stray = read_runs([label_path, *more_labels])
        _, systems = read_runs(list(run_paths)) if run_paths else ({}, {})
    except JudgmentError as error:
        raise click.ClickException(str(error)) from error
    if stray:
        raise click.ClickException(f"{', '.join(stray)}: TREC run files (6 fields); pass them with --runs")
    if not labelers:
        raise click.ClickException("no label files found")
    import pandas as pd

    labels = pd.concat(
        [frame.assign(labeler_id=name, role="imported") for name, frame in labelers.items()], ignore_index=True
    )
    loaded = time.perf_counter()
    report = build_report(human, labels, n_resamples=n_resamples, seed=seed, runs=systems or None)
    computed = time.perf_counter()
    click.echo(to_markdown(report.table, f"Agreement with {human_path.name}"))
    click.echo("\n".join(f"- {note}" for note in report.notes))
    if len(report.cross_check):
        click.echo("\nSecond implementations (same tie-broken scores):\n")
        click.echo(report.cross_check.round(4).to_markdown(index=False))
    if len(report.systems):
        click.echo("\nSystems by nDCG@10 under human and labeler judgments:\n")
        click.echo(report.systems.round(4).to_markdown(index=False))
    if out is not None:
        from relabel.evaluation.plots import report_plots

        written = write_report(report, out, report_plots(report), f"Agreement with {human_path.name}")
        click.echo(f"\nwrote {written['markdown']}, {written['html']}, {written['json']} and {out / 'plots'}")
    click.echo(
        f"\n{len(labels)} labels of {len(labelers)} labeler(s) vs {len(human)} judgments: read in "
        f"{loaded - started:.2f} s, metrics and {n_resamples} bootstrap resamples in {computed - loaded:.2f} s, "
        f"total {time.perf_counter() - started:.2f} s"
    )


def _register_file_commands() -> None:
    from relabel.distill_cli import distill, label

    main.add_command(distill)
    main.add_command(label)


_register_file_commands()


if __name__ == "__main__":
    main()
