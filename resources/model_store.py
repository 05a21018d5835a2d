"""Model store: large binaries (BM25 index, student checkpoints) on disk, addressed by content hash."""

import shutil
from pathlib import Path

import dagster as dg

from relabel.paths import tree_sha256


class ModelStore(dg.ConfigurableResource):
    """Artifacts live under ``<root>/<kind>/<content hash>``; DuckDB tables register their path and hash."""

    root: str

    def staging_dir(self, kind: str) -> Path:
        """A fresh, empty folder to write a new artifact into."""
        path = Path(self.root) / kind / "_staging"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def commit(self, kind: str, staging: Path) -> tuple[Path, str]:
        """Move a written artifact to its content-addressed folder; returns (path, sha256)."""
        digest = tree_sha256(staging)
        final = Path(self.root) / kind / digest[:16]
        if final.exists():
            shutil.rmtree(staging)
        else:
            staging.rename(final)
        return final, digest
