"""Issue 13, item 5: a SIGKILL while an asset replaces its table leaves the warehouse readable, holding the old
table or the new one, never a half-written one (``relabel.warehouse.replace_table``, which every table asset
writes through)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness_scenarios import crash_during_write_scenario, kill_during_table_write

ROWS = 500_000


@pytest.mark.integration
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.15, 0.4])
def test_sigkill_during_replace_table_keeps_old_or_new_table(tmp_path: Path, delay_s: float) -> None:
    found = kill_during_table_write(tmp_path / "warehouse.duckdb", ROWS, delay_s)
    written, generations = found["written"], found["generations"]
    assert written >= 2
    assert len(generations) == 1, f"a mix of generations: {generations}"
    generation, count, distinct = generations[0]
    assert count == distinct == ROWS
    assert generation in (written, written + 1)  # the old table, or the new one if its commit landed


@pytest.mark.integration
def test_the_crash_scenario_row_counts_each_kill_as_one_whole_table(tmp_path: Path) -> None:
    """The benchmark's row (``bench/robustness_bench.py``) at CI size: every kill leaves one whole generation."""
    outcome = crash_during_write_scenario(tmp_path, kills=2, rows=200_000)
    assert (outcome.tried, outcome.ingested, outcome.lost, outcome.crashed, outcome.violations) == (2, 2, 0, 0, 0)
    assert sum(v for k, v in outcome.notes.items() if k.startswith("kept the")) == 2
