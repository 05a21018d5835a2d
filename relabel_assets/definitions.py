"""The code location: assets, checks, job, sensor and resources (``dagster dev -w workspace.yaml``)."""

import dagster as dg  # noqa: E402

from relabel import paths  # noqa: E402
from relabel_assets import baseline, corpus, evaluation, queries, retrieval, student, teacher  # noqa: E402
from relabel_assets.checks import incremental_checks, table_checks  # noqa: E402
from relabel_assets.incremental import GROUP as INCREMENTAL_GROUP  # noqa: E402
from relabel_assets.incremental import INCREMENTAL_ASSETS  # noqa: E402
from relabel_assets.partitions import inbox_batches  # noqa: E402
from relabel_assets.scale_out import executor_for, phase_jobs  # noqa: E402
from relabel_assets.sql_models import sql_assets  # noqa: E402
from resources.llm import LLMGateway  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.settings import PipelineSettings  # noqa: E402
from resources.warehouse import WarehouseResource  # noqa: E402
from sensors.inbox import build_inbox_sensor  # noqa: E402
from sensors.retrain import build_retrain_sensor  # noqa: E402


def pipeline_assets(shards: int = 1) -> list[dg.AssetsDefinition]:
    """The full pipeline's assets; with ``shards`` > 1 the two label assets are partitioned by shard."""
    return [
        corpus.seed_corpus,
        queries.synthetic_queries,
        retrieval.bm25_index,
        retrieval.candidate_pools,
        teacher.build_teacher_labels(shards),
        *sql_assets(),
        student.student_checkpoint,
        student.build_student_labels(shards),
        evaluation.human_benchmark,
        evaluation.agreement_report,
        baseline.baseline_imports,
    ]


ALL_ASSETS = pipeline_assets()

relabel_job = dg.define_asset_job(
    "relabel_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(INCREMENTAL_GROUP),
    description="Every asset and check of the full pipeline, from seed documents to the agreement report.",
)

incremental_relabel_job = dg.define_asset_job(
    "incremental_relabel_job",
    selection=dg.AssetSelection.groups(INCREMENTAL_GROUP),
    partitions_def=inbox_batches,
    executor_def=dg.in_process_executor,  # a batch is small: one process, no per-step start-up
    description="One inbox batch: new document versions, BM25 update, queries, new pairs, teacher sample, "
    "student labels, relevance_labels.",
)

student_retrain_job = dg.define_asset_job(
    "student_retrain_job",
    selection=dg.AssetSelection.assets("training_set", "student_checkpoint"),
    description="Retrain the student on the training set (full-pipeline and inbox teacher labels).",
)


def default_resources() -> dict[str, object]:
    """Resources from the environment: DuckDB file, LLM gateway, model store, settings. Building them creates
    no file or folder, so importing the code location has no side effect."""
    return {
        "duckdb": WarehouseResource(database=str(paths.duckdb_path(create=False))),
        "llm": LLMGateway.from_env(),
        "model_store": ModelStore(root=str(paths.data_dir(create=False) / "artifacts")),
        "settings": PipelineSettings.from_env(),
    }


def build_definitions(
    resources: dict[str, object] | None = None,
    sensor_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.Definitions:
    """Definitions with the given resources (tests pass their own); the sensors start in ``sensor_status``. The
    settings resource decides the shards of the label assets (``RELABEL_SHARDS``) and the executor of every job
    but the inbox batches' (``RELABEL_EXECUTOR``); with shards, ``relabel run`` runs the phase jobs in order."""
    resources = resources or default_resources()
    settings = resources["settings"]
    assert isinstance(settings, PipelineSettings)
    sharded_jobs = phase_jobs() if settings.shards > 1 else []
    return dg.Definitions(
        assets=[*pipeline_assets(settings.shards), *INCREMENTAL_ASSETS],
        asset_checks=[*table_checks(), *incremental_checks(), baseline.current_labels_equal_the_full_pipelines],
        jobs=[relabel_job, incremental_relabel_job, student_retrain_job, *sharded_jobs],
        executor=executor_for(settings),
        sensors=[
            build_inbox_sensor(incremental_relabel_job.name, default_status=sensor_status),
            build_retrain_sensor(student_retrain_job.name, default_status=sensor_status),
        ],
        resources=resources,
    )


defs = build_definitions()
