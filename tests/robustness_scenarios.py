"""Issue 13's failure cases, run for real and counted one way: the tests run them at CI size and assert on the
counts, ``bench/robustness_bench.py`` runs them at full size and prints the counts as rows of one table.

Each scenario returns an ``Outcome``: what was tried, how much of it was stored, refused with a reason
(quarantined), lost (neither) or stored twice, how often a process crashed, and ``violations``, the number of
broken guarantees particular to the scenario (a budget overrun, a grade invented while the endpoint was down,
a half-written table), each named in ``notes``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]
LOCK_ERRORS = ("Could not set lock", "Conflicting lock", "database is locked")


@dataclass
class Outcome:
    """One row of the robustness table; ``unit`` says what ``tried`` counts."""

    unit: str
    tried: int
    crashed: int = 0
    quarantined: int = 0
    ingested: int = 0
    lost: int = 0
    duplicated: int = 0
    no_reason: int = 0
    violations: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_env() -> dict[str, str]:
    """This environment with the repository importable (for child processes)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


# --- crash during a table write ---------------------------------------------------------------------------------

TABLE_WRITER = """
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


def kill_during_table_write(db: Path, rows: int, delay_s: float) -> dict[str, Any]:
    """A process replaces a ``rows``-row table through ``relabel.warehouse.replace_table`` (which every table asset
    writes through) generation after generation; once two generations landed, SIGKILL it ``delay_s`` into the
    third. Returns the last generation it reported written and what the reopened warehouse holds."""
    writer = subprocess.Popen(
        [sys.executable, "-c", TABLE_WRITER, str(db), str(rows)],
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(),
        cwd=REPO,
    )
    assert writer.stdout is not None
    written = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                raise RuntimeError("the table writer died on its own")
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
    with duckdb.connect(str(db)) as conn:  # opening replays the write-ahead log
        generations = conn.execute("select generation, count(*), count(distinct i) from labels group by 1").fetchall()
    return {"written": written, "generations": generations}


def crash_during_write_scenario(work: Path, kills: int, rows: int, max_delay_s: float = 0.5) -> Outcome:
    """``kills`` SIGKILLs spread evenly over the first ``max_delay_s`` of a table replacement: each reopened
    warehouse must hold one whole generation, the last committed or the one being written."""
    outcome = Outcome("SIGKILLs during a table write", kills)
    for k in range(kills):
        db = work / f"kill-{k}.duckdb"
        try:
            found = kill_during_table_write(db, rows, max_delay_s * k / max(kills - 1, 1))
        except Exception as error:  # noqa: BLE001 - an unreadable warehouse is what this counts
            outcome.crashed += 1
            outcome.notes.setdefault("errors", []).append(repr(error)[:300])
            continue
        generations, written = found["generations"], found["written"]
        whole = len(generations) == 1 and generations[0][1] == generations[0][2] == rows
        if whole and generations[0][0] in (written, written + 1):
            outcome.ingested += 1
            kept = "new" if generations[0][0] == written + 1 else "old"
            outcome.notes[f"kept the {kept} table"] = outcome.notes.get(f"kept the {kept} table", 0) + 1
        else:
            outcome.lost += 1
            outcome.violations += 1
            outcome.notes.setdefault("half-written", []).append(generations)
        db.unlink(missing_ok=True)
        db.with_name(db.name + ".wal").unlink(missing_ok=True)
    return outcome


# --- the budget over query writing and grading --------------------------------------------------------------------


def make_pairs(n: int, source: str = "pool") -> list[dict]:
    """``n`` (query, document) pairs, four documents per query."""
    return [
        {
            "pair_source": source,
            "qid": f"q{i // 4}",
            "query_text": f"query number {i // 4} vpn",
            "doc_id": f"d{i}",
            "title": f"Doc {i}",
            "author": "A",
            "path": f"p/{i}.md",
            "modified": "2025-01-01",
            "doc_type": "faq",
            "text": f"Document {i} about the vpn and other things.",
        }
        for i in range(n)
    ]


def budget_scenario(documents: int, pairs: int, budget_usd: float, concurrency: int) -> Outcome:
    """Query writing for ``documents`` documents, then grading of ``pairs`` pairs, with ``concurrency`` calls in
    flight, all drawing on one budget. Every call reserves $0.50 before it is sent and costs $0.05-$0.50 after
    (a varying price makes the refund of the unspent reservation count). Spent must never pass the budget."""
    from relabel.llm.client import LLMClient
    from relabel.llm.runner import CallPolicy
    from relabel.synthesis.queries import synthesize_queries
    from relabel.teacher.grading import label_pairs
    from tests import scripted_llm

    prices = itertools.cycle([0.5, 0.05, 0.3, 0.2, 0.45, 0.1])

    class VaryingPriceClient(LLMClient):
        def max_cost_usd(self, messages, max_tokens):  # noqa: ANN001, ANN201
            return 0.5

        def cost(self, response, latency_s):  # noqa: ANN001, ANN201
            return next(prices)

    scripted_llm.register()
    conn = duckdb.connect()
    policy = CallPolicy(budget_usd=budget_usd, max_concurrency=concurrency).shared()
    client = VaryingPriceClient("scripted/overlap")
    docs = [
        {"doc_id": f"doc{i}.md", "title": f"Topic {i}", "text": f"How to renew badge {i} for the vpn office {i}."}
        for i in range(documents)
    ]
    accepted, rejects = synthesize_queries(conn, client, docs, queries_per_doc=1, policy=policy)
    rows = label_pairs(conn, client, make_pairs(pairs), use_logprobs=False, policy=policy)
    outcome = Outcome("documents and pairs sent to the LLM", documents + pairs)
    with_queries = {q["doc_id"] for q in accepted}
    refused = {r["doc_id"]: r.get("detail", "") for r in rejects if r["reason"] == "no_queries"}
    for doc in docs:
        if doc["doc_id"] in with_queries:
            outcome.ingested += 1
        elif doc["doc_id"] in refused:
            outcome.quarantined += 1
            outcome.no_reason += not refused[doc["doc_id"]].strip()
        else:
            outcome.lost += 1
    for row in rows:
        if row["status"] == "ok":
            outcome.ingested += 1
        elif row["status"] == "skipped_budget":
            outcome.quarantined += 1
            outcome.no_reason += not str(row["error"] or "").strip()
        else:
            outcome.lost += 1
    outcome.duplicated = len(rows) - len({(r["qid"], r["doc_id"]) for r in rows})
    spent = conn.execute("select coalesce(sum(cost_usd), 0) from llm_calls").fetchall()[0][0]
    sent = conn.execute("select count(*) from llm_calls").fetchall()[0][0]
    outcome.violations = int(spent > budget_usd + 1e-9)
    outcome.notes.update(
        budget_usd=budget_usd,
        spent_usd=round(spent, 4),
        calls_sent=sent,
        in_flight=concurrency,
        reserved_after_usd=round(policy.budget.reserved_usd, 6) if policy.budget else None,
    )
    return outcome


# --- the LLM endpoint down for a whole run ------------------------------------------------------------------------

SERVED_DOC = {
    "doc_id": "it/vpn.md",
    "title": "VPN setup on Windows",
    "author": "Dana",
    "path": "it/vpn.md",
    "modified": "2025-03-14",
    "doc_type": "runbook",
    "text": "Install the GlobalProtect VPN client from the portal, sign in with Okta, choose the Leeds gateway.",
}


def start_served_model(port: int) -> subprocess.Popen:
    """``relabel serve-llm`` with the 135M model on 127.0.0.1:``port``, once it answers."""
    relabel = Path(sys.executable).with_name("relabel")
    server = subprocess.Popen(
        [str(relabel), "serve-llm", "--model", "smollm2-135m", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.5)


def outage_scenario(pairs: int, answered_before: int) -> Outcome:
    """``relabel serve-llm`` answers the first ``answered_before`` pairs and is stopped; a run over all ``pairs``
    finds it down; it is started again and the next run labels what is missing. Counted: pairs graded at the
    end (ingested), pairs the down run refused with the connection error (quarantined), pairs paid twice
    (duplicated), and grades or cache rows invented while it was down (violations)."""
    from relabel.llm.client import LLMClient
    from relabel.llm.runner import CallPolicy
    from relabel.teacher.grading import label_pairs

    port = free_port()
    client = LLMClient("openai/smollm2-135m", api_base=f"http://127.0.0.1:{port}/v1")
    conn = duckdb.connect()
    policy = CallPolicy(max_attempts=2, backoff_initial_s=0.05)
    items = [
        {**SERVED_DOC, "pair_source": "pool", "qid": f"q{i}", "query_text": f"vpn question {i}"} for i in range(pairs)
    ]

    def scalar(sql: str) -> int:
        return conn.execute(sql).fetchall()[0][0]

    server = start_served_model(port)
    try:
        first = label_pairs(conn, client, items[:answered_before], use_logprobs=True, policy=policy)
    finally:
        server.terminate()
        server.wait(timeout=30)
    cached_before = scalar("select count(*) from llm_cache")
    down = label_pairs(conn, client, items, use_logprobs=True, policy=policy)
    cached_while_down = scalar("select count(*) from llm_cache") - cached_before
    server = start_served_model(port)
    try:
        back = label_pairs(conn, client, items, use_logprobs=True, policy=policy)
    finally:
        server.terminate()
        server.wait(timeout=30)
    outcome = Outcome("pairs graded across the outage", pairs)
    failed = [r for r in down if r["status"] == "failed"]
    invented = [r for r in failed if r["grade"] is not None or r["expected_grade"] is not None]
    outcome.quarantined = len(failed)
    outcome.no_reason = sum(1 for r in failed if not str(r["error"] or "").strip())
    outcome.ingested = sum(1 for r in back if r["status"] == "ok")
    outcome.lost = pairs - outcome.ingested
    paid = conn.execute(
        "select count(*) from (select cache_key from llm_calls where status = 'ok' group by 1 having count(*) > 1)"
    ).fetchall()[0][0]
    outcome.duplicated = paid
    outcome.violations = len(invented) + cached_while_down
    outcome.notes.update(
        answered_before=sum(1 for r in first if r["status"] == "ok"),
        graded_from_cache_while_down=sum(1 for r in down if r["status"] == "ok"),
        failure_reasons=sorted({str(r["error"])[:400] for r in failed})[:3],
        same_grades_after=[r["grade"] for r in back[:answered_before]] == [r["grade"] for r in first],
        ok_calls=scalar("select count(*) from llm_calls where status = 'ok'"),
    )
    return outcome


# --- the daemon, a full run and readers at once ---------------------------------------------------------------


def incremental_resources(root: Path, corpus: Path, judgments: Path, **settings: object) -> dict[str, object]:
    """Resources over ``root`` with the scripted LLM; one student epoch keeps the baseline quick."""
    from tests.conftest import scripted_resources

    return scripted_resources(root, corpus, judgments, student_epochs=1, **settings)


def build_baseline(root: Path) -> Path:
    """The full relabel_job once on the tiny corpus under ``root``: the state incremental runs start from."""
    from relabel_assets.definitions import build_definitions
    from tests.conftest import write_tiny_corpus, write_tiny_judgments

    corpus = write_tiny_corpus(root / "corpus")
    judgments = write_tiny_judgments(root / "judgments", corpus)
    defs = build_definitions(incremental_resources(root, corpus, judgments))
    assert defs.resolve_job_def("relabel_job").execute_in_process().success
    return root


def copy_baseline(baseline: Path, target: Path) -> Path:
    """A private copy of the baseline's warehouse (checkpoints stay in the baseline's artifact store)."""
    (target / "data").mkdir(parents=True)
    shutil.copy(baseline / "data" / "relabel.duckdb", target / "data" / "relabel.duckdb")
    return target


RUNS_QUERY = """{ runsOrError(filter: {pipelineName: "incremental_relabel_job"}) {
  ... on Runs { results { runId status tags { key value } } } } }"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    relabel = Path(sys.executable).with_name("relabel")
    return subprocess.run([str(relabel), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@dataclass
class DaemonRun:
    """What the daemon scenario saw: the sensor's runs, the full run, every report, and the warehouse after."""

    runs: list[dict]
    full_run_returncode: int
    full_run_output: str
    reads: list[subprocess.CompletedProcess]
    lock_errors: list[str]
    versions: dict[str, int]
    live_labels: dict[str, int]
    duplicated_pairs: int
    daemon_log: str

    @property
    def partitions(self) -> list[str]:
        return sorted(t["value"] for r in self.runs for t in r["tags"] if t["key"] == "dagster/partition")

    @property
    def full_run_refused_by_the_guard(self) -> bool:
        return self.full_run_returncode != 0 and "diverging label sets" in self.full_run_output

    def outcome(self) -> Outcome:
        """Operations: each dropped file's batch, the full run and each report."""
        outcome = Outcome("operations: inbox batches, a full run, reports", len(self.versions) + 1 + len(self.reads))
        outcome.crashed = sum(r["status"] != "SUCCESS" for r in self.runs) + sum(r.returncode != 0 for r in self.reads)
        outcome.crashed += int(self.full_run_returncode != 0 and not self.full_run_refused_by_the_guard)
        outcome.quarantined = int(self.full_run_refused_by_the_guard)
        stored = [d for d, n in self.versions.items() if n == 1 and self.live_labels[d] > 0]
        outcome.ingested = len(stored) + int(self.full_run_returncode == 0) + sum(r.returncode == 0 for r in self.reads)
        outcome.lost = sum(1 for d, n in self.versions.items() if n == 0 or self.live_labels[d] == 0)
        outcome.duplicated = self.duplicated_pairs + sum(1 for n in self.versions.values() if n > 1)
        outcome.violations = len(self.lock_errors)
        outcome.notes.update(
            batches=len(self.runs),
            reports=len(self.reads),
            full_run="succeeded"
            if self.full_run_returncode == 0
            else "refused by the rebuild guard"
            if self.full_run_refused_by_the_guard
            else "failed",
        )
        return outcome


def daemon_scenario(baseline: Path, work: Path, files: Sequence[tuple[str, str]], timeout_s: float = 900) -> DaemonRun:
    """The real ``dagster-daemon`` and ``dagster-webserver`` serve ``tests/daemon_defs.py`` over a copy of the
    baseline. The files are dropped into the inbox one at a time, each once the previous one's batch run is
    visible (so one sensor tick and one batch per file), while ``relabel run --module tests.daemon_defs``
    rebuilds the full pipeline in another process and ``relabel report`` reads in a loop."""
    import dagster as dg

    from relabel.cli import DAGSTER_YAML

    root = copy_baseline(baseline, work / "root")
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)  # the configuration `relabel ui` writes
    # create the instance's storage first: the daemon and the webserver would race to migrate a fresh one
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
    port = free_port()
    env = {
        **python_env(),
        "DAGSTER_HOME": str(home),
        "RELABEL_TEST_ROOT": str(root),
        "RELABEL_TEST_BASELINE": str(baseline),
        "RELABEL_DATA_DIR": str(root / "data"),
        "RELABEL_SENSOR_INTERVAL_S": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "TOKENIZERS_PARALLELISM": "false",
    }
    bin_dir = Path(sys.executable).parent
    target = ["-f", str(REPO / "tests" / "daemon_defs.py"), "-d", str(REPO)]
    log_paths = [work / "daemon.log", work / "webserver.log"]
    logs = [path.open("w") for path in log_paths]
    processes = [
        subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", *target],
            env=env,
            cwd=REPO,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *target],
            env=env,
            cwd=REPO,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),
    ]
    reads: list[subprocess.CompletedProcess] = []
    runs: list[dict] = []
    inbox = root / "inbox"
    try:
        inbox.mkdir()
        dropped = 0

        def drop_next() -> None:
            nonlocal dropped
            name, text = files[dropped]
            (inbox / name).write_text(text)
            dropped += 1

        drop_next()
        full_run = subprocess.Popen(
            [str(bin_dir / "relabel"), "run", "--module", "tests.daemon_defs"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout_s  # daemon start-up alone can take minutes on 2 busy cores
        while time.monotonic() < deadline:
            reads.append(run_cli(["report"], env, REPO))
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("the daemon or the webserver exited:\n" + log_paths[0].read_text()[-3000:])
            try:
                runs = graphql(port, RUNS_QUERY)["runsOrError"]["results"]
            except (OSError, KeyError, TypeError):
                continue  # the webserver is still starting
            if dropped < len(files) and len(runs) >= dropped:
                drop_next()
            finished = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if len(finished) == len(files) and full_run.poll() is not None:
                break
            time.sleep(2)
        full_output = full_run.communicate(timeout=600)[0]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
    daemon_log = log_paths[0].read_text()
    outputs = [full_output, daemon_log, *(r.stdout + r.stderr for r in reads)]
    lock_errors = [e for e in LOCK_ERRORS for text in outputs if e in text]
    with duckdb.connect(str(root / "data" / "relabel.duckdb"), read_only=True) as conn:

        def count(sql: str, doc: str) -> int:
            return conn.execute(sql, [doc]).fetchall()[0][0]

        names = [f"inbox/{name}" for name, _ in files]
        versions = {
            d: count("select count(*) from document_versions where doc_id = ? and retired_at is null", d) for d in names
        }
        live = {
            d: count("select count(*) from relevance_labels where doc_id = ? and retired_at is null", d) for d in names
        }
        duplicated = conn.execute(
            "select count(*) from (select qid, doc_id from relevance_labels where retired_at is null "
            "group by qid, doc_id having count(*) > 1)"
        ).fetchall()[0][0]
    return DaemonRun(runs, full_run.returncode, full_output, reads, lock_errors, versions, live, duplicated, daemon_log)
