"""Inbox sensor (build_sensor_context) and the code location's shape."""

from pathlib import Path

import dagster as dg
import pytest

import resources
import sensors
from relabel_assets.definitions import build_definitions
from sensors.inbox import build_inbox_sensor
from tests.conftest import ASSET_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_generic_packages_resolve_inside_this_repository() -> None:
    for package in (resources, sensors):
        assert Path(package.__file__).resolve().parent.parent == REPO, package.__file__


@pytest.mark.unit
def test_inbox_sensor_requests_runs_only_for_new_or_changed_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    sensor = build_inbox_sensor("relabel_job", inbox)
    empty = sensor(dg.build_sensor_context())
    assert isinstance(empty, dg.SkipReason)

    inbox.mkdir()
    (inbox / "a.md").write_text("# A\nfirst document")
    (inbox / "notes.xlsx").write_text("ignored: unsupported type")
    first = sensor(dg.build_sensor_context())
    assert len(first.run_requests) == 1 and first.run_requests[0].tags["relabel/files"] == "1"

    same = sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(same, dg.SkipReason)

    (inbox / "a.md").write_text("# A\nfirst document, edited and longer")
    changed = sensor(dg.build_sensor_context(cursor=first.cursor))
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key


@pytest.mark.unit
def test_definitions_hold_every_asset_and_every_table_has_a_check(pipeline_resources) -> None:
    defs = build_definitions(pipeline_resources)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == ASSET_NAMES
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == ASSET_NAMES
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} needs a docstring"
        assert node.kinds, f"{key} needs kinds"
    assert defs.resolve_job_def("relabel_job") is not None
    assert defs.resolve_sensor_def("inbox_sensor").job_name == "relabel_job"
