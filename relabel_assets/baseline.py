"""baseline_imports: the end of ``relabel_job`` makes the incremental tables (``document_versions``,
``label_queries``, ``label_pairs``, ``relevance_labels``) agree with the full pipeline's tables."""

import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.incremental import label_store
from relabel_assets.common import WRITER_POOL, column_schema, ensure_label_views, guard_full_rebuild
from resources.settings import PipelineSettings


@dg.asset(
    deps=["student_labels", "teacher_labels", "candidate_pools", "synthetic_queries", "seed_corpus"],
    kinds={"duckdb", "python"},
    pool=WRITER_POOL,
    group_name="labeling",
)
def baseline_imports(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """The full pipeline's documents, queries, pools and labels become the incremental baseline: imported
    the first time; on a later ``relabel_job`` re-imported so that ``relevance_labels`` equals the rebuilt
    baseline (what differs is retired with reason ``rebootstrap``, nothing deleted). After inbox batches this
    happens only with ``RELABEL_REBOOTSTRAP=1`` (otherwise the run stopped at its first asset). One row per
    import that changed anything."""
    started = time.perf_counter()
    now = pd.Timestamp.now()
    pending = guard_full_rebuild(duckdb, settings.rebootstrap, "baseline_imports")
    ensure_label_views(duckdb, settings)
    with duckdb.get_connection() as conn:
        label_store.ensure_tables(conn)
        conn.execute("begin transaction")
        if not conn.execute("select count(*) from document_versions").fetchall()[0][0]:
            label_store.import_baseline(conn, now)
            import_id, figures = label_store.BASELINE_BATCH, {"documents_changed": -1}
        else:
            import_id = pending or f"baseline-{now.strftime('%Y%m%dT%H%M%S%f')}"
            figures = label_store.reimport_baseline(conn, import_id, now)
        changed = pending is not None or any(v for k, v in figures.items() if k != "labels_kept")
        if changed:
            conn.execute(
                "insert into baseline_imports (import_id, status, requested_at) values (?, 'pending', ?) "
                "on conflict do nothing",
                [import_id, now],
            )
            conn.execute(
                "update baseline_imports set status = 'done', completed_at = ?, documents_changed = ?, "
                "queries_added = ?, queries_retired = ?, labels_added = ?, labels_retired = ?, detail = ? "
                "where import_id = ?",
                [
                    now,
                    figures.get("documents_changed"),
                    figures.get("queries_added"),
                    figures.get("queries_retired"),
                    figures.get("labels_added"),
                    figures.get("labels_retired"),
                    "first import" if import_id == label_store.BASELINE_BATCH else "re-bootstrap",
                    import_id,
                ],
            )
        conn.execute("commit")
        rows = conn.execute("select count(*) from baseline_imports").fetchall()[0][0]
        current = conn.execute("select count(*) from relevance_labels where retired_at is null").fetchall()[0][0]
    return dg.MaterializeResult(
        metadata={
            "import_id": dg.MetadataValue.text(import_id),
            "changed": dg.MetadataValue.bool(changed),
            **{k: dg.MetadataValue.int(int(v)) for k, v in figures.items()},
            "current_labels": dg.MetadataValue.int(int(current)),
            "dagster/row_count": dg.MetadataValue.int(int(rows)),
            "dagster/column_schema": column_schema(duckdb, "baseline_imports"),
            "elapsed_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        }
    )


@dg.asset_check(asset=baseline_imports, blocking=True, pool=WRITER_POOL)
def current_labels_equal_the_full_pipelines(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Right after the import, the current labels are exactly the full pipeline's pool labels (the teacher's
    where it graded the pair, the student's otherwise): no second, diverging label set."""
    with duckdb.get_connection() as conn:
        gap = label_store.baseline_divergence(conn)
    return dg.AssetCheckResult(
        passed=gap["missing"] == 0 and gap["extra"] == 0,
        description=f"{gap['missing']} baseline labels missing, {gap['extra']} current labels not in the baseline",
        metadata={k: dg.MetadataValue.int(v) for k, v in gap.items()},
    )
