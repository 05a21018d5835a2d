"""Where relabel keeps its files, and where the offline model packages put theirs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

DEFAULT_DATA_DIR = "data"


def data_dir(create: bool = True) -> Path:
    """Project data directory (``RELABEL_DATA_DIR``, default ``./data``), created unless ``create`` is False
    (loading the code location creates nothing; the first writer does)."""
    path = Path(os.environ.get("RELABEL_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def duckdb_path(create: bool = True) -> Path:
    """The warehouse file (``RELABEL_DUCKDB_PATH``, default ``<data dir>/relabel.duckdb``)."""
    explicit = os.environ.get("RELABEL_DUCKDB_PATH")
    return Path(explicit).resolve() if explicit else data_dir(create) / "relabel.duckdb"


def inbox_dir(create: bool = True) -> Path:
    """Directory watched for new documents (``RELABEL_INBOX_DIR``, default ``<data dir>/inbox``)."""
    explicit = os.environ.get("RELABEL_INBOX_DIR")
    return Path(explicit).resolve() if explicit else data_dir(create) / "inbox"


def model_cache_dir() -> Path:
    """Where split GGUF models are assembled once (``RELABEL_MODEL_CACHE``, default ``~/.cache/relabel``)."""
    path = Path(os.environ.get("RELABEL_MODEL_CACHE", Path.home() / ".cache" / "relabel")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(name: str) -> Path:
    """Folder of an installed package without importing it (some model packages fail to import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; run `make setup` (it installs the offline model packages)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """Content hash of every file under ``root`` (relative names included), for checkpoints and indexes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
