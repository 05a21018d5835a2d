"""Streaming labeling: pairs read from Parquet or text in chunks, labels written a chunk at a time, the same labels
whatever the chunk size or input format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relabel.cli import main
from relabel.pair_stream import LabelWriter, iter_parquet_chunks, iter_text_chunks, iter_text_pairs, parquet_doc_ids
from tests.conftest import write_tiny_judgments


@pytest.mark.unit
def test_parquet_pairs_come_in_chunks_with_their_texts(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "qid": [f"q{i}" for i in range(10)],
            "doc_id": [f"d{i % 3}" for i in range(10)],
            "query_text": [f"query {i}" for i in range(10)],
            "title": ["T", None] * 5,
            "doc_text": ["body"] * 10,
        }
    )
    path = tmp_path / "pairs.parquet"
    frame.to_parquet(path, row_group_size=4)
    chunks = list(iter_parquet_chunks(path, 3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert chunks[0].docs[:2] == ["T. body", "body"] and chunks[-1].queries == ["query 9"]
    # ids only: texts from the queries and documents given; unknown pairs are reported, not labeled
    frame[["qid", "doc_id"]].to_parquet(tmp_path / "ids.parquet")
    assert parquet_doc_ids(tmp_path / "ids.parquet") == {"d0", "d1", "d2"}
    skipped: list[tuple[str, str]] = []
    chunks = list(
        iter_parquet_chunks(
            tmp_path / "ids.parquet",
            4,
            {"q0": "zero", "q1": "one"},
            {"d0": {"text": "x", "title": ""}, "d1": {"text": "y", "title": "Y"}},
            skipped=lambda q, d: skipped.append((q, d)),
        )
    )
    assert [(c.queries, c.docs) for c in chunks] == [(["zero", "one"], ["x", "Y. y"])]
    assert len(skipped) == 8


@pytest.mark.unit
def test_text_pairs_stream_without_duplicates_and_labels_append(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("q1 0 d1 2\nq1 0 d1 3\nq2 d2\n\nq3 0 d9 1\n")
    assert list(iter_text_pairs(pairs)) == [("q1", "d1"), ("q2", "d2"), ("q3", "d9")]
    docs = {"d1": {"text": "a", "title": None}, "d2": {"text": "b", "title": None}}
    chunks = list(iter_text_chunks(iter_text_pairs(pairs), 1, {"q1": "one", "q2": "two", "q3": "x"}, docs))
    assert [(c.qids, c.doc_ids) for c in chunks] == [(["q1"], ["d1"]), (["q2"], ["d2"])]
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]])
    for name in ("labels.txt", "labels.parquet"):
        with LabelWriter(tmp_path / name) as writer:
            writer.write(["q1"], ["d1"], np.array([2.0]), np.array([2]), probs[:1])
            writer.write(["q2"], ["d2"], np.array([0.0]), np.array([0]), probs[1:])
    assert (tmp_path / "labels.txt").read_text() == "q1 0 d1 2\nq2 0 d2 0\n"
    table = pd.read_parquet(tmp_path / "labels.parquet")
    assert table["qid"].tolist() == ["q1", "q2"] and table["p3"].tolist() == [0.4, 0.0]
    with pytest.raises(ValueError, match="expected 'qid docid'"):
        (tmp_path / "bad.txt").write_text("lonely\n")
        list(iter_text_pairs(tmp_path / "bad.txt"))


@pytest.mark.integration
def test_relabel_label_gives_the_same_labels_from_text_and_parquet_in_any_chunk_size(
    tmp_path: Path, tiny_corpus: Path
) -> None:
    folder = write_tiny_judgments(tmp_path / "j", tiny_corpus)
    model = tmp_path / "student"
    runner = CliRunner()
    files = ["--queries", str(folder / "queries.tsv"), "--docs", str(folder / "docs.jsonl")]
    distill = ["distill", *files, "--teacher-labels", str(folder / "qrels.txt"), "--out", str(model), "--epochs", "0"]
    assert runner.invoke(main, distill).exit_code == 0
    text_out = tmp_path / "text.txt"
    result = runner.invoke(
        main, ["label", "--model", str(model), *files, "--pairs", str(folder / "qrels.txt"), "--out", str(text_out)]
    )
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(f"{text_out}.probs.tsv", sep="\t", dtype={"qid": str, "docid": str})

    queries = dict(line.split("\t") for line in (folder / "queries.tsv").read_text().splitlines())
    docs = {row["docid"]: row["text"] for row in map(json.loads, (folder / "docs.jsonl").read_text().splitlines())}
    pairs = pd.DataFrame([line.split()[::2][:2] for line in (folder / "qrels.txt").read_text().splitlines()])
    pairs.columns = ["qid", "doc_id"]
    pairs.to_parquet(tmp_path / "ids.parquet")
    pairs.assign(query_text=pairs["qid"].map(queries), doc_text=pairs["doc_id"].map(docs)).to_parquet(
        tmp_path / "texts.parquet"
    )
    for source, extra in (("ids.parquet", files), ("texts.parquet", [])):
        out = tmp_path / f"from-{source}"
        args = ["label", "--model", str(model), *extra, "--pairs", str(tmp_path / source), "--out", str(out)]
        result = runner.invoke(main, [*args, "--chunk-size", "2", "--batch-size", "3"])
        assert result.exit_code == 0, result.output
        assert "batch 3, chunk 2" in result.output
        got = pd.read_parquet(out).sort_values(["qid", "docid"]).reset_index(drop=True)
        want = expected.sort_values(["qid", "docid"]).reset_index(drop=True)
        assert got["grade"].tolist() == want["grade"].tolist(), source
        np.testing.assert_allclose(got[["p0", "p1", "p2", "p3"]].to_numpy(), want[["p0", "p1", "p2", "p3"]], atol=1e-5)


@pytest.mark.unit
def test_the_inference_batch_follows_free_gpu_memory_unless_set() -> None:
    from types import SimpleNamespace

    from relabel.student.base import activation_bytes_per_pair, free_gpu_bytes, inference_batch_size

    minilm = SimpleNamespace(hidden_size=384, num_attention_heads=12, vocab_size=30522)
    per_pair = activation_bytes_per_pair(minilm, 256)
    assert per_pair == 4 * 256 * (16 * 384 + 12 * 256)
    assert activation_bytes_per_pair(minilm, 256, causal=True) == per_pair + 4 * 256 * 30522
    assert inference_batch_size(64, 0, per_pair, None) == 64, "CPU: the recipe's default"
    assert inference_batch_size(64, 48, per_pair, 80 << 30) == 48, "an explicit size wins"
    assert inference_batch_size(64, 0, per_pair, 8 << 30) == (4 << 30) // per_pair == 455  # half of 8 GiB free
    assert inference_batch_size(64, 0, per_pair, 80 << 30) == 4096, "capped"
    assert inference_batch_size(64, 0, per_pair, 1 << 20) == 64, "never below the default"
    assert free_gpu_bytes("cpu") is None


@pytest.mark.unit
def test_streaming_a_parquet_file_holds_one_batch_of_arrow_memory(tmp_path: Path) -> None:
    import pyarrow as pa

    rows = 200_000
    noise = np.random.default_rng(0).integers(0, 2**63, size=(rows, 6))  # ~100 incompressible characters a row
    frame = pd.DataFrame(
        {
            "qid": [f"q{i // 10}" for i in range(rows)],
            "doc_id": [f"d{i}" for i in range(rows)],
            "query_text": "how do I reset the vpn token",
            "doc_text": [" ".join(map(str, row)) for row in noise],
        }
    )
    frame.to_parquet(tmp_path / "pairs.parquet", row_group_size=20_000)
    del frame, noise
    peak = 0
    for chunk in iter_parquet_chunks(tmp_path / "pairs.parquet", 4096):
        peak = max(peak, pa.total_allocated_bytes())
        assert len(chunk) <= 4096
    # a row group holds ~2 MB of text; a reader that kept what it read (pre-buffering) would pass 20 MB
    assert peak < 12 << 20, peak
