"""Run-time choices (launchpad config) and what the asset pages show: column schema, row count, headline figures."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from relabel.evaluation.report import headline_kappas
from relabel.teacher.grading import DEFAULT_GRADE_PROMPT
from relabel_assets.checks import table_checks
from relabel_assets.definitions import ALL_ASSETS
from relabel_assets.queries import synthetic_queries
from relabel_assets.run_config import StudentCheckpointConfig, SyntheticQueriesConfig, TeacherLabelsConfig
from relabel_assets.student import student_checkpoint
from relabel_assets.teacher import teacher_labels
from tests import scripted_llm
from tests.conftest import ASSET_NAMES, scripted_resources, write_tiny_corpus, write_tiny_judgments


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], dg.ExecuteInProcessResult]:
    """The whole graph materialized once on the tiny corpus (one student epoch), and that run's result."""
    root = tmp_path_factory.mktemp("run_config")
    corpus = write_tiny_corpus(root / "corpus")
    resources = scripted_resources(root, corpus, write_tiny_judgments(root / "judgments", corpus), student_epochs=1)
    result = dg.materialize([*ALL_ASSETS, *table_checks()], resources=resources)
    assert result.success
    return resources, result


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    """The values of an asset's (last) materialization metadata in a run."""
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[-1].metadata.items()}


def teacher_rows(resources: dict[str, object]) -> list[tuple]:
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        return conn.execute(
            "select distinct model, prompt_id, labeler_id, samples, run_id from teacher_labels order by 1"
        ).fetchall()


def grade(resources: dict[str, object], config: TeacherLabelsConfig) -> tuple[dg.ExecuteInProcessResult, int]:
    """Materialize teacher_labels alone with ``config``; the result and the LLM calls it made."""
    scripted_llm.calls.clear()
    result = dg.materialize([teacher_labels], resources=resources, run_config=dg.RunConfig({"teacher_labels": config}))
    assert result.success
    return result, len(scripted_llm.calls)


@pytest.mark.integration
def test_every_table_asset_shows_columns_row_count_and_its_headline_figure(warehouse) -> None:
    resources, result = warehouse
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        for asset in sorted(ASSET_NAMES):
            meta = metadata(result, asset)
            schema = meta["dagster/column_schema"]
            columns = conn.execute(
                "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
                [asset],
            ).fetchall()
            assert [c.name for c in schema.columns] == [c for (c,) in columns], asset
            assert all(c.type for c in schema.columns), asset
            rows = conn.execute(f'select count(*) from "{asset}"').fetchall()[0][0]
            assert meta["dagster/row_count"] == rows, asset
    teacher = metadata(result, "teacher_labels")
    assert teacher["teacher_model"] == "scripted/overlap" and teacher["prompt_id"] == DEFAULT_GRADE_PROMPT
    assert teacher["samples"] == 1 and teacher["llm_calls"] > 0
    assert teacher["labels_per_s"] > 0 and teacher["usd"] >= 0
    student = metadata(result, "student_labels")
    assert student["labels_per_s"] > 0 and student["usd"] > 0
    report = metadata(result, "agreement_report")
    for figure in ("teacher_kappa", "student_kappa", "student_teacher_kappa", "cascade_kappa"):
        assert isinstance(report[figure], float), figure
        assert -1.0 <= report[figure] <= 1.0, (figure, report[figure])
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        table = conn.execute("select * from agreement_report").df()
    assert report["teacher_kappa"] == pytest.approx(
        table[(table.role == "teacher") & (table.reference == "human")]["cohen_kappa"].iloc[0], abs=1e-4
    )


@pytest.mark.unit
def test_headline_kappas_take_each_roles_first_labeler() -> None:
    import pandas as pd

    table = pd.DataFrame(
        [
            {"labeler_id": "teacher:b", "role": "teacher", "reference": "human", "cohen_kappa": 0.2},
            {"labeler_id": "teacher:a", "role": "teacher", "reference": "human", "cohen_kappa": 0.5},
            {"labeler_id": "student:x", "role": "student", "reference": "human", "cohen_kappa": 0.3},
            {"labeler_id": "student:x", "role": "student", "reference": "teacher:a", "cohen_kappa": 0.7},
            {"labeler_id": "imported:y", "role": "imported", "reference": "other", "cohen_kappa": 0.9},
        ]
    )
    assert headline_kappas(table) == {"teacher_kappa": 0.5, "student_kappa": 0.3, "student_teacher_kappa": 0.7}
    assert headline_kappas(pd.DataFrame()) == {}


@pytest.mark.integration
def test_another_teacher_from_run_config_re_asks_exactly_the_pairs_whose_cache_key_changed(warehouse) -> None:
    resources, first = warehouse
    pairs = metadata(first, "teacher_labels")["dagster/row_count"]
    first_rows = teacher_rows(resources)
    assert [(m, p, lab, s) for m, p, lab, s, _ in first_rows] == [
        ("scripted/overlap", DEFAULT_GRADE_PROMPT, "teacher:scripted/overlap", 1)
    ]

    other, calls = grade(resources, TeacherLabelsConfig(model="scripted/second-opinion"))
    assert calls == pairs, "another model: every pair's cache key changed, each is asked once"
    meta = metadata(other, "teacher_labels")
    assert meta["teacher_model"] == "scripted/second-opinion" and meta["llm_calls"] == pairs
    rows = teacher_rows(resources)
    assert [(m, lab, s, run) for m, _, lab, s, run in rows] == [
        ("scripted/second-opinion", "teacher:scripted/second-opinion", 1, other.run_id)
    ], "the label rows record the teacher and the run that chose it"
    assert other.run_id != first_rows[0][4]

    back, calls = grade(resources, TeacherLabelsConfig())
    assert calls == 0, "back to the configured teacher: every answer is in the cache"
    assert metadata(back, "teacher_labels")["teacher_model"] == "scripted/overlap"

    # forget a third of the second teacher's answers: exactly those pairs are asked again
    with duckdb.connect(resources["duckdb"].database) as conn:
        forgotten = conn.execute(
            "delete from llm_cache where model = 'scripted/second-opinion' and prompt_id = ? "
            "and cache_key in (select cache_key from llm_cache where model = 'scripted/second-opinion' "
            "order by cache_key limit ?) returning cache_key",
            [DEFAULT_GRADE_PROMPT, pairs // 3],
        ).fetchall()
    again, calls = grade(resources, TeacherLabelsConfig(model="scripted/second-opinion"))
    assert calls == len(forgotten) == pairs // 3
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        asked = conn.execute(
            "select cache_key from llm_calls where model = 'scripted/second-opinion' "
            "group by cache_key having count(*) = 2"
        ).fetchall()
    assert sorted(asked) == sorted(forgotten)

    prompt, calls = grade(resources, TeacherLabelsConfig(prompt_id="grade_one_digit", samples=2))
    assert calls == 2 * pairs, "another prompt and two samples: two new keys per pair"
    meta = metadata(prompt, "teacher_labels")
    assert (meta["prompt_id"], meta["samples"], meta["teacher_model"]) == ("grade_one_digit", 2, "scripted/overlap")
    assert {(m, p, lab, s) for m, p, lab, s, _ in teacher_rows(resources)} == {
        ("scripted/overlap", "grade_one_digit", "ensemble:teacher:scripted/overlap", 2)
    }


@pytest.mark.integration
def test_an_unknown_prompt_or_recipe_fails_with_the_known_ones(warehouse) -> None:
    resources, _ = warehouse
    result = dg.materialize(
        [teacher_labels],
        resources=resources,
        run_config=dg.RunConfig({"teacher_labels": TeacherLabelsConfig(prompt_id="grade_typo")}),
        raise_on_error=False,
    )
    assert not result.success
    assert "unknown prompt 'grade_typo': use one of grade_nist, grade_one_digit" in str(
        result.failure_data_for_node("teacher_labels").error
    )
    result = dg.materialize(
        [student_checkpoint],
        resources=resources,
        run_config=dg.RunConfig({"student_checkpoint": StudentCheckpointConfig(recipe="gbdt")}),
        raise_on_error=False,
    )
    assert not result.success
    assert "unknown student recipe 'gbdt'" in str(result.failure_data_for_node("student_checkpoint").error)


@pytest.mark.integration
def test_student_and_query_choices_are_recorded(warehouse) -> None:
    resources, _ = warehouse
    result = dg.materialize(
        [student_checkpoint],
        resources=resources,
        run_config=dg.RunConfig({"student_checkpoint": StudentCheckpointConfig(epochs=2)}),
    )
    meta = metadata(result, "student_checkpoint")
    assert (meta["recipe"], meta["epochs"], meta["init_from"]) == ("bi-encoder", 2, "none")
    first_path = meta["path"]
    result = dg.materialize(
        [student_checkpoint],
        resources=resources,
        run_config=dg.RunConfig({"student_checkpoint": StudentCheckpointConfig(epochs=1, init_from=first_path)}),
    )
    meta = metadata(result, "student_checkpoint")
    assert (meta["epochs"], meta["init_from"]) == (1, first_path)
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        latest = conn.execute(
            "select recipe, epochs, init_from, parent_sha256 from student_checkpoint order by created_at desc limit 1"
        ).fetchall()[0]
    assert latest[:3] == ("bi-encoder", 1, first_path) and latest[3], "the parent checkpoint is recorded"

    scripted_llm.calls.clear()
    result = dg.materialize(
        [synthetic_queries],
        resources=resources,
        run_config=dg.RunConfig({"synthetic_queries": SyntheticQueriesConfig(queries_per_doc=1)}),
    )
    meta = metadata(result, "synthetic_queries")
    assert meta["queries_per_doc"] == 1 and meta["dagster/row_count"] == 6
    assert len(scripted_llm.calls) == 6, "one query per document is another prompt: each document is asked again"
