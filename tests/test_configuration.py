"""Each setting has one home: the fields of ``PipelineSettings``, read from ``RELABEL_<FIELD>``, and
docs/configuration.md documents exactly those fields with their defaults, plus every other ``RELABEL_*``
variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resources.settings import PipelineSettings, env_var

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
DERIVED_DEFAULTS = {"data_dir": "`./data`", "inbox_dir": "`<data>/inbox`"}


def documented_settings() -> dict[str, tuple[str, str]]:
    """field -> (environment variable, default cell) from the pipeline settings table."""
    table = DOC.read_text().split("## Pipeline settings")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(RELABEL_\w+)` \| `([a-z]\w*)` \| ([^|]+) \|", table, flags=re.M)
    return {field: (variable, default.strip()) for variable, field, default in rows}


def default_cell(name: str) -> str:
    if name in DERIVED_DEFAULTS:
        return DERIVED_DEFAULTS[name]
    default = PipelineSettings.model_fields[name].default
    return "(none)" if default in ("", []) else f"`{default}`"


@pytest.mark.unit
def test_the_settings_table_matches_the_settings_class() -> None:
    documented = documented_settings()
    assert set(documented) == set(PipelineSettings.model_fields)
    for name in PipelineSettings.model_fields:
        assert documented[name] == (env_var(name), default_cell(name)), name


@pytest.mark.unit
def test_every_environment_variable_the_code_reads_is_documented() -> None:
    read = set()
    for package in ("relabel", "relabel_assets", "resources", "sensors"):
        for path in (ROOT / package).rglob("*.py"):
            read.update(re.findall(r"\"(RELABEL_[A-Z0-9_]*[A-Z0-9])\"", path.read_text()))
    assert read, "the scan found the variables"
    assert sorted(v for v in read if f"`{v}`" not in DOC.read_text()) == []


@pytest.mark.unit
def test_every_setting_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {"student_epochs": "7", "teacher_sample_rate": "0.35", "teacher_runs": "a.txt, b.txt", "seed": "5"}
    for name, value in overrides.items():
        monkeypatch.setenv(env_var(name), value)
    settings = PipelineSettings.from_env()
    assert (settings.student_epochs, settings.teacher_sample_rate, settings.teacher_runs, settings.seed) == (
        7,
        0.35,
        ["a.txt", "b.txt"],
        5,
    )
    monkeypatch.setenv(env_var("student_epochs"), "many")
    with pytest.raises(ValueError, match="student_epochs"):
        PipelineSettings.from_env()
