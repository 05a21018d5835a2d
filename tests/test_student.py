"""The student recipes: training changes weights, save/load reproduces labels, targets and thresholds."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from relabel.models import minilm_dir
from relabel.student import load_student, train_student
from relabel.student.base import (
    Labeler,
    StudentConfig,
    apply_thresholds,
    best_epoch,
    expected_grades,
    fit_epochs,
    fit_thresholds,
    model_card,
    pair_text,
    query_group_split,
    target_distribution,
)
from relabel.student.cross_encoder import head_probabilities
from relabel.student.slm import hf_causal_lm_dir

ROWS = [
    {"qid": f"q{i % 4}", "query_text": q, "title": t, "doc_text": d, "grade": g, "expected_grade": float(g)}
    for i, (q, t, d, g) in enumerate(
        [
            ("vpn setup", "VPN guide", "Install GlobalProtect and sign in.", 3),
            ("vpn setup", "Parental leave", "26 weeks of leave.", 0),
            ("hotel limit", "Travel policy", "Hotel limit is 180 GBP.", 3),
            ("hotel limit", "Kafka runbook", "Scale the consumer group.", 0),
            ("kafka lag", "Kafka runbook", "Scale the consumer group when lag grows.", 2),
            ("kafka lag", "VPN guide", "Install GlobalProtect.", 1),
            ("leave weeks", "Parental leave", "26 weeks of leave at full pay.", 3),
            ("leave weeks", "Travel policy", "Hotel limit.", 1),
        ]
    )
]
QUERIES = [r["query_text"] for r in ROWS]
DOCS = [pair_text(r) for r in ROWS]


@pytest.mark.unit
def test_thresholds_match_teacher_grade_shares() -> None:
    scores = np.linspace(0, 3, 100)
    grades = np.repeat([0, 1, 2, 3], 25)
    predicted = apply_thresholds(scores, fit_thresholds(scores, grades))
    assert np.bincount(predicted, minlength=4).tolist() == [25, 25, 25, 25]


@pytest.mark.unit
def test_validation_split_never_shares_a_query() -> None:
    rows = [{"qid": f"q{i}"} for i in range(10) for _ in range(3)]
    train, val = query_group_split(rows, 0.2, seed=1)
    assert val and not {rows[i]["qid"] for i in train} & {rows[i]["qid"] for i in val}


@pytest.mark.unit
def test_targets_use_teacher_probabilities_else_the_grade() -> None:
    assert target_distribution({"grade": 2, "p0": 0.1, "p1": 0.1, "p2": 0.6, "p3": 0.2}) == pytest.approx(
        [0.1, 0.1, 0.6, 0.2]
    )
    assert target_distribution({"grade": 2, "p0": float("nan"), "p1": None, "p2": None, "p3": None}) == [0, 0, 1, 0]


class _WeightLabeler(Labeler):
    """Copies the teacher while its weight is untouched, reverses the grades once training moved it."""

    def __init__(self, weight: torch.nn.Parameter, teacher: dict[str, int]) -> None:
        self.weight, self.teacher = weight, teacher

    def probabilities(self, queries, docs) -> np.ndarray:  # noqa: ANN001
        untouched = abs(float(self.weight) - 1.0) < 1e-9
        grades = [self.teacher[d] if untouched else 3 - self.teacher[d] for d in docs]
        return np.eye(4)[grades]


@pytest.mark.unit
def test_training_that_never_beats_the_start_is_undone() -> None:
    grades = np.array([r["grade"] for r in ROWS])
    weight = torch.nn.Parameter(torch.tensor(1.0))
    split = query_group_split(ROWS, 0.25, seed=13)
    config = StudentConfig(base_model="x", epochs=3, patience=3, batch_size=4)
    labeler = _WeightLabeler(weight, dict(zip(DOCS, grades.tolist(), strict=True)))
    history, best = fit_epochs(
        [torch.nn.ParameterList([weight])],
        torch.optim.SGD([weight], lr=0.1),
        lambda idx: (weight - 5.0) ** 2,
        labeler,
        (QUERIES, DOCS),
        grades,
        split,
        config,
    )
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert best == history[0]["val_kappa_vs_teacher"] > max(h["val_kappa_vs_teacher"] for h in history[1:])
    assert best_epoch(history) == 0 and float(weight) == 1.0, "the starting weights were restored"
    assert (
        best_epoch(
            [
                {"epoch": 0, "val_kappa_vs_teacher": 0.2},
                {"epoch": 1, "val_kappa_vs_teacher": 0.3},
                {"epoch": 2, "val_kappa_vs_teacher": 0.3},
            ]
        )
        == 1
    )
    assert best_epoch([{"epoch": 1, "train_loss": 0.5}]) is None


@pytest.mark.unit
def test_training_progress_shows_a_bar_per_epoch_and_the_validation_kappa(capsys: pytest.CaptureFixture) -> None:
    grades = np.array([r["grade"] for r in ROWS])
    weight = torch.nn.Parameter(torch.tensor(1.0))
    config = StudentConfig(base_model="x", epochs=2, patience=2, batch_size=2)
    labeler = _WeightLabeler(weight, dict(zip(DOCS, grades.tolist(), strict=True)))
    args = (labeler, (QUERIES, DOCS), grades, query_group_split(ROWS, 0.25, seed=13), config)
    step = (torch.optim.SGD([weight], lr=0.1), lambda idx: (weight - 5.0) ** 2)
    fit_epochs([torch.nn.ParameterList([weight])], *step, *args, progress=True)
    shown = capsys.readouterr().err
    assert "epoch 1/2" in shown and "epoch 2/2" in shown
    assert "epoch 1: loss" in shown and "validation kappa vs teacher" in shown
    fit_epochs([torch.nn.ParameterList([weight])], *step, *args, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.unit
def test_regression_head_probabilities_keep_the_expected_grade() -> None:
    logits = torch.tensor([[-3.0], [0.0], [0.7], [5.0]])
    probabilities = head_probabilities(logits)
    assert torch.allclose(probabilities.sum(-1), torch.ones(4))
    assert np.allclose(expected_grades(probabilities.double().numpy()), 3 * torch.sigmoid(logits).squeeze(-1).numpy())


@pytest.mark.unit
def test_unknown_recipe_or_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown student recipe"):
        StudentConfig(base_model="x", recipe="svm")
    with pytest.raises(ValueError, match="only for the cross-encoder"):
        StudentConfig(base_model="x", recipe="bi-encoder", objective="regression")
    with pytest.raises(FileNotFoundError, match="not a relabel student checkpoint"):
        load_student(tmp_path)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("recipe", "objective"), [("cross-encoder", "soft"), ("cross-encoder", "regression"), ("bi-encoder", "soft")]
)
def test_encoder_training_changes_weights_and_round_trips(tmp_path: Path, recipe: str, objective: str) -> None:
    before = AutoModel.from_pretrained(str(minilm_dir())).encoder.layer[0].attention.self.query.weight.detach()
    config = StudentConfig(
        base_model=str(minilm_dir()),
        recipe=recipe,
        objective=objective,
        epochs=2,
        batch_size=4,
        max_length=64,
        val_fraction=0.25,
    )
    meta = train_student(ROWS, config, tmp_path / "ckpt")
    assert meta["history"][0]["epoch"] == 0 and "val_kappa_vs_teacher" in meta["history"][0]
    assert meta["history"][1]["train_loss"] > 0 and len(meta["thresholds"]) == 3 and meta["val_rows"] > 0
    labeler = load_student(tmp_path / "ckpt")
    after = labeler.model.base_model.encoder.layer[0].attention.self.query.weight.cpu()
    assert torch.equal(before, after) == (meta["best_epoch"] == 0), "the kept epoch's weights were saved"
    unvalidated = train_student(ROWS, replace(config, val_fraction=0), tmp_path / "all-epochs")
    trained = load_student(tmp_path / "all-epochs").model.base_model.encoder.layer[0].attention.self.query.weight
    assert unvalidated["best_epoch"] is None and not torch.equal(before, trained.cpu()), "training changes weights"
    scores, grades, probabilities = labeler.predict_with_probabilities(QUERIES, DOCS)
    again_scores, again_grades = load_student(tmp_path / "ckpt").predict(QUERIES, DOCS)
    assert np.array_equal(scores, again_scores) and np.array_equal(grades, again_grades)
    assert np.allclose(probabilities.sum(1), 1) and np.allclose(scores, probabilities @ np.arange(4))
    assert ((scores >= 0) & (scores <= 3)).all() and (tmp_path / "ckpt" / "model.safetensors").exists()
    stored = json.loads((tmp_path / "ckpt" / "relabel_student.json").read_text())
    assert (stored["recipe"], stored["objective"]) == (recipe, objective)
    card = model_card(meta, "teacher-x", "abc")
    assert ("bi-encoder with a cosine grade head" in card) == (recipe == "bi-encoder") and "teacher-x" in card


@pytest.mark.integration
@pytest.mark.slow
def test_slm_from_gguf_with_lora_trains_and_round_trips(tmp_path: Path) -> None:
    """The paper's recipe on the real SmolLM2-135M GGUF: dequantized, 2 LoRA steps, merged, reloaded."""
    base_dir = hf_causal_lm_dir("smollm2-135m")
    assert "quantization_config" not in json.loads((base_dir / "config.json").read_text())
    config = StudentConfig(
        base_model="smollm2-135m",
        recipe="slm",
        max_steps=2,
        batch_size=4,
        lora_r=4,
        learning_rate=1e-3,
        max_length=160,
        val_fraction=0.25,
    )
    meta = train_student(ROWS, config, tmp_path / "slm")
    assert meta["recipe"] == "slm" and meta["history"][0]["train_loss"] > 0
    # the record keys every recipe writes (bench/scale_bench.py reads them)
    assert meta["best_val_kappa_vs_teacher"] == meta["history"][-1]["val_kappa_vs_teacher"]
    assert meta["best_epoch"] is None
    labeler = load_student(tmp_path / "slm")
    before = LlamaForCausalLM.from_pretrained(str(base_dir)).model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(before, labeler.model.model.layers[0].self_attn.q_proj.weight), "LoRA must be merged"
    scores, grades, probabilities = labeler.predict_with_probabilities(QUERIES, DOCS)
    assert np.allclose(probabilities.sum(1), 1) and ((scores >= 0) & (scores <= 3)).all()
    again = load_student(tmp_path / "slm").predict(QUERIES, DOCS)
    assert np.array_equal(scores, again[0]) and np.array_equal(grades, again[1])


@pytest.mark.integration
def test_slm_full_fine_tuning_from_a_local_folder(tmp_path: Path) -> None:
    """Any local Hugging Face causal-LM folder works as the SLM base: here a tiny model built from a config."""
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tiny = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
        )
    )
    tokenizer.eos_token = "[SEP]"
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    tiny.save_pretrained(str(tmp_path / "base"))
    tokenizer.save_pretrained(str(tmp_path / "base"))
    before = tiny.model.layers[0].mlp.up_proj.weight.detach().clone()
    config = StudentConfig(
        base_model=str(tmp_path / "base"),
        recipe="slm",
        max_steps=2,
        batch_size=4,
        learning_rate=1e-2,
        max_length=128,
        val_fraction=0,
    )
    train_student(ROWS, config, tmp_path / "slm")
    labeler = load_student(tmp_path / "slm")
    assert not torch.equal(before, labeler.model.model.layers[0].mlp.up_proj.weight)
    assert labeler.predict(QUERIES, DOCS)[1].shape == (len(ROWS),)


@pytest.mark.unit
def test_settings_choose_the_base_weights_per_recipe(tmp_path: Path) -> None:
    from resources.settings import PipelineSettings

    for recipe, base in [("cross-encoder", str(minilm_dir())), ("bi-encoder", str(minilm_dir())), ("slm", "")]:
        config = PipelineSettings(data_dir=str(tmp_path), student_recipe=recipe).student_config()
        assert (config.recipe, config.base_model) == (recipe, base)
    with pytest.raises(ValueError, match="unknown student recipe"):
        PipelineSettings(data_dir=str(tmp_path), student_recipe="svm").student_config()
