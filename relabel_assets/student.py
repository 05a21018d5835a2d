"""student_checkpoint and student_labels: the distilled student and its labels."""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.shard_store import in_shard
from relabel.student import load_student, model_card, pair_text, train_student
from relabel.warehouse import read_table
from relabel_assets.common import (
    PAIRS_TABLE,
    WRITER_POOL,
    ShardWork,
    shard_partitions,
    write_asset_table,
    write_label_shard,
)
from relabel_assets.run_config import StudentCheckpointConfig, positive
from resources.model_store import ModelStore
from resources.settings import PipelineSettings


@dg.asset(deps=["training_set"], kinds={"duckdb", "pytorch"}, pool=WRITER_POOL, group_name="student")
def student_checkpoint(
    context: dg.AssetExecutionContext,
    config: StudentCheckpointConfig,
    duckdb: DuckDBResource,
    settings: PipelineSettings,
    model_store: ModelStore,
) -> dg.MaterializeResult:
    """The student distilled from the teacher's grades in ``training_set`` (recipe from settings or the
    launchpad: MiniLM-L6 bi-encoder by default, a MiniLM-L6 cross-encoder, or a small causal LM fine-tuned with
    trl; epochs, base model and init-from likewise); saved in Hugging Face format with a model card, registered
    with path, hash, base model, recipe, epochs, parent, thresholds and training history."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        rows = read_table(conn, "training_set")
    data_hash = str(pd.util.hash_pandas_object(rows, index=False).sum())
    try:
        student = settings.student_config(
            recipe=config.recipe,
            epochs=positive("epochs", config.epochs),
            base_model=config.base_model,
            init_from=config.init_from,
        )
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    staging = model_store.staging_dir("student")
    meta = train_student(rows.to_dict("records"), student, staging)
    teacher_id = ",".join(sorted(rows["teacher_id"].unique()))
    (staging / "README.md").write_text(model_card(meta, teacher_id, data_hash))
    path, digest = model_store.commit("student", staging)
    context.log.info(f"student saved to {path}")
    recipe = f"cross-encoder/{student.objective}" if student.recipe == "cross-encoder" else student.recipe
    frame = pd.DataFrame(
        [
            {
                "checkpoint_id": digest[:16],
                "path": str(path),
                "sha256": digest,
                "base_model": meta["base_model"],
                "recipe": recipe,
                "epochs": student.epochs,
                "init_from": student.init_from or None,
                "teacher_id": teacher_id,
                "parent_sha256": (meta.get("parent") or {}).get("sha256"),
                "training_rows": len(rows),
                "training_data_hash": data_hash,
                "metrics": json.dumps(meta["history"]),
                "thresholds": json.dumps(meta["thresholds"]),
                "created_at": pd.Timestamp.now(),
            }
        ]
    )
    losses = [h["train_loss"] for h in meta["history"] if "train_loss" in h]
    return write_asset_table(
        duckdb,
        "student_checkpoint",
        frame,
        started,
        path=dg.MetadataValue.path(str(path)),
        recipe=dg.MetadataValue.text(recipe),
        epochs=dg.MetadataValue.int(student.epochs),
        base_model=dg.MetadataValue.text(str(meta["base_model"])),
        init_from=dg.MetadataValue.text(student.init_from or "none"),
        training_history=dg.MetadataValue.json(meta["history"]),
        final_train_loss=dg.MetadataValue.float(round(losses[-1] if losses else float("nan"), 5)),
    )


def build_student_labels(shards: int = 1) -> dg.AssetsDefinition:
    """The ``student_labels`` asset: unpartitioned with one shard, else one partition per shard (the warehouse
    read-only, the shard's Parquet file written)."""

    @dg.asset(
        name="student_labels",
        deps=["student_checkpoint", PAIRS_TABLE],
        kinds={"duckdb", "pytorch", "parquet"},
        pool=WRITER_POOL if shards == 1 else None,
        partitions_def=shard_partitions(shards),
        group_name="student",
    )
    def _student_labels(
        context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings
    ) -> dg.MaterializeResult:
        """The student's grade, expected grade and grade probabilities for every candidate-pool pair and every
        human-judged pair, written as Parquet shards that DuckDB reads through a view named ``student_labels``.
        Metadata: labels per second and the USD of the labeling time at ``hourly_rate_usd``."""
        started = time.perf_counter()
        with ShardWork(context, duckdb, settings, "student_labels") as work:
            checkpoint = work.conn.execute(
                "select checkpoint_id, path from student_checkpoint order by created_at desc limit 1"
            ).df()
            pairs = in_shard(read_table(work.conn, PAIRS_TABLE), work.shard, work.shards).rename(
                columns={"text": "doc_text"}
            )
            labeler = load_student(Path(checkpoint["path"].iloc[0]), batch_size=settings.student_batch_size)
            label_started = time.perf_counter()
            scores, grades, probabilities = labeler.predict_with_probabilities(
                pairs["query_text"].tolist(), [pair_text(r) for r in pairs.to_dict("records")]
            )
            seconds = time.perf_counter() - label_started
            frame = pairs[["pair_source", "qid", "doc_id"]].assign(
                labeler_id=f"student:{checkpoint['checkpoint_id'].iloc[0]}",
                status="ok",
                grade=grades,
                expected_grade=scores,
                **{f"p{g}": probabilities[:, g] for g in range(4)},
                latency_s=seconds / max(len(pairs), 1),
            )
            work.write("student_labels", frame)
        return write_label_shard(
            work,
            frame,
            started,
            labels_per_s=dg.MetadataValue.float(round(len(pairs) / max(seconds, 1e-9), 1)),
            usd=dg.MetadataValue.float(round(seconds * settings.hourly_rate_usd / 3600.0, 8)),
            student_checkpoint=dg.MetadataValue.text(str(checkpoint["checkpoint_id"].iloc[0])),
            grade_distribution=dg.MetadataValue.json(pd.Series(grades).value_counts().sort_index().to_dict()),
        )

    return _student_labels


student_labels = build_student_labels()
