"""`relabel run`'s console: one line per finished asset, failed steps and checks; every event in the log file;
progress bars for long loops."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from relabel.progress import ProgressBars
from relabel_assets.console import execute_with_console, parse_asset_line


@dg.asset
def small_table() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 3, "elapsed_s": 0.25})


@dg.asset_check(asset=small_table)
def small_table_has_ten_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="3 rows, expected 10")


@dg.asset(deps=[small_table])
def broken_table() -> None:
    raise ValueError("the input is unreadable")


def test_run_console_prints_one_line_per_asset_and_logs_every_event(tmp_path: Path) -> None:
    defs = dg.Definitions(
        assets=[small_table, broken_table],
        asset_checks=[small_table_has_ten_rows],
        jobs=[dg.define_asset_job("tiny_job")],
    )
    lines: list[str] = []
    result, log_path = execute_with_console(
        defs.resolve_job_def("tiny_job"), dg.DagsterInstance.ephemeral(), tmp_path / "logs", lines.append
    )
    assert not result.success
    assert log_path.parent == tmp_path / "logs" and result.run_id in log_path.name
    assert lines[0] == f"run {result.run_id}: full event log in {log_path}"
    body = lines[1:]
    done = [line for line in body if line.lstrip().startswith("done")]
    assert len(done) == 1 and "small_table" in done[0] and "3 rows" in done[0] and "0.25 s" in done[0]
    assert parse_asset_line(done[0]) == {"asset": "small_table", "rows": "3", "seconds": "0.25"}
    assert [parse_asset_line(line) for line in lines if line not in done] == [None] * (len(lines) - 1)
    assert any("small_table.small_table_has_ten_rows failed: 3 rows, expected 10" in line for line in body)
    assert any(line.lstrip().startswith("FAILED") and "the input is unreadable" in line for line in body)
    assert len(body) == 3, body  # nothing of the DEBUG stream reaches the console
    log = log_path.read_text()
    for event in ("STEP_START", "ASSET_MATERIALIZATION", "STEP_FAILURE", "RUN_FAILURE"):
        assert event in log
    assert "DEBUG" in log


def test_progress_bars_count_per_name_and_log_every_n(capsys: pytest.CaptureFixture) -> None:
    logged: list[str] = []
    with ProgressBars("calls", logged.append, log_every=2, disable=False) as bars:
        for done in range(1, 6):
            bars("teacher-a", done, 5)
        bars("teacher-b", 1, 2)
        assert bars.bars["teacher-a"].n == 5 and bars.bars["teacher-b"].n == 1
    assert logged == ["teacher-a: 2/5 calls", "teacher-a: 4/5 calls", "teacher-a: 5/5 calls"]
    assert "teacher-a" in capsys.readouterr().err
    with ProgressBars("calls", disable=True) as quiet:
        quiet("teacher-a", 3, 5)
    assert capsys.readouterr().err == ""
