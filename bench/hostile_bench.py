"""Hostile documents through ``seed_corpus`` and the inbox path: the issue-13 table (prints it; not a test).

    python bench/hostile_bench.py [--scale full|ci] [--workdir DIR] [--json OUT.json]

Builds the hostile share with ``bench/hostile_corpus.py`` (a few hundred hostile inputs, a 50 MB text file
and a folder of 10,000 tiny files at ``full`` scale) in a temporary folder, then runs each row in its own
process, so that its peak RSS is its own:

- ``seed_corpus``: the asset materialized with the share as ``RELABEL_CORPUS_DIR``;
- ``inbox``: a baseline (``seed_corpus`` + ``synthetic_queries`` of the tests' tiny corpus, scripted LLM),
  then the share as the inbox folder: one evaluation of the real ``inbox_sensor``, then
  ``incremental_relabel_job`` for its batch, restricted to ``inbox_documents`` and ``inbox_bm25_index``
  (the stages that read documents; query writing and labeling need an LLM and are measured elsewhere).

Each row: inputs tried, crashed (the run raised), quarantined (with a reason), ingested, lost (neither),
duplicated (an input both ingested and quarantined, or twice), quarantines without a reason, peak RSS.
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
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostile_corpus import HostileInput, build_hostile_corpus  # noqa: E402

STAGES = ("seed_corpus", "inbox")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _resources(work: Path, corpus: Path, inbox: Path) -> dict[str, Any]:
    """The tests' pipeline resources over ``work/data`` with the scripted LLM (no model, no network)."""
    from tests.conftest import scripted_resources

    return scripted_resources(work, corpus, corpus, inbox_dir=str(inbox))


def run_seed_corpus(share: Path, work: Path) -> dict[str, list[tuple[str, str]]]:
    """Materialize ``seed_corpus`` over the share; ``{ingested: [(doc_id, "")], quarantined: [(doc_id, reason)]}``."""
    import dagster as dg
    import duckdb

    from relabel_assets.corpus import seed_corpus

    empty = work / "empty-inbox"
    empty.mkdir(parents=True, exist_ok=True)
    resources = _resources(work, share, empty)
    assert dg.materialize([seed_corpus], resources=resources).success
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        ingested = conn.execute("select doc_id, '' from seed_corpus").fetchall()
        quarantined = conn.execute("select doc_id, coalesce(reason, '') from seed_corpus_quarantine").fetchall()
    return {"ingested": ingested, "quarantined": quarantined}


def run_inbox(share: Path, work: Path) -> dict[str, list[tuple[str, str]]]:
    """Baseline on the tiny corpus, then the share as the inbox: sensor tick, then the batch's document stages."""
    import dagster as dg
    import duckdb

    from relabel_assets.corpus import seed_corpus
    from relabel_assets.definitions import build_definitions
    from relabel_assets.queries import synthetic_queries
    from tests.conftest import write_tiny_corpus

    corpus = write_tiny_corpus(work / "tiny-corpus")
    empty = work / "empty-inbox"
    empty.mkdir(parents=True, exist_ok=True)
    baseline = _resources(work, corpus, empty)
    assert dg.materialize([seed_corpus, synthetic_queries], resources=baseline).success
    defs = build_definitions(_resources(work, corpus, share))
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("inbox_sensor")
    resources = {k: v for k, v in defs.resources.items() if k in sensor.required_resource_keys}
    result = sensor(dg.build_sensor_context(instance=instance, cursor=None, resources=resources))
    batch = result.run_requests[0].partition_key
    instance.add_dynamic_partitions("inbox_batches", [batch])
    job = defs.resolve_job_def("incremental_relabel_job")
    selection = [dg.AssetKey("inbox_documents"), dg.AssetKey("inbox_bm25_index")]
    assert job.execute_in_process(partition_key=batch, instance=instance, asset_selection=selection).success
    with duckdb.connect(baseline["duckdb"].database, read_only=True) as conn:
        ingested = conn.execute(
            "select doc_id, '' from document_versions where batch_id = ? and change in ('new', 'changed')", [batch]
        ).fetchall()
        quarantined = conn.execute(
            "select doc_id, coalesce(reason, '') from inbox_quarantine where batch_id = ?", [batch]
        ).fetchall()
    prefix = "inbox/"
    return {
        "ingested": [(d.removeprefix(prefix), r) for d, r in ingested],
        "quarantined": [(d.removeprefix(prefix), r) for d, r in quarantined],
    }


def child(stage: str, share: Path, work: Path) -> None:
    """Run one stage in this process and print its outcome as JSON (the last line of stdout)."""
    started = time.perf_counter()
    try:
        outcome: dict[str, Any] = (run_seed_corpus if stage == "seed_corpus" else run_inbox)(share, work)
        outcome["error"] = ""
    except Exception:
        outcome = {"ingested": [], "quarantined": [], "error": traceback.format_exc(limit=5)}
    outcome.update(seconds=round(time.perf_counter() - started, 1), peak_rss_mib=round(_peak_rss_mib(), 1))
    print(json.dumps(outcome))


def score(inputs: list[HostileInput], outcome: dict[str, Any]) -> dict[str, Any]:
    """The row of the table, plus the per-category counts and the unexpected outcomes."""
    ingested = Counter(d for d, _ in outcome["ingested"])
    quarantined = Counter(d for d, _ in outcome["quarantined"])
    reasons = dict((d, r) for d, r in outcome["quarantined"])
    crashed = bool(outcome["error"])
    row = {
        "inputs tried": len(inputs),
        "crashed": int(crashed),
        "quarantined": sum(1 for i in inputs if quarantined[i.doc_id] and not ingested[i.doc_id]),
        "ingested": sum(1 for i in inputs if ingested[i.doc_id] and not quarantined[i.doc_id]),
        "lost": sum(1 for i in inputs if not ingested[i.doc_id] and not quarantined[i.doc_id]),
        "duplicated": sum(1 for i in inputs if ingested[i.doc_id] + quarantined[i.doc_id] > 1),
        "no reason": sum(1 for i in inputs if quarantined[i.doc_id] and not reasons.get(i.doc_id, "").strip()),
        "peak RSS MiB": outcome["peak_rss_mib"],
        "seconds": outcome["seconds"],
    }
    categories: dict[str, Counter] = {}
    unexpected = []
    for item in inputs:
        counts = categories.setdefault(item.category, Counter())
        got = "ingested" if ingested[item.doc_id] else "quarantined" if quarantined[item.doc_id] else "lost"
        counts[got] += 1
        if item.expect != "either" and not got.startswith(item.expect[:5]):
            unexpected.append(f"{item.doc_id!r} ({item.category}): expected {item.expect}, got {got}")
    top_reasons = Counter(r.split(":")[0].split("(")[0].strip() for _, r in outcome["quarantined"]).most_common(12)
    return {
        "row": row,
        "categories": categories,
        "unexpected": unexpected,
        "reasons": top_reasons,
        "error": outcome["error"],
    }


def _table(rows: dict[str, dict[str, Any]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| path | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |" for name, row in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["full", "ci"], default="full")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and details here")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        child(args.stage, args.share, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="relabel-hostile-") as tmp:
        work = args.workdir or Path(tmp)
        share = work / "share"
        started = time.perf_counter()
        inputs = build_hostile_corpus(share, args.scale)
        print(f"built {len(inputs)} inputs in {time.perf_counter() - started:.1f} s under {share}", file=sys.stderr)
        results = {}
        for stage in STAGES:
            proc = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--share", str(share), "--workdir", str(work / stage)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            lines = proc.stdout.strip().splitlines()
            try:
                outcome = json.loads(lines[-1])
            except (IndexError, json.JSONDecodeError):
                outcome = {
                    "ingested": [],
                    "quarantined": [],
                    "error": proc.stderr[-3000:] or f"exit {proc.returncode}",
                    "seconds": 0,
                    "peak_rss_mib": 0,
                }
            results[stage] = score(inputs, outcome)
        os.chmod(share / "perm" / "locked.txt", 0o600)  # so the temporary folder can be removed
    label = {"seed_corpus": "hostile files → seed_corpus", "inbox": "hostile files → inbox sensor + inbox batch"}
    print(_table({label[s]: r["row"] for s, r in results.items()}))
    for stage, result in results.items():
        print(f"\n{label[stage]}: per category (ingested / quarantined / lost)")
        for category, counts in result["categories"].items():
            print(f"  {category:34} {counts['ingested']:6} {counts['quarantined']:6} {counts['lost']:6}")
        print("  quarantine reasons: " + "; ".join(f"{r} ×{n}" for r, n in result["reasons"]))
        for line in result["unexpected"]:
            print(f"  unexpected: {line}")
        if result["error"]:
            print(f"  CRASH:\n{result['error']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {s: {**r, "categories": {c: dict(n) for c, n in r["categories"].items()}} for s, r in results.items()},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
