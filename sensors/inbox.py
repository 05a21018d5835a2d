"""inbox_sensor: new or changed files in the inbox directory request a relabeling run."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from relabel import paths
from relabel.documents import SUPPORTED_SUFFIXES


def inbox_signatures(inbox: Path) -> dict[str, str]:
    """``relative path -> size:mtime_ns`` of every candidate document in the inbox."""
    if not inbox.exists():
        return {}
    return {
        p.relative_to(inbox).as_posix(): f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(inbox.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
    }


def changed_files(current: dict[str, str], cursor: str | None) -> list[str]:
    """Files that are new or whose signature differs from the cursor's."""
    seen = json.loads(cursor) if cursor else {}
    return sorted(name for name, signature in current.items() if seen.get(name) != signature)


def build_inbox_sensor(job: dg.JobDefinition | str, inbox: Path | None = None) -> dg.SensorDefinition:
    """A sensor over ``inbox`` (default: ``RELABEL_INBOX_DIR`` or ``<data dir>/inbox``) targeting ``job``."""

    @dg.sensor(
        job_name=job if isinstance(job, str) else job.name,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        """Watch the inbox; new or changed files become one batch and one run of the labeling job."""
        folder = inbox or paths.inbox_dir()
        current = inbox_signatures(folder)
        batch = changed_files(current, context.cursor)
        if not batch:
            return dg.SkipReason(f"no new or changed files in {folder}")
        batch_id = hashlib.sha256(json.dumps({n: current[n] for n in batch}).encode()).hexdigest()[:12]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"inbox-{batch_id}", tags={"relabel/batch": batch_id, "relabel/files": str(len(batch))}
                )
            ],
            cursor=json.dumps(current),
        )

    return inbox_sensor
