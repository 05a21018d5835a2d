"""Issue 13 at CI size: a generated hostile share (every category of bench/hostile_corpus.py, ~60 inputs) goes
through seed_corpus and through the inbox sensor + batch; nothing crashes, nothing is lost, and every input is
ingested or quarantined with a reason, as its category expects."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bench.hostile_bench import run_inbox, run_seed_corpus, score
from bench.hostile_corpus import build_hostile_corpus
from relabel.corpus.documents import scan_directory


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("hostile") / "share"
    inputs = build_hostile_corpus(root, "ci")
    yield root, inputs
    (root / "perm" / "locked.txt").chmod(0o600)


def _assert_clean(inputs: list, outcome: dict) -> None:
    result = score(inputs, {**outcome, "error": outcome.get("error", ""), "seconds": 0, "peak_rss_mib": 0})
    row = result["row"]
    assert row["crashed"] == row["lost"] == row["duplicated"] == row["no reason"] == 0, result
    assert row["ingested"] + row["quarantined"] == row["inputs tried"] == len(inputs)
    assert result["unexpected"] == []
    assert set(result["categories"]) >= {
        "binary under text suffix", "NUL bytes", "huge text file", "hostile HTML", "symlink loop", "FIFO",
        "JSON wrong types or deep nesting", "malformed e-mail", "odd file name", "name not valid UTF-8",
    }  # fmt: skip


@pytest.mark.unit
def test_hostile_share_scan_loses_nothing(share: tuple[Path, list]) -> None:
    root, inputs = share
    docs, quarantined = scan_directory(root, max_bytes=1 << 20)
    outcome = {
        "ingested": [(d.doc_id, "") for d in docs],
        "quarantined": [(q["doc_id"], q["reason"]) for q in quarantined],
    }
    _assert_clean(inputs, outcome)
    huge = next(d for d in docs if d.doc_id == "size/huge.txt")
    assert huge.truncated and huge.source_bytes >= 3 << 20 and len(huge.text) <= 1 << 20
    assert {d.encoding for d in docs} >= {"utf-8", "utf-16-le (BOM)", "utf-16-be (BOM)", "utf-32-le (BOM)"}


@pytest.mark.integration
def test_hostile_share_through_seed_corpus_asset(share: tuple[Path, list], tmp_path: Path) -> None:
    root, inputs = share
    _assert_clean(inputs, run_seed_corpus(root, tmp_path))
    with duckdb.connect(str(tmp_path / "data" / "relabel.duckdb"), read_only=True) as conn:
        assert conn.execute(
            "select truncated, source_bytes > 3000000 from seed_corpus where doc_id = 'size/huge.txt'"
        ).fetchall() == [(True, True)]


@pytest.mark.integration
def test_hostile_share_through_inbox_sensor_and_batch(share: tuple[Path, list], tmp_path: Path) -> None:
    root, inputs = share
    _assert_clean(inputs, run_inbox(root, tmp_path))
    with duckdb.connect(str(tmp_path / "data" / "relabel.duckdb"), read_only=True) as conn:
        reasons = dict(conn.execute("select doc_id, reason from inbox_quarantine").fetchall())
        assert reasons["inbox/links/loop-a.txt"] == "symlink loop"
        assert reasons["inbox/perm/pipe.txt"].startswith("not a regular file")
        assert conn.execute("select count(*) from document_versions where truncated").fetchall() == [(1,)]
