"""Student training levers for large label sets: batching, the ranking loss, precision and --init-from."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from relabel.models import minilm_dir
from relabel.paths import file_sha256
from relabel.student import load_student, train_student
from relabel.student.base import (
    StudentConfig,
    autocast,
    margin_mse,
    model_card,
    read_meta,
    training_batches,
)
from tests.test_student import DOCS, QUERIES, ROWS


def _batches(batching: str, lengths: list[int], qids: list[str], size: int = 4) -> list[list[int]]:
    config = StudentConfig(base_model="x", batching=batching, batch_size=size)
    return training_batches(list(range(len(lengths))), lengths, qids, config, random.Random(0))


@pytest.mark.unit
@pytest.mark.parametrize("batching", ["random", "length", "query"])
def test_every_training_row_is_in_exactly_one_batch(batching: str) -> None:
    rng = random.Random(1)
    lengths = [rng.randint(5, 500) for _ in range(203)]
    qids = [f"q{i % 7}" for i in range(203)]
    batches = _batches(batching, lengths, qids)
    assert sorted(i for batch in batches for i in batch) == list(range(203))
    assert max(len(b) for b in batches) == 4


@pytest.mark.unit
def test_length_batches_pad_less_than_random_batches() -> None:
    rng = random.Random(2)
    lengths = [rng.randint(5, 500) for _ in range(800)]
    qids = [f"q{i % 9}" for i in range(800)]

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(_batches("length", lengths, qids)) < 0.2 * padding(_batches("random", lengths, qids))


@pytest.mark.unit
def test_query_batches_hold_one_query_sorted_by_length() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(5, 500) for _ in range(90)]
    qids = [f"q{i % 5}" for i in range(90)]
    for batch in _batches("query", lengths, qids):
        assert len({qids[i] for i in batch}) == 1
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)


@pytest.mark.unit
def test_margin_mse_compares_same_query_gaps_only() -> None:
    student = torch.tensor([2.0, 1.0, 0.0, 3.0], requires_grad=True)
    teacher = torch.tensor([3.0, 1.0, 1.0, 0.0])
    # pairs of q1: (0,1) gap 1 vs 2 -> 1; (0,2) 2 vs 2 -> 0; (1,2) 1 vs 0 -> 1; row 3 alone in q2
    loss = margin_mse(student, teacher, ["q1", "q1", "q1", "q2"])
    assert float(loss.detach()) == pytest.approx(2 / 3)
    loss.backward()
    assert student.grad is not None and float(student.grad[3]) == 0.0 and float(student.grad.abs().sum()) > 0
    assert float(margin_mse(student, teacher, ["a", "b", "c", "d"])) == 0.0


@pytest.mark.unit
def test_precision_chooses_the_autocast() -> None:
    cpu = torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        StudentConfig(base_model="x", precision="fp8")
    with pytest.raises(ValueError, match="unknown batching"):
        StudentConfig(base_model="x", batching="sorted")


def _query_weight(directory: Path) -> torch.Tensor:
    return load_student(directory).model.base_model.encoder.layer[0].attention.self.query.weight.detach().cpu()


@pytest.mark.integration
def test_init_from_keeps_the_parent_until_training_changes_it(tmp_path: Path) -> None:
    config = StudentConfig(
        base_model=str(minilm_dir()),
        epochs=1,
        batch_size=4,
        max_length=64,
        val_fraction=0,
        batching="query",
        rank_weight=1.0,
        learning_rate=1e-3,
    )
    parent_meta = train_student(ROWS, config, tmp_path / "parent")
    assert parent_meta["parent"] is None and parent_meta["history"][-1]["train_loss"] > 0
    parent_weights = _query_weight(tmp_path / "parent")
    assert not torch.equal(parent_weights, _base_query_weight()), "the ranking-loss run trained"

    kept = train_student(ROWS, replace(config, epochs=0, init_from=str(tmp_path / "parent")), tmp_path / "kept")
    assert torch.equal(_query_weight(tmp_path / "kept"), parent_weights), "no training: the parent's weights"
    assert kept["head"] == parent_meta["head"], "and the parent's grade head"
    assert kept["parent"]["sha256"] == file_sha256(tmp_path / "parent" / "model.safetensors")
    assert kept["base_model"] == str(minilm_dir())
    card = model_card(kept, "teacher-x", "abc")
    assert "parent checkpoint" in card and kept["parent"]["sha256"] in card
    scores_parent, _ = load_student(tmp_path / "parent").predict(QUERIES, DOCS)
    scores_kept, _ = load_student(tmp_path / "kept").predict(QUERIES, DOCS)
    assert scores_parent.tolist() == pytest.approx(scores_kept.tolist())

    tuned = train_student(ROWS, replace(config, init_from=str(tmp_path / "parent")), tmp_path / "tuned")
    assert not torch.equal(_query_weight(tmp_path / "tuned"), parent_weights), "training moves on from the parent"
    assert tuned["parent"]["sha256"] == kept["parent"]["sha256"]
    with pytest.raises(ValueError, match="not cross-encoder"):
        train_student(
            ROWS, replace(config, recipe="cross-encoder", init_from=str(tmp_path / "parent")), tmp_path / "wrong"
        )


def _base_query_weight() -> torch.Tensor:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_dir())).encoder.layer[0].attention.self.query.weight.detach()


@pytest.mark.integration
def test_distill_cli_init_from_records_the_parent(tmp_path: Path) -> None:
    from relabel.cli import main

    qids = {text: f"q{n}" for n, text in enumerate(dict.fromkeys(QUERIES))}
    (tmp_path / "q.tsv").write_text("".join(f"{qid}\t{text}\n" for text, qid in qids.items()))
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps({"docid": f"d{i}", "text": r["doc_text"]}) + "\n" for i, r in enumerate(ROWS))
    )
    (tmp_path / "run.txt").write_text(
        "".join(f"{qids[r['query_text']]} 0 d{i} {r['grade']}\n" for i, r in enumerate(ROWS))
    )
    common = [
        "distill",
        "--queries",
        str(tmp_path / "q.tsv"),
        "--docs",
        str(tmp_path / "d.jsonl"),
        "--teacher-labels",
        str(tmp_path / "run.txt"),
        "--max-length",
        "64",
    ]
    runner = CliRunner()
    first = runner.invoke(main, [*common, "--out", str(tmp_path / "parent"), "--epochs", "1"])
    assert first.exit_code == 0, first.output
    child = runner.invoke(
        main, [*common, "--out", str(tmp_path / "child"), "--epochs", "0", "--init-from", str(tmp_path / "parent")]
    )
    assert child.exit_code == 0, child.output
    meta = read_meta(tmp_path / "child")
    assert meta["parent"]["path"] == str((tmp_path / "parent").resolve())
    assert "parent checkpoint" in (tmp_path / "child" / "README.md").read_text()
    assert torch.equal(_query_weight(tmp_path / "child"), _query_weight(tmp_path / "parent"))
    wrong = runner.invoke(
        main,
        [*common, "--out", str(tmp_path / "x"), "--recipe", "cross-encoder", "--init-from", str(tmp_path / "parent")],
    )
    assert wrong.exit_code != 0 and "bi-encoder checkpoint" in wrong.output
