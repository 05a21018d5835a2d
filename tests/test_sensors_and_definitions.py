"""Inbox sensor (build_sensor_context) and the code location's shape."""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

import resources
import sensors
from relabel.incremental import batches, rules
from relabel_assets.definitions import build_definitions
from sensors.inbox import build_inbox_sensor
from tests.conftest import ASSET_NAMES, INCREMENTAL_ASSET_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_generic_packages_resolve_inside_this_repository() -> None:
    for package in (resources, sensors):
        assert Path(package.__file__).resolve().parent.parent == REPO, package.__file__


def _evaluate(sensor: dg.SensorDefinition, resources: dict, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={k: resources[k] for k in ("settings", "duckdb")}
    )
    return sensor(context)


@pytest.mark.unit
def test_inbox_sensor_requests_one_partitioned_run_per_batch(pipeline_resources) -> None:
    settings = pipeline_resources["settings"]
    inbox_dir = settings.inbox_path()
    sensor = build_inbox_sensor("incremental_relabel_job")
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(_evaluate(sensor, pipeline_resources, instance, None), dg.SkipReason), "no inbox: skip"
    inbox_dir.mkdir()
    assert isinstance(_evaluate(sensor, pipeline_resources, instance, None), dg.SkipReason), "empty inbox: skip"

    (inbox_dir / "a.md").write_text("# A\nfirst document")
    (inbox_dir / "sub").mkdir()
    (inbox_dir / "sub" / "b.txt").write_text("second document")
    (inbox_dir / "notes.xlsx").write_text("ignored: unsupported type")
    first = _evaluate(sensor, pipeline_resources, instance, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert first.dynamic_partitions_requests[0].partitions_def_name == "inbox_batches"
    assert first.dynamic_partitions_requests[0].partition_keys == [request.partition_key]
    assert request.partition_key.startswith("b000001-") and request.run_key == request.partition_key
    assert request.tags == {
        "relabel/queue": "inbox_batches",
        "relabel/new": "2",
        "relabel/changed": "0",
        "relabel/deleted": "0",
    }
    manifest = batches.BatchManifest.load(settings.batches_path() / request.partition_key)
    assert sorted(manifest.added) == ["inbox/a.md", "inbox/sub/b.txt"]
    snapshot = settings.batches_path() / request.partition_key / "files" / "inbox" / "sub" / "b.txt"
    assert snapshot.read_text() == "second document"

    same = _evaluate(sensor, pipeline_resources, instance, first.cursor)
    assert isinstance(same, dg.SkipReason), "the same files again: nothing"

    (inbox_dir / "a.md").write_text("# A\nfirst document, edited and longer")
    changed = _evaluate(sensor, pipeline_resources, instance, first.cursor)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].partition_key.startswith("b000002-")
    assert changed.run_requests[0].tags == {
        "relabel/queue": "inbox_batches",
        "relabel/new": "0",
        "relabel/changed": "1",
        "relabel/deleted": "0",
    }
    assert batches.BatchManifest.load(settings.batches_path() / changed.run_requests[0].partition_key).changed == {
        "inbox/a.md": rules.text_sha256("# A\nfirst document, edited and longer")
    }

    (inbox_dir / "sub" / "b.txt").unlink()
    deleted = _evaluate(sensor, pipeline_resources, instance, changed.cursor)
    assert deleted.run_requests[0].tags["relabel/deleted"] == "1"
    assert batches.BatchManifest.load(settings.batches_path() / deleted.run_requests[0].partition_key).deleted == [
        "inbox/sub/b.txt"
    ]


@pytest.mark.unit
def test_inbox_sensor_reads_the_staging_table_as_a_second_source(pipeline_resources) -> None:
    settings = pipeline_resources["settings"]
    database = pipeline_resources["duckdb"].database
    sensor = build_inbox_sensor("incremental_relabel_job")
    instance = dg.DagsterInstance.ephemeral()
    with duckdb.connect(database) as conn:
        conn.execute("create table inbox_staging (name varchar, body varchar, staged_at timestamp)")
        conn.execute("insert into inbox_staging values ('crm/note-7.md', '# Note\ncustomer asked for SSO', now())")
    first = _evaluate(sensor, pipeline_resources, instance, None)
    key = first.run_requests[0].partition_key
    assert batches.BatchManifest.load(settings.batches_path() / key).added == {
        "staging/crm/note-7.md": rules.text_sha256("# Note\ncustomer asked for SSO")
    }
    assert (settings.batches_path() / key / "files" / "staging" / "crm" / "note-7.md").exists()
    assert isinstance(_evaluate(sensor, pipeline_resources, instance, first.cursor), dg.SkipReason)
    with duckdb.connect(database) as conn:
        conn.execute("delete from inbox_staging")
    gone = _evaluate(sensor, pipeline_resources, instance, first.cursor)
    assert gone.run_requests[0].tags == {
        "relabel/queue": "inbox_batches",
        "relabel/new": "0",
        "relabel/changed": "0",
        "relabel/deleted": "1",
    }


@pytest.mark.unit
def test_definitions_hold_every_asset_and_every_table_has_a_check(pipeline_resources) -> None:
    defs = build_definitions(pipeline_resources)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == ASSET_NAMES | INCREMENTAL_ASSET_NAMES
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == ASSET_NAMES | INCREMENTAL_ASSET_NAMES
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} needs a docstring"
        assert node.kinds, f"{key} needs kinds"
    assert defs.resolve_job_def("relabel_job") is not None
    assert defs.resolve_sensor_def("inbox_sensor").job_name == "incremental_relabel_job"
    assert defs.resolve_sensor_def("student_retrain_sensor").job_name == "student_retrain_job"
    partitioned = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).partitions_def}
    assert partitioned == INCREMENTAL_ASSET_NAMES, "every incremental asset is partitioned by inbox batch"
    full_job = {key.to_user_string() for key in defs.resolve_job_def("relabel_job").asset_layer.executable_asset_keys}
    assert full_job == ASSET_NAMES, "the full job leaves the inbox batches alone"


@pytest.mark.integration
def test_loading_the_code_location_creates_nothing_and_the_first_run_makes_the_warehouse_folder(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    data = tmp_path / "not_yet" / "data"
    env = {**os.environ, "RELABEL_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    code = "import relabel_assets.definitions as d; print(sorted(d.defs.resources))"
    loaded = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "duckdb" in loaded.stdout and not (tmp_path / "not_yet").exists() and not (tmp_path / "data").exists()

    from resources.warehouse import WarehouseResource

    @dg.asset
    def one_row(duckdb: WarehouseResource) -> None:
        with duckdb.get_connection() as conn:
            conn.execute("create table t as select 1 as x")

    database = data / "relabel.duckdb"
    assert dg.materialize([one_row], resources={"duckdb": WarehouseResource(database=str(database))}).success
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("select x from t").fetchall() == [(1,)]
