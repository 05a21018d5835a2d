"""student_retrain_sensor: a student checkpoint marked stale by incremental relabeling is retrained once."""

from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from sensors.inbox import SENSOR_INTERVAL_S

STALE_SQL = """
select r.checkpoint_id, r.stale_reason
from student_checkpoint_registry r
join (select checkpoint_id from student_checkpoint order by created_at desc limit 1) latest using (checkpoint_id)
where r.stale_at is not null
"""


def stale_checkpoint(database: str) -> tuple[str, str] | None:
    """(checkpoint id, reason) when the newest student checkpoint is marked stale; ``None`` otherwise, or when
    the warehouse cannot be read now (it is retried at the next tick)."""
    if not Path(database).exists():
        return None
    try:
        with duckdb.connect(database, read_only=True) as conn:
            rows = conn.execute(STALE_SQL).fetchall()
    except duckdb.Error:
        return None
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def build_retrain_sensor(
    job_name: str, default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING
) -> dg.SensorDefinition:
    """A sensor requesting ``job_name`` (training set + student checkpoint) for each stale checkpoint."""

    @dg.sensor(job_name=job_name, minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=default_status)
    def student_retrain_sensor(
        context: dg.SensorEvaluationContext, duckdb: DuckDBResource
    ) -> dg.RunRequest | dg.SkipReason:
        """Retrain the student when incremental relabeling marked its checkpoint stale (enough new teacher labels,
        or agreement with the teacher fell); labels of the old checkpoint keep its id."""
        stale = stale_checkpoint(duckdb.database)
        if stale is None:
            return dg.SkipReason("the current student checkpoint is not stale")
        checkpoint_id, reason = stale
        return dg.RunRequest(
            run_key=f"retrain-{checkpoint_id}",
            tags={"relabel/stale_checkpoint": checkpoint_id, "relabel/stale_reason": reason[:200]},
        )

    return student_retrain_sensor
