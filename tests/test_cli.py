"""The command line and the code location as `dagster dev` loads it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from relabel.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "report", "ui"):
        assert f"  {command} " in result.output


@pytest.mark.unit
def test_report_without_a_run_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELABEL_DATA_DIR", str(tmp_path))
    import duckdb

    duckdb.connect(str(tmp_path / "relabel.duckdb")).close()
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 0 and "no agreement report yet" in result.output


@pytest.mark.integration
def test_workspace_loads_as_a_code_location(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "RELABEL_DATA_DIR": str(tmp_path / "data")}
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
