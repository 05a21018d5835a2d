"""The Dask executor of ``dagster-dask`` with two fixes its 0.29.27 release needs here:

- dask >= 2024.12 parses task arguments into its task spec and iterates every tuple it finds, which a
  ``DagsterRun`` with op-concurrency pools (``pool=``, as every DuckDB writer here has) refuses ("Iteration is
  not allowed on `@record` RunOpConcurrency"): the step's arguments travel in one plain object instead;
- the Dask task key is ``<job>.<step>``, so concurrent runs of one job (a sharded asset: one run per shard)
  collapse into the first run's task (dagster-io/dagster#21418): the key here carries the run id.

Cluster choice, configuration schema and the worker function are dagster-dask's own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, dask_executor, get_dask_resource_requirements, query_on_dask_worker


@dataclass(frozen=True)
class _Step:
    """One step's arguments for ``query_on_dask_worker``, opaque to dask's argument parsing."""

    recon_job: Any
    dagster_run: Any
    run_config: Any
    step_key: str
    instance_ref: Any
    known_state: Any


def _run_step(step: _Step, dependencies: list[Any]) -> list[DagsterEvent]:
    """On a Dask worker: run one step (``dependencies`` only orders the tasks)."""
    return list(
        query_on_dask_worker(
            dependencies,
            step.recon_job,
            step.dagster_run,
            step.run_config,
            [step.step_key],
            step.instance_ref,
            step.known_state,
        )
    )


class RunKeyedDaskExecutor(DaskExecutor):
    """dagster-dask's executor, submitting each step under a run-unique key with its arguments in ``_Step``."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        import dask.distributed
        from dagster._core.errors import raise_execution_interrupts

        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance")
        if self.cluster_type == "existing":
            cluster: Any = self.cluster_configuration["address"]
        elif self.cluster_type == "local":
            cluster = dask.distributed.LocalCluster(**self.build_dict(plan_context.job_name))
        else:  # the job-queue and cloud clusters: dagster-dask's own code path
            yield from super().execute(plan_context, execution_plan)
            return
        run_id = plan_context.dagster_run.run_id
        with dask.distributed.Client(cluster) as client:
            futures: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    dependencies = [futures[k] for step_input in step.step_inputs for k in step_input.dependency_keys]
                    payload = _Step(
                        plan_context.reconstructable_job,
                        plan_context.dagster_run,
                        plan_context.run_config,
                        step.key,
                        plan_context.instance.get_ref(),
                        execution_plan.known_state,
                    )
                    futures[step.key] = client.submit(
                        _run_step,
                        payload,
                        dependencies,
                        key=f"{plan_context.job_name}.{step.key}.{run_id}",
                        resources=get_dask_resource_requirements(step.tags),
                        pure=False,
                    )
            completed = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, completed):
                yield from events


@dg.executor(
    name="dask",
    config_schema=dask_executor.config_schema,
    requirements=dg.multiple_process_executor_requirements(),
)
def relabel_dask_executor(init_context: dg.InitExecutorContext) -> RunKeyedDaskExecutor:
    """Steps on a Dask cluster (``cluster: {existing: {address: tcp://...}}`` or ``{local: {...}}``), one task per
    step keyed by run."""
    ((cluster_type, configuration),) = init_context.executor_config["cluster"].items()
    return RunKeyedDaskExecutor(cluster_type, configuration)
