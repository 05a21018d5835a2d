"""inbox_sensor: new, changed or deleted inbox files (and staging-table rows) become one batch, registered as
a dynamic partition of ``inbox_batches``, with one run of the incremental relabeling job for it."""

import os
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from relabel.incremental import batches, rules
from relabel_assets.partitions import inbox_batches
from resources.settings import PipelineSettings

SENSOR_INTERVAL_S = int(os.environ.get("RELABEL_SENSOR_INTERVAL_S", "15"))


def read_staging(database: str, table: str) -> dict[str, str] | None:
    """``doc id -> text`` of the staging table (columns ``name``, ``body``), or ``None`` when it cannot be
    read now (no database or table yet, or a run holds the write lock): the staging state is then left as
    it was, so nothing is mistaken for a deletion."""
    if not Path(database).exists():
        return None
    try:
        with duckdb.connect(database, read_only=True) as conn:
            rows = conn.execute(f'select name, body from "{table}" where body is not null').fetchall()
    except duckdb.Error:
        return None
    return {batches.staging_doc_id(str(name)): str(body) for name, body in rows}


def build_inbox_sensor(
    job_name: str, inbox: Path | None = None, default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING
) -> dg.SensorDefinition:
    """A sensor over ``inbox`` (default: the settings' inbox folder) requesting ``job_name`` per batch; it runs
    from the start unless ``default_status`` says otherwise (then it is turned on in the UI)."""

    @dg.sensor(
        job_name=job_name,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=default_status,
    )
    def inbox_sensor(
        context: dg.SensorEvaluationContext, settings: PipelineSettings, duckdb: DuckDBResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Watch the inbox folder and the staging table; each set of new, changed or deleted documents is
        snapshotted as one batch (a dynamic partition) and relabeled incrementally."""
        cursor = batches.InboxCursor.parse(context.cursor)
        folder = inbox or settings.inbox_path()
        files = batches.scan_inbox(folder, cursor.files)
        staged = read_staging(duckdb.database, settings.staging_table)
        staging = cursor.staging if staged is None else {d: rules.text_sha256(t) for d, t in staged.items()}
        file_hashes = {d: s.sha256 for d, s in files.items()}
        changes = batches.diff_hashes(
            file_hashes, {d: s.sha256 for d, s in cursor.files.items()}
        ) + batches.diff_hashes(staging, cursor.staging)
        if not changes:
            return dg.SkipReason(f"no new, changed or deleted documents in {folder} or {settings.staging_table}")
        sequence = batches.next_sequence(cursor.sequence, context.instance.get_dynamic_partitions(inbox_batches.name))
        hashes = {**file_hashes, **staging}
        batch_id = batches.make_batch_id(sequence, changes, hashes)
        sources: dict[str, Path | str] = {d: folder / d.removeprefix(batches.INBOX_PREFIX) for d in files}
        sources.update(staged or {})
        batches.snapshot_batch(settings.batches_path(), batch_id, sequence, changes, hashes, sources)
        counts = {"new": len(changes.added), "changed": len(changes.changed), "deleted": len(changes.deleted)}
        context.log.info(f"batch {batch_id}: {counts}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=batch_id,
                    partition_key=batch_id,
                    tags={"relabel/queue": inbox_batches.name, **{f"relabel/{k}": str(v) for k, v in counts.items()}},
                )
            ],
            dynamic_partitions_requests=[inbox_batches.build_add_request([batch_id])],
            cursor=batches.InboxCursor(sequence, files, staging).dump(),
        )

    return inbox_sensor
