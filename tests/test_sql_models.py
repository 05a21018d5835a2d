"""dbt_like_sql: upstream tables parsed from SQL, code versions, and the asset built from a file."""

from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, materialize
from dagster_duckdb import DuckDBResource

from relabel.sql_models import discover_sql_models, load_sql_model, upstream_tables
from relabel_assets.sql_models import build_sql_asset, sql_models_dir

pytestmark = pytest.mark.unit


def test_upstream_tables_exclude_ctes() -> None:
    sql = "with a as (select * from teacher_labels) select * from a join seed_corpus s on a.doc_id = s.doc_id"
    assert upstream_tables(sql) == ("seed_corpus", "teacher_labels")


@pytest.mark.parametrize("sql", ["delete from t", "create table x as select 1", "select 1; select 2", "selec oops"])
def test_only_single_select_statements(sql: str) -> None:
    with pytest.raises(ValueError):
        upstream_tables(sql)


def test_training_set_model_reads_its_upstream() -> None:
    models = {m.name: m for m in discover_sql_models(sql_models_dir())}
    assert models["training_set"].upstream == ("inbox_teacher_labels", "pairs_to_grade", "teacher_labels")
    pair_sources = ("candidate_pools", "human_benchmark", "seed_corpus", "synthetic_queries")
    assert models["pairs_to_grade"].upstream == pair_sources
    assert (models["pairs_to_grade"].group, models["training_set"].group) == ("labeling", "training")


def test_group_comment_names_the_asset_group(tmp_path: Path) -> None:
    path = tmp_path / "recent.sql"
    path.write_text("-- recent orders\n-- group: orders\nselect id from orders")
    assert load_sql_model(path).group == "orders"
    path.write_text("select id from orders -- group: ignored? no: only a comment line counts")
    assert load_sql_model(path).group == "training"
    assert build_sql_asset(load_sql_model(tmp_path / "recent.sql")).group_names_by_key[AssetKey("recent")] == "training"


def test_editing_a_file_changes_code_version_and_asset(tmp_path: Path) -> None:
    path = tmp_path / "big_orders.sql"
    path.write_text("select id from orders where amount > 10")
    before = load_sql_model(path)
    path.write_text("select id from orders where amount > 100")
    after = load_sql_model(path)
    assert before.code_version != after.code_version
    asset = build_sql_asset(after)
    assert asset.code_versions_by_key[AssetKey("big_orders")] == after.code_version
    assert {k.to_user_string() for k in asset.asset_deps[AssetKey("big_orders")]} == {"orders"}

    db = str(tmp_path / "w.duckdb")
    with duckdb.connect(db) as conn:
        conn.execute("create table orders as select * from (values (1, 50), (2, 500)) t(id, amount)")
    result = materialize([asset], resources={"duckdb": DuckDBResource(database=db)}, selection=["big_orders"])
    assert result.success
    with duckdb.connect(db, read_only=True) as conn:
        assert conn.execute("select id from big_orders").fetchall() == [(2,)]
