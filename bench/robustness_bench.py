"""Issue 13's table in one command: hostile files, concurrent processes, an LLM endpoint that is down, the budget,
and a SIGKILL during a table write, each run for real and counted the same way (prints the table; not a test).

    python bench/robustness_bench.py [--scale full|ci] [--rows hostile concurrency outage budget crash] [--json F]

Rows (each in its own process, so that peak RSS is that row's):

- ``hostile files → seed_corpus`` and ``→ inbox sensor + inbox batch``: the share of ``bench/hostile_corpus.py``
  (``bench/hostile_bench.py`` prints its per-category detail);
- ``concurrency``: the real daemon and webserver relabel files dropped one per sensor tick while ``relabel run``
  rebuilds the pipeline in another process and ``relabel report`` reads in a loop;
- ``outage``: ``relabel serve-llm`` stopped for a whole run, then started again;
- ``budget``: query writing and grading on one budget with calls in flight;
- ``crash``: SIGKILLs spread over the first half second of a table replacement.

Columns: what a row tries (``unit``), crashed (a run or process that failed), quarantined (refused with a
reason), ingested (stored), lost (neither), duplicated (stored or paid twice), quarantines without a reason,
violations (a broken guarantee of the row: a DuckDB lock error, an invented grade, a budget overrun, a
half-written table), and the largest process's peak RSS. The scenarios live in ``tests/robustness_scenarios.py``,
which the tests run at CI size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCENARIOS = ("concurrency", "outage", "budget", "crash")
ROWS = ("hostile", *SCENARIOS)
SIZES = {
    "full": {"files": 4, "outage_pairs": 40, "documents": 200, "pairs": 2000, "budget": 150.0, "kills": 20},
    "ci": {"files": 2, "outage_pairs": 6, "documents": 6, "pairs": 20, "budget": 4.0, "kills": 2},
}
LABELS = {
    "concurrency": "daemon batches + `relabel run` + `relabel report` at once",
    "outage": "LLM endpoint down for a whole run, then back",
    "budget": "query writing + grading on one budget, calls in flight",
    "crash": "SIGKILL while a table is replaced",
}


def _peak_rss_mib() -> float:
    """The largest of this process and every child it waited for (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def run_scenario(name: str, scale: str, work: Path) -> dict[str, Any]:
    """One scenario in this process; its Outcome as a dict."""
    from tests import robustness_scenarios as s

    size = SIZES[scale]
    if name == "concurrency":
        baseline = s.build_baseline(work / "baseline")
        files = [
            (f"note-{i}.md", f"---\ntitle: Office note {i}\ntype: faq\n---\nRoom {i} badge and guest wifi codes.")
            for i in range(size["files"])
        ]
        return asdict(s.daemon_scenario(baseline, work / "run", files).outcome())
    if name == "outage":
        return asdict(s.outage_scenario(size["outage_pairs"], size["outage_pairs"] // 2))
    if name == "budget":
        return asdict(s.budget_scenario(size["documents"], size["pairs"], size["budget"], concurrency=16))
    return asdict(s.crash_during_write_scenario(work, size["kills"], rows=500_000))


def child(name: str, scale: str, work: Path) -> None:
    """Run one scenario and print its outcome as JSON (the last line of stdout)."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        outcome = run_scenario(name, scale, work)
    except Exception:
        outcome = {"unit": "", "tried": 0, "crashed": 1, "error": traceback.format_exc(limit=8)}
    outcome.update(seconds=round(time.perf_counter() - started, 1), peak_rss_mib=_peak_rss_mib())
    print(json.dumps(outcome, default=str))


def _in_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"unit": "", "tried": 0, "crashed": 1, "error": proc.stderr[-3000:] or f"exit {proc.returncode}"}


def scenario_row(outcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "unit": outcome.get("unit", ""),
        "tried": outcome.get("tried", 0),
        "crashed": outcome.get("crashed", 0),
        "quarantined": outcome.get("quarantined", 0),
        "ingested": outcome.get("ingested", 0),
        "lost": outcome.get("lost", 0),
        "duplicated": outcome.get("duplicated", 0),
        "no reason": outcome.get("no_reason", 0),
        "violations": outcome.get("violations", 0),
        "peak RSS MiB": outcome.get("peak_rss_mib", 0),
        "seconds": outcome.get("seconds", 0),
    }


def hostile_rows(scale: str, work: Path) -> dict[str, dict[str, Any]]:
    """The two hostile-file rows of ``bench/hostile_bench.py``, in the same columns."""
    from bench.hostile_bench import STAGES, score
    from bench.hostile_corpus import build_hostile_corpus

    share = work / "share"
    inputs = build_hostile_corpus(share, scale)
    rows = {}
    try:
        for stage in STAGES:
            outcome = _in_child(
                ["bench/hostile_bench.py", "--stage", stage, "--share", str(share), "--workdir", str(work / stage)]
            )
            outcome.setdefault("ingested", [])
            outcome.setdefault("quarantined", [])
            outcome.setdefault("seconds", 0)
            outcome.setdefault("peak_rss_mib", 0)
            scored = score(inputs, outcome)["row"]
            same = ("crashed", "quarantined", "ingested", "lost", "duplicated", "seconds")
            rows[f"hostile files → {stage}"] = scenario_row(
                {
                    **{column: scored[column] for column in same},
                    "unit": "files",
                    "tried": scored["inputs tried"],
                    "no_reason": scored["no reason"],
                    "peak_rss_mib": scored["peak RSS MiB"],
                }
            )
    finally:
        locked = share / "perm" / "locked.txt"
        if locked.exists():
            os.chmod(locked, 0o600)  # so the temporary folder can be removed
    return rows


def table(rows: dict[str, dict[str, Any]]) -> str:
    import pandas as pd

    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("row").to_markdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["full", "ci"], default="full")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the scenarios' notes here")
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        child(args.scenario, args.scale, args.workdir)
        return
    rows: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relabel-robustness-") as tmp:
        work = args.workdir or Path(tmp)
        for name in args.rows:
            print(f"running {name} ({args.scale})", file=sys.stderr, flush=True)
            if name == "hostile":
                rows.update(hostile_rows(args.scale, work / "hostile"))
                continue
            outcome = _in_child(
                ["bench/robustness_bench.py", "--scenario", name, "--scale", args.scale, "--workdir", str(work / name)]
            )
            rows[LABELS[name]] = scenario_row(outcome)
            details[name] = {"notes": outcome.get("notes", {}), "error": outcome.get("error", "")}
    print(table(rows))
    for name, detail in details.items():
        print(f"\n{LABELS[name]}: {json.dumps(detail['notes'], default=str)[:1500]}")
        if detail["error"]:
            print(f"  CRASH:\n{detail['error']}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "details": details}, indent=1, default=str))


if __name__ == "__main__":
    main()
