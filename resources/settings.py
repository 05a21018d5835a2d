"""Pipeline settings: where documents and judgments come from and the size of each stage."""

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from relabel import paths
from relabel.evaluation.cost import DEFAULT_HOURLY_RATE_USD
from relabel.evaluation.judgments import DEMO, demo_corpus_dir
from relabel.llm.prompts import MAX_DOC_CHARS
from relabel.models import minilm_dir
from relabel.shard_store import LabelStore
from relabel.student import StudentConfig
from relabel.teacher.grading import DEFAULT_GRADE_PROMPT


def env_var(field_name: str) -> str:
    """The environment variable of a setting: ``RELABEL_`` + the field name in capitals."""
    return f"RELABEL_{field_name.upper()}"


class PipelineSettings(dg.ConfigurableResource):
    """Knobs of the labeling pipeline: one field (and default) per setting; ``from_env`` reads each from
    ``env_var(field)``. docs/configuration.md documents every one (a test keeps the two in step)."""

    data_dir: str
    corpus_dir: str = DEMO
    inbox_dir: str = ""
    judgments: str = DEMO
    judgments_max_pairs: int = 64
    queries_per_doc: int = 1
    bm25_negatives: int = 2
    random_negatives: int = 1
    max_doc_chars: int = MAX_DOC_CHARS
    # bytes read of one document file; the rest is hashed, not kept, and the document is marked truncated
    max_doc_bytes: int = 1 << 20
    seed: int = 13
    teacher_runs: list[str] = []
    # grading prompt of the teacher: a file stem of relabel/llm/prompt_files
    teacher_prompt_id: str = DEFAULT_GRADE_PROMPT
    student_recipe: str = "bi-encoder"
    student_objective: str = "soft"
    student_base_model: str = ""
    student_epochs: int = 3
    student_max_length: int = 256
    student_max_steps: int = 300
    student_lora_r: int = 0
    student_init_from: str = ""
    # incremental relabeling (inbox batches)
    staging_table: str = "inbox_staging"
    incremental_top_k: int = 5
    teacher_sample_rate: float = 0.2
    # which new pairs the teacher grades: "random" or "uncertainty" (the student's least sure pairs; variant
    # "entropy" or "margin"), keeping teacher_random_slice of the teacher budget random (unbiased agreement)
    teacher_routing: str = "random"
    teacher_uncertainty: str = "entropy"
    teacher_random_slice: float = 0.1
    bm25_update: str = "incremental"
    # a changed document's query is retired when the new version covers less than this share of its stemmed
    # content words (and less than the old version did)
    query_fit_min_coverage: float = 0.5
    # relabel_job after inbox batches: refuse (False) or rebuild and re-bootstrap relevance_labels (True)
    rebootstrap: bool = False
    # with recorded teacher runs: pairs no run covers go to the LLM teacher ("llm") or stay ungraded ("none")
    teacher_runs_fallback: str = "none"
    retrain_min_teacher_labels: int = 50
    retrain_min_agreement: float = 0.4
    retrain_min_compared_pairs: int = 20
    # USD per machine-hour for local models and the student in the cost table (an assumption, stated in the
    # report): 0.10 is roughly a 2-core CPU VM
    hourly_rate_usd: float = DEFAULT_HOURLY_RATE_USD
    # scale-out (docs/scale.md): teacher_labels and student_labels split into this many shards by a hash of the
    # query id (1 = unpartitioned assets, as in the demo); each shard writes Parquet under label_store_url
    shards: int = 1
    # where the label shards live: a folder or any fsspec URL (s3://, gs://); empty = <data dir>/label_store
    label_store_url: str = ""
    # how a run's steps execute: in_process, multiprocess or dask (the cluster at dask_scheduler)
    executor: str = "in_process"
    dask_scheduler: str = ""
    # student inference batch: 0 = the recipe's default on CPU, sized from free GPU memory on a GPU
    student_batch_size: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "PipelineSettings":
        """The field defaults, each overridable by its environment variable ``RELABEL_<FIELD NAME>`` (see
        ``env_var``; list fields take comma-separated values); pydantic converts and validates the strings."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            "data_dir": str(paths.data_dir(create=False)),
            "inbox_dir": str(paths.inbox_dir(create=False)),
        }
        for name, field in cls.model_fields.items():
            raw = environ.get(env_var(name))
            if raw is None or name in values or (not raw.strip() and field.annotation is not str):
                continue  # unset (an empty value leaves a number, flag or list at its default)
            values[name] = [p.strip() for p in raw.split(",") if p.strip()] if field.annotation == list[str] else raw
        return cls(**values)

    def label_store(self) -> LabelStore:
        """The shard files of the label tables (``label_store_url``, default ``<data dir>/label_store``)."""
        return LabelStore(self.label_store_url or str(Path(self.data_dir) / "label_store"))

    def corpus_path(self) -> Path:
        """Folder of seed documents (the bundled demo corpus by default)."""
        return demo_corpus_dir() if self.corpus_dir == DEMO else Path(self.corpus_dir)

    def inbox_path(self) -> Path:
        """Folder the inbox sensor watches; its files join the corpus."""
        return Path(self.inbox_dir) if self.inbox_dir else Path(self.data_dir) / "inbox"

    def batches_path(self) -> Path:
        """Where the inbox sensor snapshots each batch (manifest and file copies)."""
        return Path(self.data_dir) / "inbox_batches"

    def student_config(
        self,
        recipe: str | None = None,
        epochs: int | None = None,
        base_model: str | None = None,
        init_from: str | None = None,
    ) -> StudentConfig:
        """The student recipe: base weights default to the MiniLM-L6 package (encoders) or the SmolLM2
        GGUF (SLM) unless a local Hugging Face folder or an alias (``mpnet-base``; for the SLM a .gguf) is
        configured. An argument
        given (a run-time choice) replaces its setting; ``None`` keeps the setting."""
        recipe = recipe or self.student_recipe
        default_base = "" if recipe == "slm" else str(minilm_dir())
        if base_model is None:
            # the configured base belongs to the configured recipe: another recipe starts from its own default
            base_model = self.student_base_model if recipe == self.student_recipe else ""
        # the objective is the cross-encoder's; another recipe chosen at run time gets its only objective
        objective = self.student_objective if recipe in (self.student_recipe, "cross-encoder") else "soft"
        return StudentConfig(
            base_model=base_model or default_base,
            recipe=recipe,
            objective=objective,
            epochs=self.student_epochs if epochs is None else epochs,
            max_length=self.student_max_length,
            max_steps=self.student_max_steps,
            lora_r=self.student_lora_r,
            init_from=self.student_init_from if init_from is None else init_from,
            seed=self.seed,
        )
