"""The command line and the code location as `dagster dev` loads it."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


WRITER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("create or replace table agreement_report as select 'teacher' as labeler_id, 0.5 as cohen_kappa")
print("writing", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def hold_writer(db: Path, seconds: float) -> subprocess.Popen:
    """Another process with the warehouse open for writing (as a run holds it), once it has the lock."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    return writer


@pytest.mark.integration
def test_report_waits_for_a_writer_in_another_process_then_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB lets one process write or several read: `relabel report` during a run retries with backoff and
    prints the table once the writer lets go, with no lock error."""
    monkeypatch.setenv("RELABEL_DATA_DIR", str(tmp_path))
    writer = hold_writer(tmp_path / "relabel.duckdb", 3.0)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["report"])
    writer.wait(timeout=60)
    assert result.exit_code == 0, result.output
    assert "teacher" in result.output and time.monotonic() - started >= 1.0, "it waited for the writer"


@pytest.mark.integration
def test_a_reader_gives_up_with_a_clear_error_when_the_writer_stays(tmp_path: Path) -> None:
    from relabel.warehouse import WarehouseBusy, connect_read_only

    writer = hold_writer(tmp_path / "w.duckdb", 30.0)
    try:
        with pytest.raises(WarehouseBusy, match="being written by another process"):
            connect_read_only(tmp_path / "w.duckdb", wait_s=1.5)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    with connect_read_only(tmp_path / "w.duckdb", wait_s=5) as conn:
        assert conn.execute("select cohen_kappa from agreement_report").fetchall() == [(0.5,)], "nothing lost"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_webserver(port: int, process: subprocess.Popen, timeout_s: float) -> None:
    """Until the webserver answers on ``port`` (fails if ``process`` ended first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "relabel ui ended before its webserver answered"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"no webserver on port {port} after {timeout_s} s")


@pytest.mark.integration
def test_relabel_ui_and_every_process_it_started_stop_within_10_s_of_sigterm(tmp_path: Path) -> None:
    import psutil

    from relabel.supervise import running

    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "RELABEL_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with (tmp_path / "ui.log").open("w") as log:
        ui = subprocess.Popen(
            [sys.executable, "-m", "relabel.cli", "ui", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_webserver(port, ui, timeout_s=180)
            tree = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
            names = " ".join(" ".join(p.cmdline()) for p in tree)
            assert "dagster_webserver" in names and "dagster._daemon" in names, names
            started = time.monotonic()
            ui.send_signal(signal.SIGTERM)
            code = ui.wait(timeout=10)
            deadline = started + 10
            while any(running(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = [" ".join(p.cmdline()) for p in tree if running(p)]
            assert left == [], f"still running {time.monotonic() - started:.1f} s after SIGTERM: {left}"
            assert code == 0, (tmp_path / "ui.log").read_text()[-2000:]
        finally:
            if ui.poll() is None:
                ui.kill()


# a command whose child leaves the process group and ignores Ctrl-C, as a stubborn server would
STUBBORN_TREE = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time, pathlib, os, sys; signal.signal(signal.SIGINT, "
                          "signal.SIG_IGN); pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(600)",
                          sys.argv[1]], start_new_session=True)
time.sleep(600)
"""


@pytest.mark.unit
def test_ctrl_c_stops_a_tree_whose_child_left_the_group_and_ignores_it(tmp_path: Path) -> None:
    import psutil

    from relabel.supervise import running

    pid_file = tmp_path / "child.pid"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from relabel.supervise import run_supervised; "
            "sys.exit(run_supervised([sys.executable, '-c', sys.argv[1], sys.argv[2]], grace_s=1.0, poll_s=0.1))",
            STUBBORN_TREE,
            str(pid_file),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and supervisor.poll() is None, "the tree did not start"
            time.sleep(0.1)
        child = psutil.Process(int(pid_file.read_text()))
        time.sleep(0.5)  # the supervisor notices its descendants every poll
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=10) == 0
        assert not running(child), "the child that ignored SIGINT and left the group was killed"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
