"""Issue 13, item 5: a SIGKILL while an asset replaces its table leaves the warehouse readable, holding the old
table or the new one, never a half-written one (``relabel.warehouse.replace_table``, which every table asset
writes through)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROWS = 500_000
WRITER = """
import sys
import duckdb
import numpy as np
import pandas as pd
from relabel.warehouse import replace_table

conn = duckdb.connect(sys.argv[1])
rows = int(sys.argv[2])
generation = 0
while True:
    generation += 1
    frame = pd.DataFrame({"generation": np.full(rows, generation), "i": np.arange(rows), "text": "x" * 40})
    print(f"writing {generation}", flush=True)
    replace_table(conn, "labels", frame)
    print(f"wrote {generation}", flush=True)
"""


@pytest.mark.integration
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.15, 0.4])
def test_sigkill_during_replace_table_keeps_old_or_new_table(tmp_path: Path, delay_s: float) -> None:
    db = tmp_path / "warehouse.duckdb"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(ROWS)], stdout=subprocess.PIPE, text=True, env=env, cwd=repo
    )
    assert writer.stdout is not None
    written = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # let two generations land, then kill in the middle of the third
            line = writer.stdout.readline()
            assert line, "the writer died on its own"
            if line.startswith("wrote"):
                written = int(line.split()[1])
            if line.startswith("writing") and written >= 2:
                break
        time.sleep(delay_s)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    rest = writer.stdout.read()
    written = max([written, *(int(line.split()[1]) for line in rest.splitlines() if line.startswith("wrote"))])
    assert written >= 2
    with duckdb.connect(str(db)) as conn:  # opening replays the write-ahead log
        generations = conn.execute("select generation, count(*), count(distinct i) from labels group by 1").fetchall()
    assert len(generations) == 1, f"a mix of generations: {generations}"
    generation, count, distinct = generations[0]
    assert count == distinct == ROWS
    assert generation in (written, written + 1)  # the old table, or the new one if its commit landed
