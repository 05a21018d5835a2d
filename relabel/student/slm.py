"""Generative SLM recipe (the paper's): supervised fine-tuning of a small causal LM with trl on
prompt -> grade digit, loss on the completion only, optional LoRA (peft). At inference the probabilities
of the four digit tokens after the prompt give the expected grade.

The base is a local Hugging Face causal-LM folder or a GGUF file (the ``smollm2-135m`` alias by default);
a GGUF is dequantized once to float32 and cached as a Hugging Face folder."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from relabel.llm.prompts import load_prompt, render_pair
from relabel.paths import file_sha256, model_cache_dir
from relabel.student.base import (
    Labeler,
    StudentConfig,
    final_thresholds,
    fit_thresholds,
    pair_text,
    query_group_split,
    read_meta,
    seed_everything,
    torch_device,
    validation_kappa,
    write_meta,
)

SLM_PROMPT_ID = "grade_one_digit"
DEFAULT_SLM_BASE = "smollm2-135m"


def hf_causal_lm_dir(base: str) -> Path:
    """A Hugging Face folder for ``base``: a folder as given, or a GGUF (alias or path) dequantized to
    float32 once and cached under the model cache by its content hash."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    from relabel.models import resolve_gguf

    gguf = resolve_gguf(base)
    target = model_cache_dir() / f"hf-{gguf.stem}-{file_sha256(gguf)[:12]}"
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # saved without its GGUF quantization settings, the folder reloads as a plain trainable model
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    partial.rename(target)
    return target


def grade_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of the digits 0-3; each must be a single token."""
    ids = [tokenizer.encode(str(g), add_special_tokens=False) for g in range(4)]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"the tokenizer splits a grade digit into several tokens: {ids}")
    return [i[0] for i in ids]


def prompt_messages(query: str, title: str, text: str, max_doc_chars: int) -> list[dict[str, str]]:
    """The grading prompt the SLM learns to answer (the one-digit teacher prompt)."""
    return render_pair(load_prompt(SLM_PROMPT_ID), query, {"title": title, "text": text}, max_doc_chars)


class SLMLabeler(Labeler):
    """A loaded SLM student."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        thresholds: Sequence[float],
        max_doc_chars: int,
        max_length: int,
        batch_size: int = 8,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        # the digit is read after the last prompt token: pad and, if ever needed, cut on the left
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.digit_ids = grade_token_ids(tokenizer)
        self.thresholds = list(thresholds)
        self.max_doc_chars = max_doc_chars
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, directory: Path) -> SLMLabeler:
        """Load a checkpoint written by ``train_slm``."""
        meta = read_meta(directory)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).to(torch_device())
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        return cls(model, tokenizer, meta["thresholds"], meta["max_doc_chars"], meta["max_length"])

    def prompts(self, queries: Sequence[str], docs: Sequence[str]) -> list[str]:
        """Chat-formatted prompts ending where the assistant's digit goes."""
        return [
            self.tokenizer.apply_chat_template(
                prompt_messages(q, "", d, self.max_doc_chars), tokenize=False, add_generation_prompt=True
            )
            for q, d in zip(queries, docs, strict=True)
        ]

    def probabilities(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n, 4) probabilities of the digit tokens 0-3 (renormalized over those four)."""
        texts = self.prompts(queries, docs)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 4), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                    add_special_tokens=False,
                ).to(self.model.device)
                logits = self.model(**batch).logits[:, -1, self.digit_ids].float()
                out[idx] = torch.softmax(logits, dim=-1).double().cpu().numpy()
        return out


def train_slm(rows: Sequence[dict[str, Any]], config: StudentConfig, out_dir: Path) -> dict[str, Any]:
    """SFT with trl on the teacher's grades (completion-only loss), optional LoRA merged back into the
    weights, thresholds fitted on the validation queries; saved in Hugging Face format to ``out_dir``."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    seed_everything(config.seed)
    base = hf_causal_lm_dir(config.base_model or DEFAULT_SLM_BASE)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    train_idx, val_idx = query_group_split(rows, config.val_fraction, config.seed)
    queries = [str(r["query_text"]) for r in rows]
    docs = [pair_text(r) for r in rows]
    grades = np.array([int(r["grade"]) for r in rows])
    dataset = Dataset.from_list(
        [
            {
                "prompt": prompt_messages(queries[i], "", docs[i], config.max_doc_chars),
                "completion": [{"role": "assistant", "content": str(grades[i])}],
            }
            for i in train_idx
        ]
    )
    peft_config = None
    if config.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=2 * config.lora_r,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
            lora_dropout=0.0,
        )
    scratch = tempfile.mkdtemp(prefix="relabel-sft-")
    args = SFTConfig(
        output_dir=scratch,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(1, config.max_steps // 10),
        max_length=config.max_length,
        completion_only_loss=True,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        logging_steps=max(1, config.max_steps // 10),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    started = time.perf_counter()
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    trainer.train()
    shutil.rmtree(scratch, ignore_errors=True)
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    trained = trained.to(torch_device()).eval()
    history: list[dict[str, Any]] = [
        {"step": int(h["step"]), "train_loss": float(h["loss"])} for h in trainer.state.log_history if "loss" in h
    ]
    labeler = SLMLabeler(trained, tokenizer, [0.75, 1.5, 2.25], config.max_doc_chars, config.max_length)
    kappa = None
    if val_idx:
        kappa, val_scores = validation_kappa(labeler, queries, docs, grades, train_idx, val_idx)
        history.append({"step": config.max_steps, "val_kappa_vs_teacher": kappa})
        labeler.thresholds = fit_thresholds(val_scores, grades)
    else:
        labeler.thresholds = final_thresholds(labeler, queries, docs, grades, val_idx)
    trained.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return write_meta(
        out_dir,
        config,
        base_model=str(config.base_model or DEFAULT_SLM_BASE),
        thresholds=labeler.thresholds,
        history=history,
        # the same record keys as the encoders' (the SLM trains a fixed number of steps: no epoch is chosen)
        best_val_kappa_vs_teacher=kappa,
        best_epoch=None,
        train_rows=len(train_idx),
        val_rows=len(val_idx),
        train_seconds=time.perf_counter() - started,
    )
