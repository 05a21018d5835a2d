"""Pipeline settings: where documents and judgments come from and the size of each stage."""

import os
from pathlib import Path

import dagster as dg

from relabel import paths
from relabel.benchmarks import DEMO, demo_corpus_dir
from relabel.models import minilm_dir
from relabel.student import StudentConfig


class PipelineSettings(dg.ConfigurableResource):
    """Knobs of the labeling pipeline; ``from_env`` reads the ``RELABEL_*`` environment variables."""

    data_dir: str
    corpus_dir: str = DEMO
    inbox_dir: str = ""
    judgments: str = DEMO
    judgments_max_pairs: int = 64
    queries_per_doc: int = 1
    bm25_negatives: int = 2
    random_negatives: int = 1
    max_doc_chars: int = 500
    # bytes read of one document file; the rest is hashed, not kept, and the document is marked truncated
    max_doc_bytes: int = 1 << 20
    seed: int = 13
    teacher_runs: list[str] = []
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
    # report): 0.10 is roughly a 2-core CPU VM. Read from RELABEL_HOURLY_RATE_USD when the module is imported.
    hourly_rate_usd: float = float(os.environ.get("RELABEL_HOURLY_RATE_USD", "0.10"))

    @classmethod
    def from_env(cls) -> "PipelineSettings":
        """Defaults for the demo, overridable by environment variables."""
        env = os.environ.get
        return cls(
            data_dir=str(paths.data_dir()),
            corpus_dir=env("RELABEL_CORPUS_DIR", DEMO),
            inbox_dir=str(paths.inbox_dir()),
            judgments=env("RELABEL_JUDGMENTS", DEMO),
            judgments_max_pairs=int(env("RELABEL_JUDGMENTS_MAX_PAIRS", "64")),
            queries_per_doc=int(env("RELABEL_QUERIES_PER_DOC", "1")),
            bm25_negatives=int(env("RELABEL_BM25_NEGATIVES", "2")),
            random_negatives=int(env("RELABEL_RANDOM_NEGATIVES", "1")),
            max_doc_chars=int(env("RELABEL_MAX_DOC_CHARS", "500")),
            max_doc_bytes=int(env("RELABEL_MAX_DOC_BYTES", str(1 << 20))),
            teacher_runs=[p for p in env("RELABEL_TEACHER_RUNS", "").split(",") if p.strip()],
            student_recipe=env("RELABEL_STUDENT_RECIPE", "bi-encoder"),
            student_objective=env("RELABEL_STUDENT_OBJECTIVE", "soft"),
            student_base_model=env("RELABEL_STUDENT_BASE_MODEL", ""),
            student_epochs=int(env("RELABEL_STUDENT_EPOCHS", "3")),
            student_max_steps=int(env("RELABEL_STUDENT_MAX_STEPS", "300")),
            student_lora_r=int(env("RELABEL_STUDENT_LORA_R", "0")),
            student_init_from=env("RELABEL_STUDENT_INIT_FROM", ""),
            staging_table=env("RELABEL_STAGING_TABLE", "inbox_staging"),
            incremental_top_k=int(env("RELABEL_INCREMENTAL_TOP_K", "5")),
            teacher_sample_rate=float(env("RELABEL_TEACHER_SAMPLE_RATE", "0.2")),
            teacher_routing=env("RELABEL_TEACHER_ROUTING", "random"),
            teacher_uncertainty=env("RELABEL_TEACHER_UNCERTAINTY", "entropy"),
            teacher_random_slice=float(env("RELABEL_TEACHER_RANDOM_SLICE", "0.1")),
            bm25_update=env("RELABEL_BM25_UPDATE", "incremental"),
            query_fit_min_coverage=float(env("RELABEL_QUERY_FIT_MIN_COVERAGE", "0.5")),
            rebootstrap=env("RELABEL_REBOOTSTRAP", "").strip().lower() in ("1", "true", "yes"),
            teacher_runs_fallback=env("RELABEL_TEACHER_RUNS_FALLBACK", "none"),
            retrain_min_teacher_labels=int(env("RELABEL_RETRAIN_MIN_TEACHER_LABELS", "50")),
            retrain_min_agreement=float(env("RELABEL_RETRAIN_MIN_AGREEMENT", "0.4")),
            retrain_min_compared_pairs=int(env("RELABEL_RETRAIN_MIN_COMPARED_PAIRS", "20")),
        )

    def corpus_path(self) -> Path:
        """Folder of seed documents (the bundled demo corpus by default)."""
        return demo_corpus_dir() if self.corpus_dir == DEMO else Path(self.corpus_dir)

    def inbox_path(self) -> Path:
        """Folder the inbox sensor watches; its files join the corpus."""
        return Path(self.inbox_dir) if self.inbox_dir else Path(self.data_dir) / "inbox"

    def batches_path(self) -> Path:
        """Where the inbox sensor snapshots each batch (manifest and file copies)."""
        return Path(self.data_dir) / "inbox_batches"

    def student_config(self) -> StudentConfig:
        """The student recipe: base weights default to the MiniLM-L6 package (encoders) or the SmolLM2
        GGUF (SLM) unless a local Hugging Face folder (or, for the SLM, a .gguf) is configured."""
        default_base = "" if self.student_recipe == "slm" else str(minilm_dir())
        return StudentConfig(
            base_model=self.student_base_model or default_base,
            recipe=self.student_recipe,
            objective=self.student_objective,
            epochs=self.student_epochs,
            max_length=self.student_max_length,
            max_steps=self.student_max_steps,
            lora_r=self.student_lora_r,
            init_from=self.student_init_from,
            seed=self.seed,
        )
