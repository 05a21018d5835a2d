"""What `relabel run` shows: one line per asset as it finishes (rows, seconds), failed steps and checks; the
whole Dagster event stream (DEBUG and up) goes to a log file instead of the terminal."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata
from tqdm.auto import tqdm


def asset_line(materialization: dg.AssetMaterialization) -> str:
    """One finished asset (its partition, if any): rows and seconds from its metadata."""
    meta = materialization.metadata
    rows, elapsed = meta.get("dagster/row_count"), meta.get("elapsed_s")
    name = materialization.asset_key.to_user_string()
    name += f"[{materialization.partition}]" if materialization.partition else ""
    return (
        f"  done    {name:<24}{f'{rows.value} rows' if rows else '':>12}{f'{elapsed.value} s' if elapsed else '':>10}"
    )


DONE_LINE = re.compile(r"^\s+done\s+(?P<asset>\S+)\s+(?:(?P<rows>\d+) rows)?\s*(?:(?P<seconds>[\d.]+) s)?\s*$")


def parse_asset_line(line: str) -> dict[str, str | None] | None:
    """The asset, rows and seconds of a line written by ``asset_line`` (for benchmarks that time a run);
    None for any other line."""
    match = DONE_LINE.match(line)
    return match.groupdict() if match else None


def check_line(evaluation: dg.AssetCheckEvaluation) -> str:
    """One failed check with its description."""
    return (
        f"  check   {evaluation.asset_key.to_user_string()}.{evaluation.check_name} failed: "
        f"{evaluation.description or ''}"
    )


def event_line(record: logging.LogRecord) -> str | None:
    """The console line for one Dagster log record: a finished asset, a failed step or a failed check; None
    for everything else (it is in the log file)."""
    if not has_log_record_metadata(record):
        return None
    event = get_log_record_metadata(record)["dagster_event"]
    if event is None:
        return None
    if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
        return asset_line(event.event_specific_data.materialization)
    if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return None if event.event_specific_data.passed else check_line(event.event_specific_data)
    if event.event_type == dg.DagsterEventType.STEP_FAILURE:
        error = event.event_specific_data.error
        while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
            error = error.cause
        return f"  FAILED  {event.step_key}: {error.message.strip() if error else 'unknown error'}"
    return None


class _ConsoleHandler(logging.Handler):
    """Echoes ``event_line`` of each record (through tqdm, so open progress bars stay intact)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(level=logging.DEBUG)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        line = event_line(record)
        if line is not None:
            self.echo(line)


def console_logger(log_path: Path, echo: Callable[[str], None]) -> dg.LoggerDefinition:
    """A Dagster logger writing every event to ``log_path`` and one line per finished asset to ``echo``."""

    @dg.logger(description="relabel run: asset lines on the console, the full event stream in a log file")
    def relabel_console(_init_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.getLogger(f"relabel.run.{uuid.uuid4().hex}")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        file_handler = logging.FileHandler(log_path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
        log.addHandler(_ConsoleHandler(echo))
        return log

    return relabel_console


def execute_with_console(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    log_dir: Path,
    echo: Callable[[str], None] = lambda line: tqdm.write(line),
) -> tuple[dg.ExecuteInProcessResult, Path]:
    """Execute ``job`` in process with the console logger instead of Dagster's colored DEBUG stream; returns
    the result and the log file (``log_dir/run-<run id>.log``, named before the run starts)."""
    run_id = str(uuid.uuid4())
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"run-{run_id}.log"
    echo(f"run {run_id}: full event log in {log_path}")
    quiet_job = job.with_logger_defs({"relabel_console": console_logger(log_path, echo)})
    result = quiet_job.execute_in_process(
        run_config={"loggers": {"relabel_console": {}}}, instance=instance, raise_on_error=False, run_id=run_id
    )
    return result, log_path
