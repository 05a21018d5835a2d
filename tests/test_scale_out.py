"""Sharded labeling: the label store's shard files and views, and the demo-sized corpus labeled as one shard in
process and as four shards on the Dask executor (a LocalCluster of real processes on 127.0.0.1) giving the same
label tables row for row."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from relabel.shard_store import LabelStore, absorb_logs, in_shard, register_views, shard_keys, shard_of

LABEL_KEYS = ["pair_source", "qid", "doc_id"]
# columns that name the run, time it or say whether its answer was cached, not the label; a student's labeler id
# is its checkpoint's content hash, which covers the training time in its metadata, so two trainings never share
# it (their weights are compared through the probabilities instead)
RUN_COLUMNS = {"run_id", "latency_s", "from_cache"}
STUDENT_RUN_COLUMNS = RUN_COLUMNS | {"labeler_id"}


@pytest.mark.unit
def test_shards_come_from_a_stable_hash_and_cover_every_query_once() -> None:
    # sha256("q1")[:8] as a big-endian integer, modulo 4: the same on every machine and Python version
    assert shard_of("q1", 4) == int("c75de8c1b7c3ae52", 16) % 4 == 2
    assert shard_keys(4) == ["0", "1", "2", "3"] and shard_keys(12)[:2] == ["00", "01"]
    frame = pd.DataFrame({"qid": [f"q{i % 37}" for i in range(500)], "doc_id": range(500)})
    parts = [in_shard(frame, k, 4) for k in range(4)]
    assert sum(len(p) for p in parts) == len(frame)
    assert all(len(p) for p in parts), "37 queries over 4 shards leave none empty"
    owners = [set(p["qid"]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :]), "a query lives in one shard"
    with pytest.raises(ValueError):
        shard_of("q1", 0)


@pytest.mark.unit
def test_rewriting_one_shard_replaces_that_file_only_and_the_view_sees_every_shard(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "store"))
    frame = pd.DataFrame({"pair_source": "pool", "qid": [f"q{i}" for i in range(40)], "doc_id": "d", "grade": 1})
    for k in range(4):
        store.write_shard("student_labels", in_shard(frame, k, 4), k, 4)
    store.write_shard("student_labels", frame, 0, 1)  # another shard count: ignored by the 4-shard view
    files = store.shard_files("student_labels", 4)
    assert [Path(f).name for f in files] == [f"shard-{k:04d}-of-0004.parquet" for k in range(4)]
    before = {f: os.stat(f).st_mtime_ns for f in files}
    changed = in_shard(frame, 2, 4).assign(grade=3)
    store.write_shard("student_labels", changed, 2, 4)
    after = {f: os.stat(f).st_mtime_ns for f in store.shard_files("student_labels", 4)}
    assert [f for f in files if after[f] != before[f]] == [files[2]]
    assert not [p for p in (tmp_path / "store" / "student_labels").iterdir() if p.name.startswith(".tmp")]
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table student_labels as select 1 as old")  # a table from before views: replaced
        assert register_views(conn, store, 4) == ["student_labels"]
        view = conn.execute("select * from student_labels order by qid").df()
    expected = frame.assign(grade=[3 if shard_of(q, 4) == 2 else 1 for q in frame["qid"]])
    pd.testing.assert_frame_equal(
        view.sort_values("qid").reset_index(drop=True),
        expected.sort_values("qid").reset_index(drop=True),
        check_dtype=False,
    )


@pytest.mark.unit
def test_shard_logs_are_absorbed_once(tmp_path: Path) -> None:
    from relabel.shard_store import write_logs

    store = LabelStore(str(tmp_path / "store"))
    cache = pd.DataFrame(
        {"cache_key": ["k1", "k2"], "model": "m", "prompt_id": "p", "prompt_version": "1", "response_text": "2"}
    )
    calls = pd.DataFrame({"labeler_id": ["t", "t"], "model": "m", "item_id": ["a", "b"], "status": "ok"})
    write_logs(store, {"llm_cache": cache, "llm_calls": calls}, "teacher_labels-0000")
    write_logs(store, {"llm_cache": cache.iloc[:1]}, "teacher_labels-0001")  # k1 again: first answer wins
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        assert absorb_logs(conn, store) == {"llm_cache": 3, "llm_calls": 2}
        assert absorb_logs(conn, store) == {"llm_cache": 0, "llm_calls": 0}
        assert conn.execute("select count(*) from llm_cache").fetchall()[0][0] == 2
        assert conn.execute("select count(*) from llm_calls").fetchall()[0][0] == 2


def _comparable(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    drop = STUDENT_RUN_COLUMNS if table == "student_labels" else RUN_COLUMNS
    frame = frame.drop(columns=[c for c in frame.columns if c in drop])
    return frame.sort_values(LABEL_KEYS).reset_index(drop=True)


def _labels(database: str, table: str) -> pd.DataFrame:
    with duckdb.connect(database, read_only=True) as conn:
        return _comparable(conn.execute(f"select * from {table}").df(), table)


@pytest.mark.slow
@pytest.mark.integration
def test_four_shards_on_dask_equal_one_shard_in_process(
    tmp_path: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from distributed import LocalCluster

    from relabel_assets.definitions import build_definitions
    from relabel_assets.scale_out import run_phases
    from resources.settings import PipelineSettings
    from tests.conftest import scripted_resources, write_tiny_judgments

    judgments = write_tiny_judgments(tmp_path / "judgments", tiny_corpus)
    one = scripted_resources(tmp_path / "one", tiny_corpus, judgments, student_epochs=2)
    assert build_definitions(one).resolve_job_def("relabel_job").execute_in_process().success
    one_db = one["duckdb"].database

    data = tmp_path / "four" / "data"
    data.mkdir(parents=True)
    env = {
        "RELABEL_DATA_DIR": str(data),
        "RELABEL_CORPUS_DIR": str(tiny_corpus),
        "RELABEL_INBOX_DIR": str(tmp_path / "four" / "inbox"),
        "RELABEL_JUDGMENTS": str(judgments),
        "RELABEL_QUERIES_PER_DOC": "2",
        "RELABEL_BM25_NEGATIVES": "2",
        "RELABEL_RANDOM_NEGATIVES": "1",
        "RELABEL_STUDENT_EPOCHS": "2",
        "RELABEL_SHARDS": "4",
        "RELABEL_EXECUTOR": "dask",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # before the workers start: they inherit the environment
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_home"))
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit=0,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        monkeypatch.setenv("RELABEL_DASK_SCHEDULER", cluster.scheduler_address)
        settings = PipelineSettings.from_env()
        results = run_phases("tests.dask_defs", instance, settings, log=lambda line: None)
        workers_seen = {w["name"] for w in cluster.scheduler_info["workers"].values()}
        # re-running one shard (a run of its partition) replaces that shard's file and no other
        store = settings.label_store()
        files = store.shard_files("teacher_labels", 4)
        before = {f: (os.stat(f).st_ino, Path(f).read_bytes()) for f in files}
        job = ReconstructableRepository.for_module("tests.dask_defs", "defs").get_reconstructable_job(
            "teacher_shards_job"
        )
        assert dg.execute_job(job, instance, tags={"dagster/partition": "2"}).success
        after = {f: (os.stat(f).st_ino, Path(f).read_bytes()) for f in files}
        assert [f for f in files if after[f][0] != before[f][0]] == [files[2]], "only shard 2 was rewritten"
        assert pd.read_parquet(files[2])["from_cache"].all(), "the re-run reused the absorbed LLM cache"
    assert len(results) == 1 + 4 + 1 + 4 + 1 and all(r.success for r in results)
    assert len(workers_seen) == 2
    four_db = str(data / "relabel.duckdb")
    for table in ("teacher_labels", "student_labels", "teacher_label_votes"):
        assert len(store.shard_files(table, 4)) == 4, table
        expected = _labels(one_db, table)
        pd.testing.assert_frame_equal(_labels(four_db, table), expected, check_dtype=False)
        shards = pd.concat([pd.read_parquet(f) for f in store.shard_files(table, 4)], ignore_index=True)
        pd.testing.assert_frame_equal(_comparable(shards, table), expected, check_dtype=False)
    with duckdb.connect(four_db, read_only=True) as conn:
        kinds = dict(conn.execute("select table_name, table_type from information_schema.tables").fetchall())
        cached = conn.execute("select count(*) from llm_cache").fetchall()[0][0]
        report = conn.execute("select count(*) from agreement_report").fetchall()[0][0]
    with duckdb.connect(one_db, read_only=True) as conn:
        assert cached == conn.execute("select count(*) from llm_cache").fetchall()[0][0], "shard answers absorbed"
    assert kinds["teacher_labels"] == kinds["student_labels"] == "VIEW" and report > 0
    assert not list((Path(store.url) / "llm_cache").glob("*.parquet")), "absorbed files are removed"
