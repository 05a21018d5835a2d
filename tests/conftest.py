"""Shared fixtures: a tiny corpus and judgments in tmp_path, resources pointing at them, the scripted LLM."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from dagster_duckdb import DuckDBResource  # noqa: E402

from resources.llm import LLMGateway  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.settings import PipelineSettings  # noqa: E402
from tests import scripted_llm  # noqa: E402

ASSET_NAMES = {
    "seed_corpus",
    "synthetic_queries",
    "bm25_index",
    "candidate_pools",
    "teacher_labels",
    "pairs_to_grade",
    "training_set",
    "student_checkpoint",
    "student_labels",
    "human_benchmark",
    "agreement_report",
    "baseline_imports",
}
INCREMENTAL_ASSET_NAMES = {
    "inbox_documents",
    "inbox_bm25_index",
    "inbox_queries",
    "inbox_candidate_pairs",
    "inbox_teacher_labels",
    "relevance_labels",
}
SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCHMARKS = SHARED / "benchmarks"

TINY_DOCS = {
    "it/vpn-windows.md": "---\ntitle: VPN setup on Windows\nauthor: Dana Ops\nmodified: 2025-03-14\n"
    "type: runbook\n---\n"
    "Install the GlobalProtect VPN client from the portal, sign in with Okta and choose the Leeds gateway.",
    "it/vpn-mac.txt": "Title: VPN troubleshooting on macOS\nAuthor: Dana Ops\nModified: 2025-09-02\nType: runbook\n\n"
    "If the VPN drops on macOS, remove the network extension and reinstall the GlobalProtect client.",
    "hr/leave.html": "<html><head><title>Parental leave policy</title><meta name='author' content='Aisha HR'>"
    "<meta name='modified' content='2024-05-01'><meta name='doc-type' content='policy'></head>"
    "<body><h1>Parental leave</h1><p>Employees get 26 weeks of parental leave at full pay.</p>"
    "<script>track()</script></body></html>",
    "finance/expenses.json": json.dumps(
        {
            "title": "Travel expense limits",
            "author": "Priya Finance",
            "modified": "2026-02-02",
            "type": "policy",
            "body": "Hotel limit is 180 GBP per night in London; claims go in Expensify.",
        }
    ),
    "eng/kafka.md": "---\ntitle: Kafka consumer lag runbook\nauthor: Sofia Data\nmodified: 2025-08-19\n"
    "type: runbook\n---\n"
    "When consumer lag grows, scale the consumer group and check the broker disk usage in Datadog.",
    "eng/postmortem.txt": "Title: Routing API outage postmortem\nAuthor: Omar SRE\nModified: 2025-03-27\n"
    "Type: postmortem\n\nThe routing API ran out of database connections; the pool size was raised to 200.",
}


def write_tiny_corpus(root: Path) -> Path:
    """Six documents in four formats."""
    for name, text in TINY_DOCS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_tiny_judgments(root: Path, corpus: Path) -> Path:
    """A TREC-layout folder judging the tiny corpus (docids are the corpus paths)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "queries.tsv").write_text("j1\thow do I set up the vpn\nj2\thotel limit london\n")
    qrels = [
        "j1 0 it/vpn-windows.md 3",
        "j1 0 it/vpn-mac.txt 1",
        "j1 0 hr/leave.html 0",
        "j2 0 finance/expenses.json 3",
        "j2 0 eng/kafka.md 0",
        "j2 0 hr/leave.html 0",
    ]
    (root / "qrels.txt").write_text("\n".join(qrels) + "\n")
    docs = [json.dumps({"docid": name, "text": text}) for name, text in TINY_DOCS.items()]
    (root / "docs.jsonl").write_text("\n".join(docs) + "\n")
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "corpus")


def scripted_resources(root: Path, corpus: Path, judgments: Path, **settings: object) -> dict[str, object]:
    """Resources over ``root`` (DuckDB file, artifacts, inbox) with the scripted LLM and small pools; ``settings``
    override any PipelineSettings field (``inbox_dir`` included)."""
    scripted_llm.register()
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    return {
        "duckdb": DuckDBResource(database=str(data / "relabel.duckdb")),
        "llm": LLMGateway(model="scripted/overlap", use_logprobs=False),
        "model_store": ModelStore(root=str(data / "artifacts")),
        "settings": PipelineSettings(
            **{
                "data_dir": str(data),
                "corpus_dir": str(corpus),
                "inbox_dir": str(root / "inbox"),
                "judgments": str(judgments),
                "queries_per_doc": 2,
                "bm25_negatives": 2,
                "random_negatives": 1,
                **settings,
            }
        ),
    }


@pytest.fixture
def pipeline_resources(tmp_path: Path, tiny_corpus: Path) -> dict[str, object]:
    """Resources for a whole-graph materialization on the tiny corpus with the scripted LLM."""
    judgments = write_tiny_judgments(tmp_path / "judgments", tiny_corpus)
    return scripted_resources(tmp_path, tiny_corpus, judgments, student_epochs=2)


def requires_benchmarks() -> pytest.MarkDecorator:
    """Skip (with the reason) when ../shared/benchmarks is not next to the repository."""
    return pytest.mark.skipif(not BENCHMARKS.exists(), reason=f"human-judged benchmarks not found at {BENCHMARKS}")


def load_bench(name: str) -> ModuleType:
    """A ``bench/`` script imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
