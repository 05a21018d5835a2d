"""Scale-out: the executor ``RELABEL_EXECUTOR`` chooses for the pipeline's jobs, and, when the label assets are
sharded (``RELABEL_SHARDS`` > 1), the phase jobs that ``relabel run`` runs in order: unpartitioned assets in one
run, each label asset as one run per shard (concurrent unless the executor is in-process). The Dagster UI
needs none of this: *Materialize all* over partitioned and unpartitioned assets is an asset backfill, which
the daemon runs in dependency order."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from relabel.shard_store import shard_keys
from relabel_assets.incremental import GROUP as INCREMENTAL_GROUP
from resources.settings import PipelineSettings

EXECUTORS = ("in_process", "multiprocess", "dask")
# (job, the sharded asset it materializes one run per shard, or None for one unpartitioned run)
PHASES: tuple[tuple[str, str | None], ...] = (
    ("relabel_prepare_job", None),
    ("teacher_shards_job", "teacher_labels"),
    ("relabel_train_job", None),
    ("student_shards_job", "student_labels"),
    ("relabel_finish_job", None),
)


# run config of Dagster's default executor that runs every step in the run's process
IN_PROCESS_RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}


def executor_for(settings: PipelineSettings) -> dg.ExecutorDefinition | None:
    """``in_process`` (the default): Dagster's default executor, which ``relabel run`` runs in process and the
    launchpad can set to ``in_process`` or ``multiprocess`` per run (None: the Definitions keep it);
    ``multiprocess``: a process per step; ``dask``: steps on the Dask cluster at ``RELABEL_DASK_SCHEDULER``
    (e.g. ``tcp://scheduler:8786``; without it a LocalCluster per run)."""
    if settings.executor == "in_process":
        return None
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    if settings.executor == "dask":
        from relabel_assets.dask_executor import relabel_dask_executor

        cluster = {"existing": {"address": settings.dask_scheduler}} if settings.dask_scheduler else {"local": {}}
        return relabel_dask_executor.configured({"cluster": cluster}, name="dask")
    raise ValueError(f"RELABEL_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {settings.executor!r}")


def phase_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """The phase jobs of a sharded pipeline, in ``PHASES`` order."""
    full = dg.AssetSelection.all() - dg.AssetSelection.groups(INCREMENTAL_GROUP)
    teacher, student = dg.AssetSelection.assets("teacher_labels"), dg.AssetSelection.assets("student_labels")
    selections = {
        "relabel_prepare_job": full & (teacher.upstream() - teacher),
        "teacher_shards_job": teacher,
        "relabel_train_job": full & (student.upstream() - student - teacher.upstream()),
        "student_shards_job": student,
        "relabel_finish_job": full - student.upstream(),
    }
    return [
        dg.define_asset_job(name, selection=selections[name], description=f"phase {i + 1} of a sharded relabel run")
        for i, (name, _) in enumerate(PHASES)
    ]


def run_phases(
    module: str,
    instance: dg.DagsterInstance,
    settings: PipelineSettings,
    log: Callable[[str], Any] = print,
    attribute: str = "defs",
) -> list[dg.JobExecutionResult]:
    """Run the phase jobs of the code location ``module`` (its ``attribute`` Definitions) with their configured
    executor; a sharded phase launches one run per shard, concurrently unless the executor is in-process. Stops
    after the first phase with a failed run; returns every run's result."""
    repository = ReconstructableRepository.for_module(module, attribute)
    run_config = IN_PROCESS_RUN_CONFIG if settings.executor == "in_process" else None
    results: list[dg.JobExecutionResult] = []
    for name, sharded in PHASES:
        job = repository.get_reconstructable_job(name)
        if sharded is None:
            phase = [dg.execute_job(job, instance, run_config=run_config)]
        else:
            keys = shard_keys(settings.shards)

            def launch(key: str, job: Any = job) -> dg.JobExecutionResult:
                return dg.execute_job(job, instance, run_config=run_config, tags={"dagster/partition": key})

            workers = 1 if settings.executor == "in_process" else len(keys)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                phase = list(pool.map(launch, keys))
        log(f"{name}: {sum(r.success for r in phase)}/{len(phase)} run(s) succeeded")
        results.extend(phase)
        if not all(r.success for r in phase):
            break
    return results
